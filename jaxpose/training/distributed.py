"""Multi-host start-up: `jax.distributed.initialize` from flags or environment, and process roles.

Environment variables (used when the corresponding flag is absent): JAXPOSE_COORDINATOR_ADDRESS
(host:port), JAXPOSE_NUM_PROCESSES, JAXPOSE_PROCESS_ID. Initialise before anything touches a device.
"""

from __future__ import annotations

import dataclasses
import os

import jax


@dataclasses.dataclass(frozen=True)
class DistributedOptions:
    coordinator_address: str
    num_processes: int
    process_id: int


def resolve_options(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: dict | None = None,
) -> DistributedOptions | None:
    """Options from flags, falling back to JAXPOSE_* environment variables; None if single-process."""
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get("JAXPOSE_COORDINATOR_ADDRESS")
    count = num_processes if num_processes is not None else env.get("JAXPOSE_NUM_PROCESSES")
    pid = process_id if process_id is not None else env.get("JAXPOSE_PROCESS_ID")
    given = {"coordinator address": address, "number of processes": count, "process id": pid}
    if all(v is None for v in given.values()):
        return None
    missing = [name for name, v in given.items() if v is None]
    if missing:
        raise ValueError(f"multi-process run needs all three settings; missing: {', '.join(missing)}")
    count, pid = int(count), int(pid)
    if count < 1 or not 0 <= pid < count:
        raise ValueError(f"process id {pid} is out of range for {count} processes")
    if ":" not in address:
        raise ValueError(f"coordinator address must be host:port, got {address!r}")
    return DistributedOptions(address, count, pid)


def initialize(options: DistributedOptions | None, timeout_s: int = 120) -> None:
    """Join the process group (no-op for None). On CPU, cross-process collectives use gloo."""
    if options is None:
        return
    platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
    if platforms in ("", "cpu") or platforms.startswith("cpu"):
        # The default CPU collectives cannot cross processes; gloo can (TCP, no extra installs).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=options.coordinator_address,
        num_processes=options.num_processes,
        process_id=options.process_id,
        initialization_timeout=timeout_s,
    )


def is_main_process() -> bool:
    """True on process 0, the only one that logs and writes files."""
    return jax.process_index() == 0
