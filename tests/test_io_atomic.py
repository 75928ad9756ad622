"""jaxpose.io.atomic: file modes of new and overwritten files, failure leaves the old file, temp-file cleanup."""

import os
import subprocess
import time

import numpy as np
import pytest

from jaxpose.io.atomic import (
    LEGACY_TEMP_MAX_AGE_S,
    atomic_open,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
)


@pytest.fixture
def umask():
    """Set the process umask for one test (`umask(value)`) and restore the previous one afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o7777


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped (not reused this quickly in practice)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_new_file_gets_0666_minus_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    atomic_save_npz(tmp_path / "c.npz", x=np.zeros(2))
    assert [_mode(tmp_path / name) for name in ("a.txt", "b.bin", "c.npz")] == [expected] * 3


@pytest.mark.parametrize("existing", [0o600, 0o755, 0o640])
def test_overwritten_file_keeps_its_mode(tmp_path, umask, existing):
    umask(0o022)
    path = tmp_path / "kept.txt"
    path.write_text("old")
    os.chmod(path, existing)
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == existing


def test_exception_inside_with_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00old bytes\xff")
    os.chmod(path, 0o640)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path, "wb") as handle:
            handle.write(b"half of the new")
            temps = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            assert temps and temps[0].startswith(f".data.bin.{os.getpid()}.")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"\x00old bytes\xff"
    assert _mode(path) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_bad_open_arguments_leave_no_temp(tmp_path):
    with pytest.raises(LookupError):
        with atomic_open(tmp_path / "x.txt", "w", encoding="no-such-codec"):
            pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="write modes"):
        with atomic_open(tmp_path / "x.txt", "r"):
            pass


def test_long_names_still_fit_name_max(tmp_path):
    name = "n" * 250
    atomic_write_text(tmp_path / name, "x")
    assert (tmp_path / name).read_text() == "x"


def test_remove_stale_temp_files_by_pid_and_age(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / f".id0_600.obj.{dead}.0123456789ab.tmp"
    running = tmp_path / f".id0_601.obj.{live}.0123456789ab.tmp"
    old_legacy = tmp_path / ".id1_600.obj.k3j_x9q2.tmp"
    new_legacy = tmp_path / ".id1_601.obj.ab12cd34.tmp"
    unrelated = [tmp_path / "id0_600.obj", tmp_path / ".hidden.tmp", tmp_path / f"x.{dead}.0123456789ab.tmp"]
    for path in [stale, running, old_legacy, new_legacy, *unrelated]:
        path.write_bytes(b"partial")
    hour_ago = time.time() - LEGACY_TEMP_MAX_AGE_S - 60
    os.utime(old_legacy, (hour_ago, hour_ago))
    nested = tmp_path / "sub"
    nested.mkdir()
    (nested / stale.name).write_bytes(b"partial")

    removed = remove_stale_temp_files(tmp_path)

    assert removed == sorted([stale, old_legacy])
    assert not stale.exists() and not old_legacy.exists()
    assert running.read_bytes() == b"partial" and new_legacy.read_bytes() == b"partial"
    assert all(path.read_bytes() == b"partial" for path in unrelated)
    assert (nested / stale.name).exists()  # not recursive
    assert remove_stale_temp_files(tmp_path / "missing") == []
