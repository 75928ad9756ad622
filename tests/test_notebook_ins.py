"""Execute notebooks/invertible_skinning.ipynb end to end with nbclient (kernel "python3").

No wall-clock assertion: the per-cell nbclient timeout only guards against hangs.

Uses the `python3_kernel` fixture of `tests/conftest.py` (installs a python3 kernelspec into sys.prefix when
the venv lacks one).
"""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "invertible_skinning.ipynb"


def test_notebook_is_saved_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_executes(tmp_path, python3_kernel):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), JAX_PLATFORMS="cpu",
               MPLBACKEND="Agg")
    env.pop("XLA_FLAGS", None)  # one CPU device in the kernel, as a user would have
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name=python3_kernel, resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "round trip" in text and "reposed:" in text
    round_trip = float(text.split("round trip |PIN^-1(PIN(x)) - x| max = ")[1].split()[0])
    assert round_trip < 1e-5
