"""Optimisers and learning-rate schedules built from the `optimizer` config section.

Fields: name ("adam" | "adamw"), lr, b1, b2, eps, weight_decay (adamw), clip_grad_norm (0 = off),
schedule ("constant" | "constant_then_linear" | "cosine"), constant_epochs, decay_epochs (for
constant_then_linear: lr for `constant_epochs`, then linear to 0 over `decay_epochs`), warmup_steps
and final_lr_fraction (cosine: linear warm-up, then cosine decay to lr * final_lr_fraction at the last
step).
"""

from __future__ import annotations

import math

import ml_collections
import optax

SCHEDULES = ("constant", "constant_then_linear", "cosine")
MAX_LEARNING_RATE = 1.0
"""Adam's step is ~lr per parameter; above 1 (a metre per step for coordinates) training only diverges."""

# field -> (lowest, highest, lowest allowed?, highest allowed?)
_RANGES = {
    "lr": (0.0, MAX_LEARNING_RATE, False, True),
    "b1": (0.0, 1.0, True, False),
    "b2": (0.0, 1.0, True, False),
    "eps": (0.0, 1.0, False, True),
    "weight_decay": (0.0, 1.0, True, True),
    "clip_grad_norm": (0.0, math.inf, True, False),
    "warmup_steps": (0.0, math.inf, True, False),
    "final_lr_fraction": (0.0, 1.0, True, True),
    "constant_epochs": (0.0, math.inf, True, False),
    "decay_epochs": (0.0, math.inf, True, False),
}


def validate_optimizer_config(opt: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the field when a hyper-parameter is not a finite number in its range."""
    for name, (low, high, low_ok, high_ok) in _RANGES.items():
        if name not in opt:
            continue
        try:
            value = float(opt[name])
        except (TypeError, ValueError):
            raise ValueError(f"optimizer.{name} must be a number, got {opt[name]!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"optimizer.{name} must be finite, got {value}")
        above = value > low or (low_ok and value == low)
        below = value < high or (high_ok and value == high)
        if not (above and below):
            interval = f"{'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
            raise ValueError(f"optimizer.{name} = {value:g} is outside {interval}")


def make_schedule(
    opt: ml_collections.ConfigDict, steps_per_epoch: float, total_steps: int
) -> optax.Schedule:
    """Learning rate as a function of the step, `step -> lr`."""
    lr = float(opt.lr)
    name = opt.get("schedule", "constant")
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "constant_then_linear":
        start = int(round(float(opt.constant_epochs) * steps_per_epoch))
        length = max(1, int(round(float(opt.decay_epochs) * steps_per_epoch)))
        return optax.join_schedules(
            [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, length)], [start]
        )
    if name == "cosine":
        warmup = int(opt.get("warmup_steps", 0))
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0 if warmup else lr,
            peak_value=lr,
            warmup_steps=warmup,
            decay_steps=max(total_steps, warmup + 1),
            end_value=lr * float(opt.get("final_lr_fraction", 0.0)),
        )
    raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {name!r}")


def make_optimizer(
    opt: ml_collections.ConfigDict, steps_per_epoch: float, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(gradient transformation, schedule) for the config's optimizer section."""
    schedule = make_schedule(opt, steps_per_epoch, total_steps)
    name = opt.get("name", "adam")
    common = dict(b1=float(opt.b1), b2=float(opt.b2), eps=float(opt.eps))
    if name == "adam":
        tx = optax.adam(schedule, **common)
    elif name == "adamw":
        tx = optax.adamw(schedule, weight_decay=float(opt.weight_decay), **common)
    else:
        raise ValueError(f"optimizer.name must be 'adam' or 'adamw', got {name!r}")
    clip = float(opt.get("clip_grad_norm", 0.0))
    if clip < 0:
        raise ValueError(f"optimizer.clip_grad_norm must be >= 0 (0 disables), got {clip}")
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    return tx, schedule
