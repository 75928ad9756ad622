"""The functional, data-parallel, exactly-resumable training engine and evaluation harness.

Public pieces (one concept per module):
  task        `Task`: the protocol a model implements to be trained/evaluated
  registry    `register_task`, `get_task`, `available_tasks`
  config      `load_config`, `apply_overrides`, `split_config_args`, `save_config`
  data        `batch_indices(seed, step, batch_size, num_items)`, `ArrayDataset`
  optim       `make_optimizer`, `make_schedule`
  state       `TrainState`, `create_train_state`, `abstract_train_state`
  step        `make_train_step`, `make_eval_step`, `jit_train_step`
  sharding    `make_mesh`, `shard_batch`, `replicated`, `batch_sharded`
  distributed `resolve_options`, `initialize`, `is_main_process`
  checkpoint  `Checkpointer`, `CheckpointError`
  logs        `MetricsLogger`, `write_loss_curve`, `Progress`
  loop        `train_and_evaluate(config, workdir, task)`
  evaluation  `ModelEvaluator`, `evaluate_baseline`, `load_checkpoint`, table writers
  tiny        the `tiny` example task
Import the submodules directly (this package imports nothing heavy on its own).
"""
