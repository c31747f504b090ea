"""Drills of the auth-broken runbook: each fault named, healthy healthy, repairs run."""

import json
from pathlib import Path

import pytest

from opslib import load_environment, run_notebook
from opslib._drill import drill_once
from opslib.sandbox import SCENARIOS

AUTH_SCENARIOS = [s.name for s in SCENARIOS.values() if s.notebook == "auth-broken"]


def _sidecar(record_path):
    return json.loads(Path(record_path).with_suffix(".json").read_text())


def test_every_auth_cause_has_a_scenario():
    causes = {SCENARIOS[name].cause for name in AUTH_SCENARIOS}
    assert causes == {
        "kv-sessions-unavailable",
        "login-rate-limited",
        "unverified-accounts",
        "cors-origin-missing",
        "jwt-secret-missing",
    }


@pytest.mark.parametrize("scenario", AUTH_SCENARIOS)
def test_auth_drill_names_the_cause_and_its_target(sandbox, scenario, tmp_path):
    sandbox.reset(scenario)
    details = sandbox.truth()["details"]
    result = drill_once(sandbox, records_dir=tmp_path, notebook="auth-broken")
    assert result.passed, result.detail
    verdict = _sidecar(result.record_path)["verdict"]
    step = verdict["gated_step"] or {}
    if scenario == "login-rate-limited":
        assert step["ip"] == details["ip"]
    elif scenario == "unverified-accounts":
        assert step["user_id"] in details["user_ids"]
    elif scenario == "cors-origin-missing":
        assert details["missing_origin"] in verdict["summary"]
    elif scenario == "jwt-secret-missing":
        assert "does not break cookie sessions" in verdict["summary"]
    if scenario not in ("login-rate-limited", "unverified-accounts"):
        assert verdict["gated_step"] is None


def test_healthy_is_healthy_for_auth_broken(sandbox, tmp_path):
    sandbox.reset("healthy")
    result = drill_once(sandbox, records_dir=tmp_path, notebook="auth-broken")
    verdict = _sidecar(result.record_path)["verdict"]
    assert (verdict["cause"], verdict["status"]) == ("healthy", "ok")
    assert verdict["gated_step"] is None


def test_headless_run_clears_the_limits_and_leaks_no_credentials(sandbox, tmp_path):
    sandbox.reset("login-rate-limited")
    phrase = "clear login rate limits of 127.0.0.1 in sandbox"
    record = run_notebook(
        "auth-broken",
        parameters={
            "incident_id": "INC-AUTH",
            "client_ip": "127.0.0.1",
            "apply": True,
            "confirm": phrase,
        },
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    text = Path(record.record_path).read_text()
    sidecar = _sidecar(record.record_path)
    results = [a for a in sidecar["actions"] if a.get("kind") == "result"]
    assert results[-1]["outcome"] == "applied"
    assert results[-1]["plan"]["before"]["keys"]
    assert results[-1]["after"]["status"] == "ok"
    password = load_environment("sandbox").secret("RUNBOOK_TEST_ACCOUNT_PASSWORD")
    assert password not in text
    assert "session_id=" not in text
