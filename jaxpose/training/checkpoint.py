"""Orbax checkpoints of the training state, the resolved config and the data-iterator position.

Each checkpoint step directory holds a Composite of four items: `state` (StandardSave of the
`TrainState`, flattened to a nested dict with string keys), `config` (JsonSave of the resolved
config), `data` (JsonSave of the iterator position, see `data.data_position`) and `integrity`
(JsonSave of per-array SHA-256 digests, see `integrity.py`). Orbax writes into a temporary directory
and renames it on commit, so a checkpoint is either complete or invisible.

Restoring takes an abstract target (ShapeDtypeStructs carrying the *current* shardings), so a
checkpoint saved on 8 devices restores on 1 and vice versa. Before calling Orbax the saved config and
the saved array metadata are checked against the target; any mismatch or unreadable file raises
`CheckpointError` naming what does not match. After restoring, every array's digest is compared with
the one recorded at save time and the floating arrays must be finite; either failure is a
`CheckpointError` naming the arrays (a checkpoint written before digests existed is restored with a
warning).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import warnings
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxpose.training.config import config_differences, config_from_dict
from jaxpose.training.integrity import array_digests, digest_mismatches, non_finite_arrays
from jaxpose.training.state import TrainState

_ITEMS = ("state", "config", "data", "integrity")


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into the current run (mismatched or corrupt)."""


def _describe(error: BaseException, limit: int = 600) -> str:
    """`Type: message`, without tensorstore's long spec dumps, at most `limit` characters."""
    text = str(error)
    for marker in (" [tensorstore_spec=", " See full TensorStore details"):
        text = text.split(marker, 1)[0]
    text = text.strip()
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(error).__name__}: {text}"


def _silence_orbax_read_failure_noise() -> None:
    """After a failed restore, Orbax's pending array reads finish on closed event loops and print one
    traceback per array ("Event loop is closed", "Exception ignored in ... _read_array_index...")
    through `sys.unraisablehook`, burying the one-line CheckpointError. Install (once, process-wide)
    a hook that drops exactly those and passes everything else to the previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxpose_filter", False):
        return

    def hook(unraisable):
        text = str(unraisable.exc_value)
        where = getattr(getattr(unraisable, "object", None), "__qualname__", "") or ""
        if text == "Event loop is closed" or "_read_array_index" in where or "_read_array_index" in str(unraisable.object):
            return
        previous(unraisable)

    hook._jaxpose_filter = True
    sys.unraisablehook = hook


def _listing(problems: list[str], limit: int = 12) -> str:
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n  ".join(problems[:limit]) + more


def _key_name(key) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        raw = key.key
        name = ",".join(map(str, raw)) if isinstance(raw, tuple) else str(raw)
    elif isinstance(key, jax.tree_util.GetAttrKey):
        name = key.name
    elif isinstance(key, jax.tree_util.SequenceKey):
        name = str(key.idx)
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
        name = str(key.key)
    else:
        name = str(key)
    # Orbax joins nested names with "." internally; keep names free of separators.
    return name.replace(".", "_").replace("/", "_")


def _flat_names(tree) -> tuple[list[str], list[Any], Any]:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = ["/".join(_key_name(k) for k in path) for path, _ in leaves_with_path]
    if len(set(names)) != len(names):
        raise ValueError("state has leaves whose checkpoint names collide after sanitising")
    return names, [leaf for _, leaf in leaves_with_path], treedef


def state_to_tree(state: TrainState) -> dict:
    """The state as a nested dict with string keys (what is written to disk)."""
    names, leaves, _ = _flat_names(state)
    nested: dict = {}
    for name, leaf in zip(names, leaves):
        node = nested
        *parents, last = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = leaf
    return nested


def _flatten_nested(nested, prefix="") -> dict[str, Any]:
    out = {}
    if isinstance(nested, dict):
        for key, value in nested.items():
            out.update(_flatten_nested(value, f"{prefix}/{key}" if prefix else str(key)))
    else:
        out[prefix] = nested
    return out


def tree_to_state(nested: dict, like: TrainState) -> TrainState:
    """Inverse of `state_to_tree`, with the structure of `like`."""
    flat = _flatten_nested(nested)
    names, _, treedef = _flat_names(like)
    return jax.tree_util.tree_unflatten(treedef, [flat[name] for name in names])


@dataclasses.dataclass(frozen=True)
class Restored:
    step: int
    state: TrainState
    config: ml_collections.ConfigDict
    data_position: dict


def _shape_dtype(x) -> tuple[tuple[int, ...], str]:
    return tuple(int(d) for d in x.shape), str(jax.numpy.dtype(x.dtype))


class Checkpointer:
    """Saves every call it is given (the loop decides when), keeps the last `max_to_keep`."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3, create: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        if not create and not self.directory.is_dir():
            raise FileNotFoundError(f"checkpoint directory not found: {self.directory}")
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
                "integrity": ocp.JsonCheckpointHandler(),
            },
        )

    def all_steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: TrainState, config: ml_collections.ConfigDict, data_position: dict) -> None:
        """Start an (asynchronous) save of `state` at `step`; call on every process."""
        if step in self._manager.all_steps():
            return
        tree = state_to_tree(state)
        # Hashed now, synchronously: the caller may donate the state's buffers right after this call.
        digests = array_digests(_flatten_nested(tree))
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree),
                config=ocp.args.JsonSave(config.to_dict()),
                data=ocp.args.JsonSave(dict(data_position)),
                integrity=ocp.args.JsonSave(digests),
            ),
            force=True,
        )

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def _resolve_step(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoints in {self.directory}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; available: {steps}")
        return step

    def _where(self, step: int) -> str:
        return str(self.directory / str(step))

    def read_config(self, step: int | None = None) -> ml_collections.ConfigDict:
        """The resolved config saved with checkpoint `step` (default: latest)."""
        step = self._resolve_step(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
            data = restored["config"]
        except Exception as error:  # Orbax/tensorstore raise many types; name the file instead.
            raise CheckpointError(
                f"checkpoint {self._where(step)}: config item is missing or corrupt ({_describe(error)})"
            ) from error
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint {self._where(step)}: config item is not a JSON object")
        return config_from_dict(data)

    def _check_arrays(self, step: int, abstract_tree: dict) -> None:
        try:
            metadata = self._manager.item_metadata(step)["state"]
        except Exception as error:
            _silence_orbax_read_failure_noise()
            raise CheckpointError(
                f"checkpoint {self._where(step)}: state metadata is missing or corrupt ({_describe(error)})"
            ) from error
        saved_tree = getattr(metadata, "tree", metadata)
        if not isinstance(saved_tree, dict) or not saved_tree:
            raise CheckpointError(f"checkpoint {self._where(step)}: state metadata is missing or corrupt (no array tree)")
        saved = _flatten_nested(saved_tree)
        expected = _flatten_nested(abstract_tree)
        # Parameters first: they are what a reader recognises (optimizer moments repeat them).
        order = lambda name: ({"params": 0, "model_state": 1}.get(name.split("/")[0], 2), name)  # noqa: E731
        problems = [f"missing from checkpoint: {name}" for name in sorted(set(expected) - set(saved), key=order)]
        problems += [f"unexpected in checkpoint: {name}" for name in sorted(set(saved) - set(expected), key=order)]
        for name in sorted(set(saved) & set(expected), key=order):
            got, want = saved[name], expected[name]
            if not hasattr(got, "shape"):
                problems.append(f"{name}: checkpoint entry is not an array")
            elif _shape_dtype(got) != _shape_dtype(want):
                g, w = _shape_dtype(got), _shape_dtype(want)
                problems.append(f"{name}: checkpoint has shape {g[0]} {g[1]}, expected {w[0]} {w[1]}")
        if problems:
            shown = "\n  ".join(problems[:12])
            more = f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else ""
            raise CheckpointError(
                f"checkpoint {self._where(step)} does not match the model/optimizer of this run:\n  {shown}{more}"
            )

    def _read_digests(self, step: int) -> dict | None:
        """The digests saved with `step`, or None for a checkpoint written before they existed."""
        if not (self.directory / str(step) / "integrity").exists():
            return None
        try:
            digests = self._manager.restore(step, args=ocp.args.Composite(integrity=ocp.args.JsonRestore()))["integrity"]
        except Exception as error:
            raise CheckpointError(
                f"checkpoint {self._where(step)}: integrity record is missing or corrupt ({_describe(error)})"
            ) from error
        if not isinstance(digests, dict):
            raise CheckpointError(f"checkpoint {self._where(step)}: integrity record is not a JSON object")
        return digests

    def _check_content(self, step: int, restored_tree: dict) -> None:
        """Digests equal to the saved ones, and no NaN/Inf anywhere in the state."""
        flat = _flatten_nested(restored_tree)
        digests = self._read_digests(step)
        if digests is None:
            warnings.warn(f"checkpoint {self._where(step)} has no integrity record (written by an older jaxpose); "
                          "its arrays cannot be verified", stacklevel=3)  # fmt: skip
        else:
            problems = digest_mismatches(digests, flat)
            if problems:
                raise CheckpointError(
                    f"checkpoint {self._where(step)} is corrupt: array content differs from what was saved "
                    f"(files under {self._where(step)}/state):\n  " + _listing(problems)
                )
        problems = non_finite_arrays(flat)
        if problems:
            raise CheckpointError(
                f"checkpoint {self._where(step)} holds non-finite values (a diverged run; use an earlier step):\n  "
                + _listing(problems)
            )

    def restore(
        self,
        abstract_state: TrainState,
        step: int | None = None,
        expected_config: ml_collections.ConfigDict | None = None,
    ) -> Restored:
        """Restore `step` (default: latest) into the shardings of `abstract_state`.

        With `expected_config`, its resume-critical sections (see `config.RESUME_CRITICAL_KEYS`) must
        equal the saved config's.
        """
        step = self._resolve_step(step)
        saved_config = self.read_config(step)
        if expected_config is not None:
            diffs = config_differences(expected_config, saved_config)
            if diffs:
                raise CheckpointError(
                    f"checkpoint {self._where(step)} was written with a different config:\n  " + "\n  ".join(diffs)
                )
        abstract_tree = state_to_tree(abstract_state)
        self._check_arrays(step, abstract_tree)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_tree), data=ocp.args.JsonRestore()
                ),
            )
            state = tree_to_state(restored["state"], abstract_state)
            data_position = dict(restored["data"])
        except CheckpointError:
            raise
        except Exception as error:
            _silence_orbax_read_failure_noise()
            raise CheckpointError(
                f"checkpoint {self._where(step)} is unreadable or corrupt ({_describe(error)})"
            ) from error
        self._check_content(step, restored["state"])
        saved_step = int(jax.device_get(state.step.addressable_data(0)))
        if saved_step != step or data_position.get("next_step") != step:
            raise CheckpointError(
                f"checkpoint {self._where(step)} is inconsistent: state step {saved_step}, "
                f"data position {data_position.get('next_step')}, directory step {step}"
            )
        return Restored(step=step, state=state, config=saved_config, data_position=data_position)


def resolve_checkpoint_dir(path: str | os.PathLike) -> pathlib.Path:
    """Accept a training workdir (containing `checkpoints/`) or a checkpoint directory itself."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path not found: {path}")
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    return path
