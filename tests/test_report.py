"""The post-incident report built from real records: an api-down drill on a bad
deployment (a dry run, then the gated rollback), then the report of both records;
and record ids that name nothing are refused before anything is written."""

import datetime
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import opslib
from opslib import ParameterError, load_environment, load_team, run_notebook
from opslib._finding import Finding
from opslib._report import Report
from opslib._team import SeverityLevel, Team

BIN = Path(sys.executable).parent
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def drill(sandbox, tmp_path_factory):
    """Two api-down records of one incident, then the report run over them."""
    archive = tmp_path_factory.mktemp("records")
    sandbox.reset("bad-deployment")
    first = run_notebook(
        "api-down", parameters={"incident_id": "INC-9"}, records_dir=archive
    )
    phrase = first.verdict["gated_step"]["confirm"]
    second = run_notebook(
        "api-down",
        parameters={"incident_id": "INC-9", "apply": True, "confirm": phrase},
        records_dir=archive,
    )
    ids = [first.sidecar["id"], second.sidecar["id"]]
    report = run_notebook(
        "post-incident-report",
        parameters={"incident_id": "INC-9", "record_ids": ids},
        records_dir=archive,
    )
    assert report.status == "succeeded", report.error
    path = report.record_path.with_name(report.id + ".report.md")
    return {
        "archive": archive,
        "records": [first, second],
        "ids": ids,
        "report": report,
        "path": path,
        "text": path.read_text(),
    }


def front_matter(text):
    head, _, _ = text.removeprefix("---\n").partition("\n---\n")
    return yaml.safe_load(head)


def test_every_cited_record_is_found_for_a_clean_up(drill):
    assert opslib.referenced_records(drill["archive"]) == set(drill["ids"])


def test_a_report_without_a_sidecar_still_protects_its_records(tmp_path):
    folder = tmp_path / "2026" / "12"
    folder.mkdir(parents=True)
    (folder / "20261201T000000Z-x.report.md").write_text(
        "---\nreport: post-incident\nrefers_to:\n- 20261130T1-a\n---\n# Report\n"
    )
    (folder / "20261201T000001Z-y.json").write_text(
        json.dumps({"id": "20261201T000001Z-y", "refers_to": ["20261130T2-b"]})
    )
    (folder / "20261201T000002Z-z.json").write_text("not json")
    found = opslib.referenced_records(tmp_path)
    assert found == {"20261130T1-a", "20261130T2-b"}


def applied(record):
    return next(a for a in record.sidecar["actions"] if a.get("outcome") == "applied")


def test_report_is_written_beside_its_record_and_lists_its_records(drill):
    report = drill["report"]
    assert drill["path"].parent == report.record_path.parent
    assert report.verdict["cause"] == "report-written"
    assert front_matter(drill["text"])["refers_to"] == drill["ids"]
    assert report.sidecar["refers_to"] == drill["ids"]
    assert report.sidecar["parameters"]["record_ids"] == drill["ids"]


def test_report_holds_no_secret(drill, sandbox_token):
    for path in drill["archive"].rglob("*"):
        if path.is_file():
            assert sandbox_token not in path.read_text(errors="replace"), path


def test_report_follows_the_template(drill):
    for heading in (
        "# Incident Report: INC-9 — api-down: bad-deployment",
        "**Date:**",
        "**Duration:**",
        "**Severity:** SEV1 (critical)",
        "**Affected Users:**",
        "## Summary",
        "## Timeline",
        "## Root Cause",
        "## Resolution",
        "## Impact",
        "## Action Items",
    ):
        assert heading in drill["text"]


def test_timeline_comes_from_the_cells_and_the_gate(drill):
    first, second = drill["records"]
    marks = {
        line.split(" — ", 1)[1]: line[2:10]
        for line in drill["text"].splitlines()
        if line.startswith("- ") and " — " in line and line[2:4].isdigit()
    }
    started = datetime.datetime.fromisoformat(first.sidecar["started_at"])
    fixed = datetime.datetime.fromisoformat(applied(second)["at"])
    assert marks["Investigation started"] == f"{started:%H:%M:%S}"
    assert marks["Fix applied"] == f"{fixed:%H:%M:%S}"
    record = json.loads(first.record_path.read_text())
    verdict_cell = next(
        c
        for c in record["cells"]
        if any(opslib.VERDICT_MIME in o.get("data", {}) for o in c.get("outputs", []))
    )
    ended = datetime.datetime.fromisoformat(
        verdict_cell["metadata"]["papermill"]["end_time"]
    )
    assert marks["Root cause identified"] == f"{ended:%H:%M:%S}"
    assert list(marks.values()) == sorted(marks.values())


def test_resolution_names_who_when_outcome_and_undo(drill):
    second = drill["records"][1]
    action = applied(second)
    rows = [
        line for line in drill["text"].splitlines() if "| rollback | applied" in line
    ]
    assert len(rows) == 1
    assert action["operator"] in rows[0]
    assert f"`runbook undo {second.sidecar['id']}`" in rows[0]
    assert "ok: all 2 paths answer as expected" in rows[0]
    assert "[x] Immediate fix (done): rollback" in drill["text"]
    assert "Apply or rule out" not in drill["text"]


def test_affected_users_match_an_independent_count(drill, sandbox):
    env = load_environment("sandbox")
    records = opslib.load_report_records(drill["ids"], records_dir=drill["archive"])
    report = opslib.build_report(
        env, load_team(), records, incident_id="INC-9", records_dir=drill["archive"]
    )
    start, end = report.start.timestamp(), report.end.timestamp()
    db = sqlite3.connect(sandbox.state_dir / "d1.sqlite")
    users = {
        r[0]
        for r in db.execute("SELECT id, last_login FROM users")
        if r[1] and start <= r[1] <= end
    }
    users |= {
        r[0]
        for r in db.execute("SELECT user_id, timestamp FROM audit_log")
        if start <= r[1] <= end and r[0] != "anonymous"
    }
    users |= {
        r[0]
        for r in db.execute("SELECT user_id, uploaded_at FROM manuscripts")
        if start <= r[1] <= end
    }
    total = db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    assert report.affected.facts["affected"] == len(users) > 0
    assert report.affected.facts["total"] == total
    assert f"{len(users)} of {total} users" in drill["text"]


def test_severity_follows_the_matrix_not_the_code(drill):
    env = load_environment("sandbox")
    records = opslib.load_report_records(drill["ids"], records_dir=drill["archive"])
    team = load_team()
    quiet = Team(
        team.escalation,
        team.maintenance,
        (
            SeverityLevel("P1", "urgent", 5, 10, 0.9, ("auth-broken",)),
            SeverityLevel("P2", "routine", 60, 60, 0.0, ()),
        ),
    )
    report = opslib.build_report(
        env, quiet, records, incident_id="INC-9", records_dir=drill["archive"]
    )
    assert report.severity["level"] == "P2"
    assert "**Severity:** P2 (routine)" in report.to_markdown()


def runbook_report(archive, *ids):
    return subprocess.run(
        [
            str(BIN / "runbook"),
            "run",
            "post-incident-report",
            "--records",
            str(archive),
            "-p",
            "incident_id",
            "INC-9",
            "-p",
            "record_ids",
            ",".join(ids),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=300,
    )


def files(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (
            ["20990101T0000"],
            "record_ids: got '20990101T0000', expected the id or a unique prefix",
        ),
        (["not-a-record"], "record_ids: got ['not-a-record']"),
        (["{first}", "{first}"], "each once"),
        (["{first}", "{first_prefix}"], "names {first} twice"),
        (["{report}"], "a report; expected incident records"),
    ],
)
def test_bad_record_ids_exit_2_before_anything_is_written(drill, ids, message):
    names = {
        "first": drill["ids"][0],
        "first_prefix": drill["ids"][0][:-3],
        "report": drill["report"].sidecar["id"],
    }
    before = files(drill["archive"])
    done = runbook_report(drill["archive"], *[i.format(**names) for i in ids])
    assert done.returncode == 2, done.stdout + done.stderr
    assert message.format(**names) in done.stderr
    assert files(drill["archive"]) == before


def test_records_of_another_environment_are_refused(drill):
    with pytest.raises(
        ParameterError, match="ran against 'sandbox'; expected records of 'staging'"
    ):
        opslib.load_report_records(
            drill["ids"], records_dir=drill["archive"], environment="staging"
        )


def test_without_record_ids_the_report_lists_records_and_writes_nothing(drill):
    before = files(drill["archive"])
    record = run_notebook("post-incident-report", records_dir=drill["archive"])
    assert record.status == "succeeded", record.error
    assert record.verdict["cause"] == "inconclusive"
    assert record.sidecar["refers_to"] == []
    new = set(files(drill["archive"])) - set(before)
    assert not [p for p in new if p.name.endswith(".report.md")]


def test_a_record_whose_notebook_is_gone_keeps_its_start_and_end(tmp_path):
    from opslib._timeline import milestones, record_events

    sidecar = {
        "id": "20261204T100000Z-api-down-x",
        "runbook": "api-down",
        "operator": "oncall",
        "environment": "sandbox",
        "status": "failed",
        "started_at": "2026-12-04T10:00:00+00:00",
        "finished_at": "2026-12-04T10:02:00+00:00",
        "record_path": "2026/12/missing.ipynb",
    }
    events = record_events(tmp_path, sidecar)
    assert [(e.kind, f"{e.at:%H:%M}") for e in events] == [
        ("run-started", "10:00"),
        ("run-finished", "10:02"),
    ]
    marks = milestones(events)
    assert marks["investigation"] is events[0]
    assert marks["detected"] is marks["fix"] is marks["restored"] is None


def test_an_incident_that_began_in_a_maintenance_window_says_so():
    from opslib._report import _maintenance
    from opslib._timeline import Event

    sunday = datetime.datetime(2026, 12, 6, 2, 30, tzinfo=datetime.UTC)
    marks = {"detected": Event(sunday, "r", "finding", "probe: 500", "fail")}
    assert _maintenance(load_team(), marks, sunday) == (
        "began inside weekly (Sunday 02:00-04:00 UTC)"
    )
    monday = sunday + datetime.timedelta(days=1)
    later = {"detected": Event(monday, "r", "finding", "probe: 500", "fail")}
    assert _maintenance(load_team(), later, monday) == ""


@pytest.fixture(scope="module")
def ended_early(sandbox, tmp_path_factory):
    """A run the runner archived as failed (no verdict), and the same record as
    an aborted run of auth-broken, as a Ctrl-C leaves it, in an archive of its own."""
    archive = tmp_path_factory.mktemp("ended-early")
    failed = run_notebook(
        ROOT / "tests" / "notebooks" / "raises_in_second_cell.ipynb",
        records_dir=archive,
    )
    assert failed.status == "failed" and failed.verdict is None
    sidecar = opslib.load_record(archive, failed.id)
    aborted_id = failed.id.replace(failed.sidecar["runbook"], "auth-broken")
    aborted = {
        **sidecar,
        "id": aborted_id,
        "runbook": "auth-broken",
        "notebook": "notebooks/incidents/04-auth-broken.ipynb",
        "status": "aborted",
        "error": {**sidecar["error"], "kind": "interrupted"},
        "record_path": str(Path(sidecar["record_path"]).with_name(aborted_id))
        + ".ipynb",
    }
    folder = archive / Path(sidecar["record_path"]).parent
    (folder / f"{aborted_id}.json").write_text(json.dumps(aborted))
    return {"archive": archive, "failed": sidecar, "aborted": aborted}


def test_a_run_without_a_verdict_gives_no_severity_and_no_cause(ended_early):
    env = load_environment("sandbox")
    failed, aborted = ended_early["failed"], ended_early["aborted"]
    assert failed["verdict"] is None and failed["error"]["kind"] != "interrupted"
    team = load_team()
    # The runbook's bare name stands for all its causes in the matrix: a run
    # that reached no verdict must not be taken for one of them.
    named = Team(
        team.escalation,
        team.maintenance,
        (
            SeverityLevel("P1", "urgent", 5, 10, 1.0, (failed["runbook"],)),
            SeverityLevel("P2", "routine", 60, 60, 0.0, ()),
        ),
    )
    report = opslib.build_report(
        env, named, [failed], incident_id="INC-9", records_dir=ended_early["archive"]
    )
    assert report.severity["level"] == "P2"
    assert report.root_causes == []

    real = opslib.build_report(
        env, team, [aborted], incident_id="INC-9", records_dir=ended_early["archive"]
    )
    # alone, the share of users the window counted gives a level below SEV2;
    # the aborted auth-broken run must not raise it to SEV2
    share = real.affected.facts.get("share")
    by_share = team.severity_for([], share if isinstance(share, float) else None)
    assert by_share.name != "SEV2", f"the sandbox's share {share} reaches SEV2"
    assert team.severity_for([("auth-broken", "")]).name == "SEV2"
    assert real.severity["level"] == by_share.name
    assert real.severity["why"].startswith("no cause named")


def test_a_run_without_a_verdict_shows_its_status_and_never_none(ended_early):
    env = load_environment("sandbox")
    failed, aborted = ended_early["failed"], ended_early["aborted"]
    report = opslib.build_report(
        env,
        load_team(),
        [failed, aborted],
        incident_id="INC-9",
        records_dir=ended_early["archive"],
    )
    text = report.to_markdown()

    assert "None" not in text
    assert f"| {aborted['id']} | auth-broken | aborted | aborted — no verdict |" in (
        text
    )
    assert (
        f"| {failed['id']} | {failed['runbook']} | failed | failed — no verdict |"
        in (text)
    )
    assert "no run reached a verdict (" in text
    assert "every verdict was healthy or inconclusive" not in text
    assert f"[ ] Run auth-broken again: run {aborted['id']} aborted before" in text


def bare_report(records, start):
    """A report of these sidecars with nothing else found, to render."""
    return Report(
        incident_id="INC-3",
        records=records,
        events=(),
        milestones={},
        start=start,
        end=start + datetime.timedelta(hours=2),
        severity={
            "level": "SEV3",
            "label": "minor",
            "why": "no cause named",
            "respond_within_min": 60,
            "update_every_min": 60,
        },
        escalation={"level": "L1", "role": "on-call", "contact": "-", "channel": "-"},
        maintenance="",
        affected=Finding("affected-users", "unknown", "not counted"),
        root_causes=(),
        actions=(),
        action_items=(),
        generated_at=start,
    )


def sidecar(record_id, started_at, verdict=None, status="succeeded"):
    return {
        "id": record_id,
        "runbook": "api-down",
        "status": status,
        "started_at": started_at,
        "verdict": verdict,
    }


@pytest.mark.parametrize(
    ("started_at", "date"),
    [
        ("2026-12-05T00:10:00.000Z", "2026-12-05"),
        ("2026-12-05T23:30:00-02:00", "2026-12-06"),
    ],
)
def test_the_date_is_the_first_run_s_not_the_look_back_window_s(started_at, date):
    window_start = datetime.datetime(2026, 12, 4, 23, 10, tzinfo=datetime.UTC)
    ok = {"status": "ok", "cause": "healthy", "summary": "fine"}
    records = [sidecar("r1", started_at, ok), sidecar("r2", "2026-12-07T10:00Z", ok)]

    text = bare_report(records, window_start).to_markdown()

    assert f"**Date:** {date}  \n" in text
    assert "2026-12-04" in text  # the window counted still starts there


def test_a_summary_without_any_verdict_says_no_run_reached_one():
    start = datetime.datetime(2026, 12, 5, 9, tzinfo=datetime.UTC)
    records = [
        sidecar("r1", "2026-12-05T09:00Z", status="failed"),
        sidecar("r2", "2026-12-05T09:05Z", status="aborted"),
    ]

    text = bare_report(records, start).to_markdown()

    assert "no run reached a verdict (api-down (failed), api-down (aborted))" in text
    assert "healthy or inconclusive" not in text


def test_a_summary_of_healthy_verdicts_names_the_runs_without_one():
    start = datetime.datetime(2026, 12, 5, 9, tzinfo=datetime.UTC)
    ok = {"status": "ok", "cause": "healthy", "summary": "fine"}
    records = [
        sidecar("r1", "2026-12-05T09:00Z", ok),
        sidecar("r2", "2026-12-05T09:05Z", status="failed"),
    ]

    text = bare_report(records, start).to_markdown()

    assert (
        "every verdict was healthy or inconclusive, and 1 run(s) reached no "
        "verdict: api-down (failed)." in text
    )


@pytest.mark.parametrize(
    ("minutes", "shown"),
    [(0.4, "under a minute"), (1.5, "1.5 min"), (2.0, "2 min"), (74.6, "1 h 15 min")],
)
def test_the_duration_line_agrees_with_the_front_matter(minutes, shown):
    from opslib._reportmd import _minutes

    assert _minutes(minutes) == shown
