"""Execute notebooks/deform_and_learn.ipynb end to end with nbclient (kernel "python3"), at small sizes.

As the other notebook tests: the kernel is `python3` from this interpreter's environment (`python3_kernel`
fixture), the repository root is on PYTHONPATH, XLA_FLAGS is dropped (one CPU device, as a user would have),
and the notebook's parameters come from JAXPOSE_NB_<NAME> environment variables: 3 people at 48 px, 60
registration steps and the tiny loop config, every file under a temporary WORKDIR. No wall-clock assertion:
the per-cell timeout only guards against hangs.
"""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "deform_and_learn.ipynb"
TIMEOUT_S = 400  # per cell, against hangs only
SMALL = {
    "JAXPOSE_NB_IMAGE_SIZE": "48",
    "JAXPOSE_NB_NUM_PEOPLE": "3",
    "JAXPOSE_NB_REG_STEPS": "60",
    "JAXPOSE_NB_LOOP_CONFIG": "configs/deform_learn_tiny.py",
    "JAXPOSE_NB_LOOP_WORKDIR": "",
}


def test_notebook_has_one_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    for name in ("IMAGE_SIZE", "NUM_PEOPLE", "REG_STEPS", "LOOP_CONFIG", "LOOP_WORKDIR", "WORKDIR"):
        assert f"{name} = " in parameters[0].source


def test_notebook_executes_at_small_sizes(monkeypatch, tmp_path, python3_kernel):
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("JAXPOSE_NB_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=python3_kernel, timeout=TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "3 people at 48x48 px" in text
    assert "registered 3 people with 60 Adam steps" in text
    before, after = text.split("T-pose start: ")[1].split(" mm\n")[0].split(" mm -> registered: ")
    assert float(after) < float(before)  # the registration moves the skeleton towards the ground truth
    assert "ran 2 iterations of configs/deform_learn_tiny.py" in text and "iteration 2: ConvNet test" in text
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"expected the labels, registration, side view and curves figures, got {len(images)}"
    assert (tmp_path / "work" / "deform_learn_tiny" / "curves.jsonl").is_file()  # nothing written in the repository
