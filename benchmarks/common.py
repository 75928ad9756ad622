"""Shared plumbing of the benchmark scripts: one fresh subprocess per measured case (so peak RSS
belongs to that case alone), the JAX-only baseline process, and a description of the machine."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys


def max_rss_bytes() -> int:
    """Peak resident set size of this process, in bytes."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def worker_baseline() -> dict:
    """What a process that only imports JAX and touches the backend peaks at."""
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()
    return {"max_rss": max_rss_bytes()}


def run_worker(module: str, args) -> dict:
    """Run `python -m MODULE --worker JSON(args)`; its last stdout line is a JSON dict of results.

    A failing case returns {"error": last stderr line} instead of raising, so one case that runs out
    of memory does not lose the others.
    """
    command = [sys.executable, "-m", module, "--worker", json.dumps(args)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        return {"error": (lines or [f"exit {completed.returncode}"])[-1][:300]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def dense_estimate_gib(n: int, m: int) -> float:
    """Dense OT inference keeps ~4 float32 N×M buffers alive.

    See docs/pose_transfer.md, "Matching implementations and memory".
    """
    return 4 * n * m * 4 / 2**30


def machine_description() -> str:
    """CPU count and model, RAM, JAX version and backend."""
    cpu = platform.processor() or "unknown CPU"
    ram = ""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f", {int(line.split()[1]) / 2**20:.1f} GiB RAM"
                break
    except OSError:
        pass
    import jax

    return f"{os.cpu_count()} CPUs (nproc), {cpu}{ram}; JAX {jax.__version__}, backend {jax.default_backend()}"


def load_average() -> str:
    """The 1/5/15-minute load averages (benchmarks on a shared machine must say how shared it was)."""
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


LATENCY_COLUMNS = "compile (s) | latency median (s) | latency min (s) | XLA temp (MiB) | peak RSS − baseline (MiB) |"


def latency_cells(row: dict, baseline_rss: int, compile_digits: int = 2) -> str:
    """The LATENCY_COLUMNS cells of one measured case (or its skip/failure reason), markdown."""
    if "skipped" in row:
        return f" skipped: {row['skipped']} | | | | |"
    if "error" in row:
        return f" failed: {row['error']} | | | | |"
    return (
        f" {row['compile_s']:.{compile_digits}f} | {row['median_s']:.3f} | {row['min_s']:.3f} | "
        f"{row['temp_bytes'] / 2**20:.0f} | {(row['max_rss'] - baseline_rss) / 2**20:.0f} |"
    )


def time_calls(call, repeats: int) -> tuple[dict, object]:
    """Warm-up call (compiles) + `repeats` timed calls of `call()`; returns (timings, last output).

    timings: compile_s (first call − median, clamped at 1e-6 so that noise on a loaded machine cannot
    report a negative compile time), first_call_s, median_s, min_s, times_s.
    """
    import statistics
    import time

    import jax

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    start = time.perf_counter()
    output = jax.block_until_ready(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    timings = {"compile_s": max(first - median, 1e-6), "first_call_s": first, "median_s": median,
               "min_s": min(times), "times_s": times}  # fmt: skip
    return timings, output


def versions() -> dict:
    """Python, JAX, jaxlib, Flax, optax, NumPy versions and the jaxpose git commit (+ "-dirty")."""
    import flax
    import jax
    import jaxlib
    import numpy as np
    import optax

    commit = "unknown"
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
        commit = head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__, "jaxpose_commit": commit,
    }  # fmt: skip
