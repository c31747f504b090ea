"""Kernels that misbehave on purpose, for tests of how runs end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat


def slow_preload_kernel(folder: Path, name: str) -> tuple[Path, Path]:
    """A kernelspec ``name`` under ``folder/jupyter`` (give that as JUPYTER_PATH)
    whose kernel becomes ready but hangs in the runner's preload (a ``pandas``
    on its path that notes its pid and sleeps, deaf to SIGINT), and a notebook
    on it; returns the notebook and the folder of pid notes. Named python3, it
    stands in for the kernel every runbook names."""
    marks, library = folder / "preloading", folder / "slowlib"
    marks.mkdir()
    library.mkdir()
    (library / "pandas.py").write_text(
        "import os, pathlib, signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"pathlib.Path({str(marks)!r}, str(os.getpid())).write_text('')\n"
        "time.sleep(600)\n",
        encoding="utf-8",
    )
    spec = folder / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f"]
                + ["{connection_file}"],
                "display_name": "slow preload",
                "language": "python",
                "env": {"PYTHONPATH": str(library)},
            }
        ),
        encoding="utf-8",
    )
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('incident_id: str = "INC-1"  # the incident')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell('print("first cell ran")')]
    nb.metadata["kernelspec"] = {"name": name, "display_name": "slow"}
    nb.metadata["language_info"] = {"name": "python"}
    notebook = folder / "slow_preload.ipynb"
    nbformat.write(nb, notebook)
    return notebook, marks
