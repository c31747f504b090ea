"""The password-reset runbook drilled end to end, and its record kept clean."""

import json
import re
from pathlib import Path

import pytest

from opslib import run_notebook
from opslib._drill import drill_once
from opslib.sandbox import SCENARIOS

RESET_SCENARIOS = [s.name for s in SCENARIOS.values() if s.notebook == "password-reset"]
NEW_PASSWORD = "Drill!Pass-7731x"
PLATFORM_HASH = re.compile(r"(?<![0-9a-f])[0-9a-f]{96}(?![0-9a-f])")


def test_every_reset_fault_has_a_scenario():
    assert sorted(RESET_SCENARIOS) == [
        "email-vars-missing",
        "mail-provider-unauthorized",
        "reset-rate-limited",
        "reset-token-consumed-by-precheck",
    ]


@pytest.mark.parametrize("scenario", RESET_SCENARIOS)
def test_drill_names_the_cause_and_offers_a_gated_repair(sandbox, scenario, tmp_path):
    sandbox.reset(scenario)
    record = run_notebook(
        "password-reset",
        parameters={"incident_id": "DRILL-1", "user_email": "author0003@example.com"},
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    assert record.verdict["cause"] == SCENARIOS[scenario].cause
    assert record.verdict["status"] == "fail"
    # A full rate limit is repaired by clearing the counters; the rest offer the
    # manual reset for the named user.
    expected = (
        "clear-reset-limits"
        if scenario == "reset-rate-limited"
        else "set-password-hash"
    )
    assert record.verdict["gated_step"]["action"] == expected


def test_healthy_scenario_is_healthy_for_this_runbook(sandbox, tmp_path):
    sandbox.reset("healthy")
    result = drill_once(sandbox, records_dir=tmp_path, notebook="password-reset")
    sidecar = json.loads(Path(result.record_path).with_suffix(".json").read_text())
    assert result.passed, result.detail
    assert sidecar["verdict"]["cause"] == "healthy"
    assert sidecar["verdict"]["status"] == "ok"
    assert sidecar["verdict"]["gated_step"] is None


def test_applied_reset_keeps_the_password_out_of_the_record(
    sandbox, tmp_path, monkeypatch
):
    sandbox.reset("mail-provider-unauthorized")
    monkeypatch.setenv("RUNBOOK_NEW_PASSWORD", NEW_PASSWORD)
    params = {"incident_id": "INC-8", "user_email": "author0003@example.com"}
    dry = run_notebook(
        "password-reset", parameters=params, environment="sandbox", records_dir=tmp_path
    )
    phrase = dry.verdict["gated_step"]["confirm"]
    sandbox.reset("mail-provider-unauthorized")
    record = run_notebook(
        "password-reset",
        parameters={**params, "apply": True, "confirm": phrase},
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    text = Path(record.record_path).read_text()
    assert '"outcome": "applied"' in text
    files = list(tmp_path.rglob("*"))
    assert files
    for path in files:
        if path.is_file():
            assert NEW_PASSWORD not in path.read_text(errors="replace"), path


def _runs(sandbox, scenario, tmp_path, count):
    sandbox.reset(scenario)
    params = {"incident_id": "INC-9", "user_email": "author0001@example.com"}
    return [
        run_notebook(
            "password-reset",
            parameters=params,
            environment="sandbox",
            records_dir=tmp_path / str(n),
        )
        for n in range(count)
    ]


def test_repeated_runs_keep_naming_the_mail_provider(sandbox, tmp_path):
    records = _runs(sandbox, "mail-provider-unauthorized", tmp_path, 4)
    causes = [r.verdict["cause"] for r in records]
    assert causes == ["mail-provider-unauthorized"] * 4
    skipped = next(
        f for f in records[-1].verdict["findings"] if f["name"] == "reset-request"
    )
    assert "skipped" in skipped["summary"]


def test_repeated_runs_on_a_healthy_platform_stay_healthy(sandbox, tmp_path):
    records = _runs(sandbox, "healthy", tmp_path, 4)
    assert [r.verdict["cause"] for r in records] == ["healthy"] * 4


def test_no_password_hash_in_any_record_of_a_dry_run_or_apply(
    sandbox, tmp_path, monkeypatch
):
    sandbox.reset("mail-provider-unauthorized")
    monkeypatch.setenv("RUNBOOK_NEW_PASSWORD", NEW_PASSWORD)
    params = {"incident_id": "INC-8", "user_email": "author0003@example.com"}
    dry = run_notebook(
        "password-reset", parameters=params, environment="sandbox", records_dir=tmp_path
    )
    assert dry.verdict["gated_step"]["action"] == "set-password-hash"
    applied = run_notebook(
        "password-reset",
        parameters={
            **params,
            "apply": True,
            "confirm": dry.verdict["gated_step"]["confirm"],
        },
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert applied.status == "succeeded", applied.error
    records = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file()
        and p.suffix in (".json", ".ipynb", ".md")
        and "before-images" not in p.parts
    ]
    assert len(records) >= 4
    for path in records:
        assert not PLATFORM_HASH.search(path.read_text(errors="replace")), path
    assert list((tmp_path / "before-images").glob("*.json"))
