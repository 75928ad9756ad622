"""Task registry: name -> `Task`, so `jaxpose train NAME` / `jaxpose eval NAME` work for any task.

Built-in tasks are listed as "module:attribute" and imported only when asked for (a model's task
module may import heavy dependencies). Out-of-tree tasks call `register_task`, or are named directly
as "package.module:ATTRIBUTE".
"""

from __future__ import annotations

import importlib

from jaxpose.training.task import Task

# To plug in a new model: add `"name": "jaxpose.models.<module>:TASK"` here.
BUILTIN_TASKS: dict[str, str] = {
    "tiny": "jaxpose.training.tiny:TASK",
    "corenet": "jaxpose.tasks.corenet:TASK",
    "npt": "jaxpose.tasks.npt:TASK",
    "ins": "jaxpose.tasks.ins:TASK",
    "snarf": "jaxpose.tasks.ins:SNARF_TASK",
    "snarf_nc": "jaxpose.tasks.ins:SNARF_NC_TASK",
}

_registered: dict[str, Task] = {}


def register_task(task: Task, *, overwrite: bool = False) -> Task:
    if not isinstance(task, Task):
        raise TypeError(f"register_task needs a Task, got {type(task).__name__}")
    if not overwrite and (task.name in _registered or task.name in BUILTIN_TASKS):
        raise ValueError(f"task {task.name!r} is already registered")
    _registered[task.name] = task
    return task


def available_tasks() -> list[str]:
    return sorted(set(BUILTIN_TASKS) | set(_registered))


def _import_task(spec: str) -> Task:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if not hasattr(module, attribute):
        raise ValueError(f"task spec {spec!r}: module {module_name} has no attribute {attribute!r}")
    task = getattr(module, attribute)
    if not isinstance(task, Task):
        raise TypeError(f"task spec {spec!r} is a {type(task).__name__}, not a Task")
    return task


def get_task(name: str) -> Task:
    """The task registered as `name`, or loaded from a "module:ATTRIBUTE" spec."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_TASKS:
        return _import_task(BUILTIN_TASKS[name])
    if ":" in name:
        return _import_task(name)
    raise KeyError(f"unknown task {name!r}; available: {', '.join(available_tasks())}")
