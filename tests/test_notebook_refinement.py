"""Execute notebooks/personalized_refinement.ipynb end to end with nbclient (kernel "python3"), at small sizes.

As `tests/test_notebooks.py` does for `pose_transfer.ipynb`: the kernel is `python3` from this interpreter's
environment (the `python3_kernel` fixture of `tests/conftest.py` installs one into sys.prefix when the venv lacks it), the repository root
is on PYTHONPATH, XLA_FLAGS is dropped (one CPU device, as a user would have) and the notebook's
parameters are set through environment variables (JAXPOSE_NB_<NAME>, read by its second parameters cell):
32 px people, 8 training people and 2 U-Net steps, 5 + 5 fitter steps, a 24 px chain image, and every file
(data cache, the tiny run) under a temporary WORKDIR. No wall-clock assertion: the per-cell nbclient
timeout only guards against hangs.
"""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "personalized_refinement.ipynb"
TIMEOUT_S = 300  # per cell, against hangs only
SMALL = {
    "JAXPOSE_NB_IMAGE_SIZE": "32",
    "JAXPOSE_NB_NUM_PEOPLE": "2",
    "JAXPOSE_NB_TRAIN_PEOPLE": "8",
    "JAXPOSE_NB_TRAIN_STEPS": "2",
    "JAXPOSE_NB_FIT_STEPS": "5,5",
    "JAXPOSE_NB_CHAIN_SIZE": "24",
    "JAXPOSE_NB_PERSON": "0",
    "JAXPOSE_NB_CHECKPOINT": "",  # train the tiny config in the notebook
}


def test_notebook_has_one_parameters_cell():
    # (tests/test_notebooks.py checks that every notebook is saved clean)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    for name in ("IMAGE_SIZE", "NUM_PEOPLE", "TRAIN_STEPS", "FIT_STEPS", "CHECKPOINT", "WORKDIR"):
        assert f"{name} = " in parameters[0].source


def test_notebook_executes_at_small_sizes(monkeypatch, tmp_path, python3_kernel):
    kernel = python3_kernel
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("JAXPOSE_NB_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel then uses its inline backend
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # a fresh process: not the suite's 8 simulated devices
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel, timeout=TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "2 people at 32x32 px" in text
    assert "trained the tiny U-Net for 2 steps" in text and "engine evaluation on the test people" in text
    assert "targets" in text and "refined, exact field" in text and "silhouette_iou" in text
    check = text.split("finite-difference check, beta[")[1]
    assert float(check.split("relative error ")[1].split()[0]) < 1e-5
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 5, f"expected the people, displacement, targets, refinement and chain figures, got {len(images)}"
    assert (tmp_path / "work" / "unet_32px_8people_2steps" / "checkpoints").is_dir()  # nothing written in the repository
