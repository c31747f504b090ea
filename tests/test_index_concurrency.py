"""Runs finishing together on one machine: every record complete, every row kept."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from opslib._index import INDEX_NAME
from opslib._records import append_index

RUNS = 8
RUNBOOK = Path(sys.executable).parent / "runbook"


def index_ids(root: Path) -> list[str]:
    """The ids in the index file as it is, without the rebuild a search may do."""
    with sqlite3.connect(root / INDEX_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return sorted(row[0] for row in db.execute("SELECT id FROM records"))


def test_eight_runs_started_at_once_leave_eight_records_and_rows(
    sandbox: object, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    runs = [
        subprocess.Popen(
            [
                str(RUNBOOK),
                "run",
                "database",
                "-p",
                "incident_id",
                f"CONC-{number}",
                "--records",
                str(records),
            ],
            env={**os.environ, "RUNBOOK_OPERATOR": "oncall-7"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for number in range(RUNS)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]

    assert [run.returncode for run in runs] == [0] * RUNS, "\n".join(outputs)
    sidecars = [json.loads(p.read_text()) for p in records.glob("*/*/*.json")]
    assert sorted(s["incident_id"] for s in sidecars) == [
        f"CONC-{n}" for n in range(RUNS)
    ]
    for sidecar in sidecars:
        assert sidecar["status"] == "succeeded" and sidecar["verdict"]
        notebook = records / sidecar["record_path"]
        assert (
            json.loads(notebook.read_text())["metadata"]["opslib"]["record_id"]
            == (sidecar["id"])
        )
    assert index_ids(records) == sorted(s["id"] for s in sidecars)


def _append_many(root: str, worker: int, count: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    for number in range(count):
        append_index(
            root,
            {"id": f"w{worker}-{number:03d}", "started_at": "2026-12-04T00:00:00Z"},
        )


def test_processes_adding_rows_at_once_lose_none(tmp_path: Path) -> None:
    workers, each = 8, 40
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    processes = [
        context.Process(target=_append_many, args=(str(tmp_path), w, each, start))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)

    assert [p.exitcode for p in processes] == [0] * workers
    assert len(index_ids(tmp_path)) == workers * each
