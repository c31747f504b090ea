"""The record archive: ids, write-once files, the index, loading and formatting."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest

from opslib._errors import RunError
from opslib._records import (
    INDEX_NAME,
    RecordQuery,
    append_index,
    archive_dir,
    format_verdict,
    is_record_id,
    list_records,
    load_record,
    new_record_id,
    record_folder,
    write_once,
)

STARTED = datetime.datetime(2026, 12, 4, 17, 15, 1, tzinfo=datetime.UTC)


def _row(record_id: str, started_at: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "runbook": "api-down",
        "environment": "sandbox",
        "status": "succeeded",
        "started_at": started_at,
        **fields,
    }


def _store(records: Path, record_id: str, **fields: Any) -> Path:
    path = records / "2026" / "12" / f"{record_id}.json"
    write_once(path, json.dumps({"id": record_id, **fields}))
    return path


@pytest.mark.parametrize(
    ("runbook", "incident_id", "pattern"),
    [
        ("api-down", "INC-42", r"20261204T171501Z-api-down-INC-42-[0-9a-f]{4}"),
        ("api-down", "", r"20261204T171501Z-api-down-[0-9a-f]{4}"),
        ("my runbook", "a/b", r"20261204T171501Z-my-runbook-a-b-[0-9a-f]{4}"),
    ],
)
def test_new_record_id_joins_time_runbook_incident_and_random_hex(
    runbook: str, incident_id: str, pattern: str
) -> None:
    assert re.fullmatch(pattern, new_record_id(STARTED, runbook, incident_id))


def test_new_record_id_uses_utc_whatever_the_zone_given() -> None:
    tokyo = STARTED.astimezone(datetime.timezone(datetime.timedelta(hours=9)))

    assert new_record_id(tokyo, "api-down").startswith("20261204T171501Z-")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (new_record_id(STARTED, "api-down", "UR-7781-1796380000"), True),
        (new_record_id(STARTED, "stripe"), True),
        ("20261204T171501Z-api-down-../../x-3fa9", False),
        ("20261204T171501Z-api-down", False),
        ("api-down-INC-42-3fa9", False),
    ],
)
def test_is_record_id_accepts_only_the_shape_new_record_id_makes(
    text: str, expected: bool
) -> None:
    assert is_record_id(text) is expected


def test_record_folder_is_year_and_month(tmp_path: Path) -> None:
    assert record_folder(tmp_path, STARTED) == tmp_path / "2026" / "12"


def test_archive_dir_refuses_a_url() -> None:
    with pytest.raises(
        RunError, match=r"records_dir: got 's3://bucket/records', expected a local"
    ):
        archive_dir("s3://bucket/records")


def test_write_once_writes_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "2026" / "12" / "r.json"

    write_once(path, "{}\n")

    assert path.read_text() == "{}\n"
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_write_once_never_replaces_a_record(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_once(path, "first")

    with pytest.raises(
        RunError, match=r"r.json' exists already; records are never rewritten"
    ):
        write_once(path, "second")
    assert path.read_text() == "first"


def test_write_once_names_a_folder_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    with pytest.raises(RunError, match=r"could not write record file .* writable"):
        write_once(blocker / "r.json", "x")


def test_list_records_returns_newest_first_with_filters_and_limit(
    tmp_path: Path,
) -> None:
    append_index(tmp_path, _row("a", "2026-12-01T10:00:00.000Z"))
    append_index(tmp_path, _row("c", "2026-12-03T10:00:00.000Z", environment="staging"))
    append_index(tmp_path, _row("b", "2026-12-02T10:00:00.000Z", runbook="rollback"))

    assert [r["id"] for r in list_records(tmp_path)] == ["c", "b", "a"]
    assert [r["id"] for r in list_records(tmp_path, limit=2)] == ["c", "b"]
    assert [
        r["id"] for r in list_records(tmp_path, RecordQuery(runbook="api-down"))
    ] == ["c", "a"]
    assert [
        r["id"] for r in list_records(tmp_path, RecordQuery(environment="sandbox"))
    ] == [
        "b",
        "a",
    ]


def test_append_index_keeps_only_the_index_fields(tmp_path: Path) -> None:
    append_index(tmp_path, _row("a", "t", verdict_status="fail", secret="x", cells=[]))

    assert list_records(tmp_path) == [
        {
            "id": "a",
            "runbook": "api-down",
            "environment": "sandbox",
            "incident_id": None,
            "status": "succeeded",
            "gate": None,
            "verdict_status": "fail",
            "cause": None,
            "started_at": "t",
            "record_path": None,
        }
    ]
    assert b"secret" not in (tmp_path / INDEX_NAME).read_bytes()


def test_list_records_is_empty_without_an_index(tmp_path: Path) -> None:
    assert list_records(tmp_path / "nothing-yet") == []


def test_load_record_reads_by_full_id_or_unique_prefix(tmp_path: Path) -> None:
    _store(tmp_path, "20261204T171501Z-api-down-INC-42-3fa9", status="failed")
    _store(tmp_path, "20261204T181501Z-api-down-1b2c", status="succeeded")

    assert (
        load_record(tmp_path, "20261204T171501Z-api-down-INC-42-3fa9")["status"]
        == "failed"
    )
    assert load_record(tmp_path, "20261204T18")["status"] == "succeeded"


def test_load_record_prefers_an_exact_id_over_longer_matches(tmp_path: Path) -> None:
    _store(tmp_path, "abc", which="exact")
    _store(tmp_path, "abcd", which="longer")

    assert load_record(tmp_path, "abc")["which"] == "exact"


def test_load_record_names_candidates_of_an_ambiguous_prefix(tmp_path: Path) -> None:
    _store(tmp_path, "20261204T171501Z-api-down-3fa9")
    _store(tmp_path, "20261204T171502Z-api-down-1b2c")

    with pytest.raises(
        RunError,
        match=r"got '20261204T1715', which matches 2 records: "
        r"20261204T171501Z-api-down-3fa9, 20261204T171502Z-api-down-1b2c",
    ):
        load_record(tmp_path, "20261204T1715")


@pytest.mark.parametrize("record_id", ["nope", ""])
def test_load_record_lists_recent_records_for_an_unknown_id(
    tmp_path: Path, record_id: str
) -> None:
    _store(tmp_path, "20261204T171501Z-api-down-3fa9")

    with pytest.raises(
        RunError,
        match=rf"got '{record_id}', .* most recent: 20261204T171501Z-api-down-3fa9",
    ):
        load_record(tmp_path, record_id)


def test_load_record_refuses_a_sidecar_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "2026" / "12" / "broken.json"
    path.parent.mkdir(parents=True)
    path.write_text("{")

    with pytest.raises(RunError, match=r"record 'broken': could not read"):
        load_record(tmp_path, "broken")


SIDECAR = {
    "id": "20261204T171501Z-api-down-INC-42-3fa9",
    "runbook": "api-down",
    "environment": "sandbox",
    "status": "succeeded",
    "duration_s": 3.21,
    "error": None,
    "verdict": {
        "status": "fail",
        "cause": "bad-deployment",
        "summary": "Version 12 fails; the last good version is 11.",
        "evidence": ["5xx on /health", {"version": 12, "deployed": "17:01"}],
        "next_action": "Roll back to version 11.",
        "gated_step": {"command": "runbook run api-down -p apply true"},
    },
}


def test_format_verdict_prints_the_verdict_in_plain_lines() -> None:
    assert format_verdict(SIDECAR).splitlines() == [
        "record:      20261204T171501Z-api-down-INC-42-3fa9",
        "runbook:     api-down  (environment sandbox)",
        "run:         succeeded in 3.2 s",
        "verdict:     fail — cause: bad-deployment",
        "summary:     Version 12 fails; the last good version is 11.",
        "evidence:",
        "  - 5xx on /health",
        "  - version=12, deployed=17:01",
        "next action: Roll back to version 11.",
        "gated step:  runbook run api-down -p apply true",
    ]


def test_format_verdict_shows_the_error_of_a_failed_run_without_verdict() -> None:
    sidecar = {
        **SIDECAR,
        "status": "failed",
        "verdict": None,
        "error": {
            "kind": "timeout",
            "ename": "CellTimeoutError",
            "evalue": "1 s",
            "cell_index": 4,
        },
    }

    lines = format_verdict(sidecar).splitlines()

    assert lines[2:] == [
        "run:         failed in 3.2 s",
        "error:       timeout in cell 4: CellTimeoutError: 1 s",
        "verdict:     none (the notebook did not reach one)",
    ]


def test_format_verdict_says_what_the_gate_did() -> None:
    sidecar = {
        "id": "r1",
        "verdict": {"status": "fail", "cause": "bad-deployment", "summary": "s"},
        "actions": [
            {"kind": "plan", "action": "rollback"},
            {
                "kind": "result",
                "action": "rollback",
                "outcome": "applied",
                "detail": "version v5 is live",
                "after": {"name": "probe", "status": "ok", "summary": "all answer"},
            },
        ],
    }
    text = format_verdict(sidecar)
    assert "gate:        rollback: APPLIED: version v5 is live" in text
    assert "after:       [OK] probe: all answer" in text


@pytest.mark.parametrize(
    ("detail", "line"),
    [
        (
            "confirm phrase 'x' does not match",
            "rollback: REFUSED, nothing changed: confirm phrase 'x' does not match",
        ),
        (
            "confirm phrase 'x' does not match 'y'; nothing changed",
            "rollback: REFUSED: confirm phrase 'x' does not match 'y'; nothing changed",
        ),
    ],
)
def test_format_verdict_says_once_that_a_refusal_changed_nothing(
    detail: str, line: str
) -> None:
    refused = {"kind": "result", "action": "rollback", "outcome": "refused"}
    sidecar = {
        "verdict": {"status": "fail", "cause": "bad-deployment"},
        "actions": [{**refused, "detail": detail}],
    }
    text = format_verdict(sidecar)
    assert line in text
    assert text.count("nothing changed") == 1


def test_format_verdict_offers_no_second_apply_once_applied() -> None:
    step = {"command": "runbook run rollback -p apply true -p confirm x"}
    applied = {"kind": "result", "action": "rollback", "outcome": "applied"}
    for outcome, shows_command in (("applied", False), ("dry-run", True)):
        sidecar = {
            "verdict": {"status": "ok", "cause": "rolled-back", "gated_step": step},
            "actions": [{**applied, "outcome": outcome, "detail": "d"}],
        }
        line = next(
            x
            for x in format_verdict(sidecar).splitlines()
            if x.startswith("gated step")
        )
        assert (step["command"] in line) is shows_command
