"""Task registry: one way in. A config names its task (`config.task`); the registry maps that name to
its `TaskDefinition`, which builds the `Task` from the config.

Built-in definitions are listed as "module:attribute" and imported only when asked for (a system's
modules may import heavy dependencies). Out-of-tree tasks call `register_task`, or are named directly
as "package.module:ATTRIBUTE" in `config.task`.
"""

from __future__ import annotations

import importlib

import ml_collections

from jaxpose.training.task import Task, TaskDefinition

# To plug in a new system's task: add `"name": "jaxpose.<system>.task:DEFINITION"` here.
BUILTIN_TASKS: dict[str, str] = {
    "tiny": "jaxpose.training.tiny:TINY_TASK",
    "corenet": "jaxpose.pose_transfer.task:CORENET_TASK",
    "npt": "jaxpose.pose_transfer.task:NPT_TASK",
    "ins": "jaxpose.skinning.task:INS_TASK",
    "snarf": "jaxpose.skinning.task:SNARF_TASK",
    "snarf_nc": "jaxpose.skinning.task:SNARF_NC_TASK",
    "refinement": "jaxpose.fitting.definition:REFINEMENT_TASK",
    "deform_learn_lifter": "jaxpose.deform_learn.tasks:LIFTER_TASK",
    "deform_learn_regressor": "jaxpose.deform_learn.tasks:REGRESSOR_TASK",
}

_registered: dict[str, TaskDefinition] = {}


def register_task(definition: TaskDefinition, *, overwrite: bool = False) -> TaskDefinition:
    if not isinstance(definition, TaskDefinition):
        raise TypeError(f"register_task needs a TaskDefinition, got {type(definition).__name__}")
    if not overwrite and (definition.name in _registered or definition.name in BUILTIN_TASKS):
        raise ValueError(f"task {definition.name!r} is already registered")
    _registered[definition.name] = definition
    return definition


def available_tasks() -> list[str]:
    return sorted(set(BUILTIN_TASKS) | set(_registered))


def _import_definition(spec: str) -> TaskDefinition:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if not hasattr(module, attribute):
        raise ValueError(f"task spec {spec!r}: module {module_name} has no attribute {attribute!r}")
    definition = getattr(module, attribute)
    if not isinstance(definition, TaskDefinition):
        raise TypeError(f"task spec {spec!r} is a {type(definition).__name__}, not a TaskDefinition")
    return definition


def get_definition(name: str) -> TaskDefinition:
    """The definition registered as `name`, or loaded from a "module:ATTRIBUTE" spec."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_TASKS:
        return _import_definition(BUILTIN_TASKS[name])
    if ":" in name:
        return _import_definition(name)
    raise KeyError(f"unknown task {name!r}; available: {', '.join(available_tasks())}")


def build_task(config: ml_collections.ConfigDict) -> Task:
    """The `Task` that `config.task` names, built from `config`."""
    if "task" not in config:
        raise ValueError("config has no 'task' key naming its task")
    return get_definition(str(config.task))(config)
