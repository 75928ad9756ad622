"""Every shipped notebook is clean nbformat 4; `pose_transfer.ipynb` executes end to end with nbclient.

(`tests/test_notebook_ins.py` and `tests/test_notebook_refinement.py` execute `invertible_skinning.ipynb` and
`personalized_refinement.ipynb` with their own output checks.)

The kernel is `python3` from this interpreter's environment: if jupyter's kernelspec lookup does not
find one (fresh venv), a kernelspec pointing at `sys.executable` is installed into `sys.prefix`.
The notebook runs with the repository root on PYTHONPATH and JAXPOSE_CHECKPOINT="" (the shipped 3D-CoreNet),
so what it runs does not depend on what runs/ holds.
"""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 120  # per cell, against hangs only: tests never assert wall-clock time


def test_notebooks_are_found():
    assert [p.name for p in NOTEBOOKS] == [
        "deform_and_learn.ipynb", "invertible_skinning.ipynb", "personalized_refinement.ipynb", "pose_transfer.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_nbformat4(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells, "notebook has no code"
    for cell in code_cells:
        assert cell.outputs == [], "notebook must be saved without outputs"
        assert cell.execution_count is None, "notebook must be saved without execution counts"


def test_pose_transfer_notebook_executes(monkeypatch, python3_kernel):
    path = REPO / "notebooks" / "pose_transfer.ipynb"
    kernel = python3_kernel
    monkeypatch.setenv("JAXPOSE_CHECKPOINT", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel then uses its inline backend
    # The kernel is a fresh process: drop the 8 simulated devices the test suite forces.
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel, timeout=TIMEOUT_S,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "the trained model corenet_medium@" in text
    # The shipped model transfers the pose: its output is far closer to the truth than the identity is.
    pmd_line = next(line for line in text.splitlines() if line.startswith("PMD x 1e4"))
    output, copy = (float(pmd_line.split(name)[1].split(",")[0]) for name in ("output ", "copy of the identity "))
    assert output < 0.25 * copy, pmd_line
    assert "plan rows sum to 1: True | plan @ pose == warp: True" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"expected the mesh, correlation, warp and gradient figures, got {len(images)} images"
