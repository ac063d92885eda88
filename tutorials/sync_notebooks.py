"""Write each tutorial's notebook from its script: ``python tutorials/sync_notebooks.py``.

The scripts (jupytext "percent" format: ``# %%`` starts a code cell, ``# %% [markdown]``
a markdown cell whose lines start with ``# ``) are the source; CI executes the notebooks in a
Jupyter kernel and checks that every ``.ipynb`` here equals what this file would write from its script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cell(kind: str, lines: list[str], number: int) -> dict:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    if kind == "markdown":
        lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
    source = [line + "\n" for line in lines[:-1]] + lines[-1:]
    cell = {"cell_type": kind, "id": f"cell-{number}", "metadata": {}, "source": source}  # ids: nbformat 4.5
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def notebook_from_script(text: str) -> dict:
    """The notebook (nbformat 4, no outputs) of a percent-format script."""
    cells, kind, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("# %%"):
            if kind is not None and any(x.strip() for x in lines):
                cells.append(_cell(kind, lines, len(cells)))
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    if kind is not None and any(x.strip() for x in lines):
        cells.append(_cell(kind, lines, len(cells)))
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def tutorial_scripts() -> list[Path]:
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def main() -> int:
    for script in tutorial_scripts():
        notebook = json.dumps(notebook_from_script(script.read_text(encoding="utf-8")), indent=1, ensure_ascii=False)
        script.with_suffix(".ipynb").write_text(notebook + "\n", encoding="utf-8")
        print(f"wrote {script.with_suffix('.ipynb').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
