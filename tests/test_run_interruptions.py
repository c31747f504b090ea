"""Runs that end early leave a whole record: a killed kernel, a Ctrl-C.

Both are real: the fixture notebook kills its own kernel with SIGKILL, and a
``runbook run`` process gets SIGINT while a cell sleeps. Each leaves a sidecar
that is complete JSON and an executed notebook nbformat reads, with the status
``failed`` (the kernel died) or ``aborted`` (the person running it stopped it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from opslib._config import SECRET_VARIABLES
from opslib._records import list_records, load_record
from opslib._runner import run_notebook

NOTEBOOKS = Path(__file__).parent / "notebooks"
ENVIRONMENTS = Path(__file__).parents[1] / "parameters" / "environments"
RUNBOOK = Path(sys.executable).parent / "runbook"


@pytest.fixture
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sandbox environment alone, no secrets in the process environment."""
    folder = tmp_path / "environments"
    folder.mkdir()
    shutil.copy(ENVIRONMENTS / "sandbox.yaml", folder)
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(folder))
    monkeypatch.setenv("RUNBOOK_OPERATOR", "oncall-7")
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return folder


def _only_record(records: Path) -> tuple[dict[str, object], nbformat.NotebookNode]:
    """The archive's one sidecar, read as plain JSON, and its notebook."""
    [row] = list_records(records)
    sidecar = load_record(records, str(row["id"]))
    [sidecar_file] = list(records.rglob(f"{row['id']}*.json"))
    assert json.loads(sidecar_file.read_text(encoding="utf-8")) == sidecar
    nb = nbformat.read(records / str(sidecar["record_path"]), as_version=4)
    nbformat.validate(nb)
    return sidecar, nb


def _outputs_of(nb: nbformat.NotebookNode, source_start: str) -> str:
    [cell] = [c for c in nb.cells if c.source.startswith(source_start)]
    return str(cell.outputs)


def test_a_kernel_killed_by_sigkill_leaves_a_failed_record(
    environments: Path, tmp_path: Path
) -> None:
    records = tmp_path / "records"

    record = run_notebook(NOTEBOOKS / "sigkills_kernel.ipynb", records_dir=records)

    sidecar, nb = _only_record(records)
    assert record.status == sidecar["status"] == "failed"
    error = sidecar["error"]
    assert isinstance(error, dict) and error["kind"] == "kernel-died"
    assert "SIGKILL" in nb.cells[error["cell_index"]].source
    assert nb.cells[0].source.startswith("**This run failed: the kernel died")
    statuses = [cell["status"] for cell in sidecar["cells"]]  # type: ignore[attr-defined]
    assert statuses[-2:] == ["failed", "pending"]
    assert "about to be killed" in _outputs_of(nb, 'print("about to be killed"')


@pytest.mark.parametrize("to_group", [False, True], ids=["process", "ctrl-c-group"])
def test_sigint_to_runbook_run_mid_cell_leaves_an_aborted_record(
    environments: Path, tmp_path: Path, to_group: bool
) -> None:
    """SIGINT to the runbook process alone, or to its whole process group as a
    terminal's Ctrl-C sends it."""
    records = tmp_path / "records"
    started = tmp_path / "started"
    process = subprocess.Popen(
        [
            str(RUNBOOK),
            "run",
            str(NOTEBOOKS / "waits_for_interrupt.ipynb"),
            "--records",
            str(records),
            "-p",
            "started_file",
            str(started),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=True,  # its own group, so the test can signal all of it
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the long cell never started"
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        if to_group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode != 0, stderr
    sidecar, nb = _only_record(records)
    assert sidecar["status"] == "aborted", stderr
    error = sidecar["error"]
    assert isinstance(error, dict) and error["kind"] == "interrupted"
    assert "time.sleep(120)" in nb.cells[error["cell_index"]].source
    assert "first cell done" in _outputs_of(nb, 'print("first cell done"')
    assert "never runs" not in str([cell.get("outputs") for cell in nb.cells])
