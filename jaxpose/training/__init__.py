"""The functional, data-parallel, exactly-resumable training engine and evaluation harness.

Public pieces (one concept per module):
  task        `Task` (a model family bound to one config) and `TaskDefinition` (its factory + protocol)
  registry    `register_task`, `get_definition`, `build_task(config)`, `available_tasks`
  config      `load_config`, `apply_overrides`, `split_config_args`, `save_config`
  data        `batch_indices(seed, step, batch_size, num_items)`, `ArrayDataset`
  optim       `make_optimizer`, `make_schedule`
  state       `TrainState`, `create_train_state`, `abstract_train_state`
  step        `make_train_step`, `make_eval_step`, `jit_train_step`
  sharding    `make_mesh`, `shard_batch`, `replicated`, `batch_sharded`
  distributed `resolve_options`, `initialize`, `is_main_process`
  checkpoint  `Checkpointer`, `CheckpointError`
  logs        `MetricsLogger`, `write_loss_curve`, `Progress`
  loop        `train_and_evaluate(config, workdir)`
  evaluation  `ModelEvaluator`, `evaluate_predictions`, `load_checkpoint` (workdirs and bundles), table writers
  bundle      `export_bundle`, `load_bundle`: an inference-only model as config + weights + manifest
  protocol    `StandardProtocol`, `EvaluationRequest`, `EvaluationReport` (how `jaxpose eval` scores)
  tiny        the `tiny` example task
Import the submodules directly (this package imports nothing heavy on its own).
"""
