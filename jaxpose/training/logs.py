"""Run logs: a JSONL metrics log, TensorBoard event files (tensorboardX), a PNG loss curve, and a
tqdm progress bar. Only the main process creates any of them (pass `enabled=False` elsewhere).
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence

from tqdm import tqdm

from jaxpose.io.atomic import atomic_write_bytes, atomic_write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
LOSS_CURVE_FILE = "loss_curve.png"


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a JSONL log; a torn last line (process killed mid-write) is ignored."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break
            raise ValueError(f"{path}:{number + 1}: malformed JSON line") from None
    return records


class MetricsLogger:
    """Writes `{"step": s, "time": t, name: value, ...}` lines and TensorBoard scalars.

    `resume_step`: records after this step (written by a run that was killed after its last
    checkpoint) are dropped so that the log of a resumed run has each step once. `None` starts fresh.
    """

    def __init__(self, workdir: str | os.PathLike, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / METRICS_FILE
        self._file = None
        self._tb = None
        if not enabled:
            return
        kept = [r for r in read_jsonl(self.path) if resume_step is not None and r.get("step", 0) <= resume_step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        from tensorboardX import SummaryWriter  # imported lazily: only the main process logs

        self._tb = SummaryWriter(str(self.workdir / TENSORBOARD_DIR), purge_step=resume_step)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": time.time()}
        record.update({name: float(value) for name, value in scalars.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), global_step=int(step))
        self._tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def write_loss_curve(
    records: Sequence[Mapping], path: str | os.PathLike, keys: Sequence[str] = ("train/loss", "eval/loss")
) -> None:
    """Plot the named series against step (log-scale y when positive) to a PNG, atomically."""
    # Local import: only the main process plots. `Figure` + `savefig` need no pyplot backend, so the
    # caller's backend (e.g. a notebook's inline one) is left alone.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    plotted = []
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r and math.isfinite(r[key])]
        if points:
            steps, values = zip(*points)
            axes.plot(steps, values, label=key, marker="." if len(points) < 30 else None)
            plotted.extend(values)
    if plotted and min(plotted) > 0:
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    if plotted:
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


class Progress:
    """A tqdm bar over steps showing loss and throughput (items/s); silent when disabled."""

    def __init__(self, start: int, total: int, batch_size: int, enabled: bool = True):
        self.batch_size = batch_size
        self._bar = None
        if enabled:
            self._bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, mininterval=0.5)
        self._last_time = time.perf_counter()
        self._last_step = start

    def update(self, step: int, loss: float | None = None) -> float:
        """Advance to `step`; returns items/s since the previous update."""
        now = time.perf_counter()
        rate = (step - self._last_step) * self.batch_size / max(now - self._last_time, 1e-9)
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            postfix = {"items/s": f"{rate:.0f}"}
            if loss is not None:
                postfix["loss"] = f"{loss:.4g}"
            self._bar.set_postfix(postfix, refresh=False)
        self._last_time, self._last_step = now, step
        return rate

    def note(self, text: str) -> None:
        """A status line above the bar (e.g. while the first step compiles); silent when disabled."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
