"""run_notebook: parameters checked first, every run archived, nothing unscrubbed.

The tests that start a kernel (about a second each) use the fixture notebooks in
tests/notebooks/, named after what they do; the rest replace papermill or stop
before it.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import nbformat
import papermill  # type: ignore[import-untyped]
import pytest

from opslib._config import SECRET_VARIABLES
from opslib._errors import ConfigError, ParameterError, RunError
from opslib._records import format_verdict, list_records, load_record
from opslib._runner import (
    _MEMORY,
    INTERRUPTED_AT_START,
    RunInterrupted,
    run_notebook,
)

NOTEBOOKS = Path(__file__).parent / "notebooks"
ENVIRONMENTS = Path(__file__).parents[1] / "parameters" / "environments"
SIDECAR_KEYS = {
    "sidecar_version",
    "id",
    "notebook",
    "runbook",
    "environment",
    "incident_id",
    "parameters",
    "operator",
    "started_at",
    "finished_at",
    "duration_s",
    "status",
    "error",
    "verdict",
    "actions",
    "refers_to",
    "cells",
    "opslib_version",
    "papermill_version",
    "record_path",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with the real sandbox environment and no secrets set."""
    root = tmp_path / "project"
    environments = root / "parameters" / "environments"
    environments.mkdir(parents=True)
    shutil.copy(ENVIRONMENTS / "sandbox.yaml", environments)
    (root / "notebooks" / "incidents").mkdir(parents=True)
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(environments))
    monkeypatch.setenv("RUNBOOK_OPERATOR", "oncall-7")
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def records(tmp_path: Path) -> Path:
    return tmp_path / "records"


def _files(folder: Path) -> list[Path]:
    return (
        sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    )


def test_run_notebook_archives_a_succeeded_run_with_verdict_and_actions(
    project: Path, records: Path
) -> None:
    record = run_notebook(
        NOTEBOOKS / "ok.ipynb",
        parameters={"incident_id": "INC-42", "apply": "yes", "lookback": "6h"},
        raw=frozenset({"incident_id", "apply"}),
        records_dir=records,
    )

    assert record.status == "succeeded" and record.error is None
    assert re.fullmatch(r"\d{8}T\d{6}Z-ok-INC-42-[0-9a-f]{4}", record.id)
    assert record.verdict is not None
    assert record.verdict["summary"] == "deployment v2 broke the API"
    assert [a["kind"] for a in record.sidecar["actions"]] == ["plan", "result"]
    assert record.record_path.parent == records / record.id[:4] / record.id[4:6]
    assert _files(records) == sorted(
        [record.record_path, record.sidecar_path, records / "index.sqlite"]
    )

    sidecar = json.loads(record.sidecar_path.read_text())
    assert set(sidecar) == SIDECAR_KEYS and sidecar == record.sidecar
    assert sidecar["parameters"] == {
        "incident_id": "INC-42",
        "environment": "sandbox",
        "lookback": "6h",
        "apply": True,
        "note": "",
    }
    assert sidecar["operator"] == "oncall-7"
    assert (
        sidecar["record_path"] == f"{record.id[:4]}/{record.id[4:6]}/{record.id}.ipynb"
    )
    assert {c["status"] for c in sidecar["cells"]} == {"completed"}
    assert _MEMORY.pop("anything") is None and not _MEMORY._latest

    nb = nbformat.read(record.record_path, as_version=4)
    assert nb.metadata.opslib == {
        "record_id": record.id,
        "verdict": record.verdict,
        "actions": sidecar["actions"],
        "environment": "sandbox",
    }
    assert nb.metadata.papermill.parameters == {
        "incident_id": "INC-42",
        "apply": True,
        "lookback": "6h",
        "environment": "sandbox",
    }


def test_run_notebook_records_round_trip_through_index_and_loader(
    project: Path, records: Path
) -> None:
    record = run_notebook(NOTEBOOKS / "ok.ipynb", records_dir=records)

    [row] = list_records(records)
    assert row == {
        "id": record.id,
        "runbook": "ok",
        "environment": "sandbox",
        "incident_id": "INC-1",
        "status": "succeeded",
        "gate": "rollback:dry-run",
        "verdict_status": "fail",
        "cause": "bad-deployment",
        "started_at": record.sidecar["started_at"],
        "record_path": record.sidecar["record_path"],
    }
    assert load_record(records, record.id[:-2]) == record.sidecar
    assert "verdict:     fail — cause: bad-deployment" in format_verdict(record.sidecar)


def test_run_notebook_archives_a_cell_error_with_papermills_banner(
    project: Path, records: Path
) -> None:
    record = run_notebook(
        NOTEBOOKS / "raises_in_second_cell.ipynb", records_dir=records
    )

    assert record.status == "failed" and record.verdict is None
    assert record.error is not None
    assert record.error["kind"] == "cell-error"
    assert record.error["ename"] == "ValueError"
    assert record.error["evalue"] == "the check could not parse the answer"
    nb = nbformat.read(record.record_path, as_version=4)
    assert "papermill-error-cell-tag" in nb.cells[0].metadata["tags"]
    assert nb.cells[record.error["cell_index"]].source.startswith("raise ValueError")
    assert list_records(records)[0]["status"] == "failed"


def test_run_notebook_archives_a_kernel_death(project: Path, records: Path) -> None:
    record = run_notebook(NOTEBOOKS / "kills_kernel.ipynb", records_dir=records)

    assert record.status == "failed" and record.error is not None
    assert record.error["kind"] == "kernel-died"
    nb = nbformat.read(record.record_path, as_version=4)
    stopped = record.error["cell_index"]
    assert nb.cells[0].source.startswith("**This run failed: the kernel died")
    assert "os._exit" in nb.cells[stopped].source
    assert [c["status"] for c in record.sidecar["cells"]][-2:] == ["failed", "pending"]


def test_run_notebook_archives_a_timeout(project: Path, records: Path) -> None:
    record = run_notebook(
        NOTEBOOKS / "sleeps_past_timeout.ipynb", records_dir=records, timeout=0.5
    )

    assert record.status == "failed" and record.error is not None
    assert record.error["kind"] == "timeout"
    assert record.error["ename"] == "CellTimeoutError"
    # The sleeping cell was cut short: the error points at it, the next never ran.
    cells = nbformat.read(record.record_path, as_version=4).cells
    assert "time.sleep(60)" in cells[record.error["cell_index"]].source
    assert cells[-1].source == 'print("never runs")' and not cells[-1].get("outputs")


def test_run_notebook_writes_no_secret_and_no_email_anywhere(
    project: Path, records: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canaries = {
        "CLOUDFLARE_API_TOKEN": "cf-canary-" + secrets.token_hex(8),
        "STRIPE_API_KEY": "rk_test_" + secrets.token_hex(12),
        "R2_SECRET_ACCESS_KEY": "r2/canary+" + secrets.token_hex(8),
    }
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)
    (project / ".env").write_text(
        f"MAILCHANNELS_API_KEY=mc-canary-{secrets.token_hex(8)}\n"
    )
    (project / ".sandbox").mkdir()
    (project / ".sandbox" / "secrets.env").write_text(
        f"STRIPE_WEBHOOK_SECRET=hook-canary-{secrets.token_hex(8)}\n"
    )

    record = run_notebook(NOTEBOOKS / "prints_secrets.ipynb", records_dir=records)

    assert record.status == "failed" and record.error is not None
    assert "[redacted:CLOUDFLARE_API_TOKEN]" in record.error["evalue"]
    # the index is a binary SQLite file: its text is read as UTF-8 all the same
    text = "\n".join(
        path.read_bytes().decode("utf-8", "replace") for path in _files(records)
    )
    assert "[redacted:MAILCHANNELS_API_KEY]" in text
    assert "[redacted:STRIPE_WEBHOOK_SECRET]" in text
    assert re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", text) == []
    assert re.findall(r"(cf|mc|hook)-canary-|r2/canary|rk_test_", text) == []
    for value in canaries.values():
        assert value not in text


@pytest.mark.parametrize(
    ("parameters", "raw", "expected"),
    [
        ({"incident": "INC-1"}, {"incident"}, r"unknown parameter 'incident'"),
        ({"apply": "maybe"}, {"apply"}, r"apply: got 'maybe' — expected true or false"),
        ({"incident_id": ""}, {"incident_id"}, r"incident_id: got '' — expected 1-64"),
        ({"note": 'say "hi"\nbye'}, {"note"}, r"note: got .* — expected a single line"),
        ({"note": datetime.date(2025, 11, 1)}, set(), r"note: .* so quote it"),
        (
            {"lookback": 6},
            set(),
            r"lookback: got 6 — expected text; YAML read it as the number 6",
        ),
        (
            {"environment": "staging"},
            {"environment"},
            r"'staging' as a parameter but 'sandbox'",
        ),
    ],
)
def test_run_notebook_rejects_bad_parameters_before_anything_starts(
    project: Path,
    records: Path,
    monkeypatch: pytest.MonkeyPatch,
    parameters: dict[str, object],
    raw: set[str],
    expected: str,
) -> None:
    monkeypatch.setattr(papermill, "execute_notebook", _must_not_run)

    with pytest.raises(ParameterError, match=expected):
        run_notebook(
            NOTEBOOKS / "ok.ipynb",
            parameters=parameters,
            raw=frozenset(raw),
            records_dir=records,
        )
    assert _files(records) == [] and not records.exists()


def _must_not_run(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("papermill must not start")


@pytest.mark.parametrize(
    ("arguments", "error", "expected"),
    [
        ({"notebook": "no-such-runbook"}, RunError, r"notebook: got 'no-such-runbook'"),
        ({"timeout": 0}, RunError, r"timeout: got 0, expected a positive number"),
        ({"records_dir": "gs://bucket/records"}, RunError, r"expected a local folder"),
        ({"record_id": "../../x"}, RunError, r"record_id: got '\.\./\.\./x'"),
        (
            {"environment": "broken"},
            ConfigError,
            r"broken.yaml: missing key 'platform_url'",
        ),
    ],
)
def test_run_notebook_refuses_bad_arguments_before_anything_starts(
    project: Path,
    records: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: dict[str, Any],
    error: type[Exception],
    expected: str,
) -> None:
    (project / "parameters" / "environments" / "broken.yaml").write_text(
        "name: broken\n"
    )
    monkeypatch.setattr(papermill, "execute_notebook", _must_not_run)
    arguments = {
        "notebook": NOTEBOOKS / "ok.ipynb",
        "records_dir": records,
        **arguments,
    }

    with pytest.raises(error, match=expected):
        run_notebook(**arguments)
    assert _files(records) == []


def test_run_notebook_archives_an_interrupted_run_then_reraises(
    project: Path, records: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)

    with pytest.raises(RunInterrupted) as stopped:
        run_notebook(NOTEBOOKS / "ok.ipynb", records_dir=records)

    [row] = list_records(records)
    sidecar = load_record(records, row["id"])
    assert stopped.value.record.sidecar == sidecar
    assert sidecar["status"] == "aborted"
    assert sidecar["error"] == {
        "kind": "interrupted",
        "ename": "KeyboardInterrupt",
        "evalue": INTERRUPTED_AT_START,  # papermill stopped before the first cell
        "cell_index": None,
    }
    nb = nbformat.read(records / sidecar["record_path"], as_version=4)
    assert nb.cells[0].source.startswith(
        "**This run was interrupted (before any cell ran) and archived as aborted"
    )
    assert "failed" not in nb.cells[0].source
    assert [cell["status"] for cell in sidecar["cells"]] == ["pending"] * len(
        sidecar["cells"]
    )


def test_run_notebook_archives_the_last_saved_state_of_a_runner_failure(
    project: Path, records: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-canary-runner-failure")

    def saves_then_breaks(source: str, output: str, **kwargs: Any) -> None:
        nb = nbformat.read(source, as_version=4)
        nb.cells[2].outputs = [
            nbformat.v4.new_output("stream", name="stdout", text="half")
        ]
        nb.cells[2].metadata["papermill"] = {"start_time": "t0", "status": "running"}
        papermill.iorw.papermill_io.write(nbformat.writes(nb), output)
        raise RuntimeError("engine broke near cf-canary-runner-failure " + "x" * 600)

    monkeypatch.setattr(papermill, "execute_notebook", saves_then_breaks)

    record = run_notebook(NOTEBOOKS / "ok.ipynb", records_dir=records)

    assert record.error is not None
    assert record.error["kind"] == "runner-error"
    assert record.error["evalue"].startswith(
        "engine broke near [redacted:CLOUDFLARE_API_TOKEN]"
    )
    assert record.error["evalue"].endswith("characters)")
    assert record.error["cell_index"] == 3
    nb = nbformat.read(record.record_path, as_version=4)
    assert nb.cells[3].outputs[0]["text"] == "half"
    assert "cf-canary" not in record.record_path.read_text()
