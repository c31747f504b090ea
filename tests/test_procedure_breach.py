"""The security-breach procedure on the sandbox: secrets, sessions and evidence read
without changing anything; the gated rotation (value from the environment, never in
a record) and the gated session purge (no key name in the record); neither undone."""

import secrets
from pathlib import Path

import pytest
from procedure_helpers import live_version, result_of, run

import opslib
from opslib import load_environment, run_notebook

ROTATE = {"step": "rotate-secret", "secret_name": "JWT_SECRET"}


def rotate(tmp_path, confirm="rotate JWT_SECRET of manuscript-upload-api in sandbox"):
    """Run the rotation of JWT_SECRET with apply and a confirm phrase."""
    return run("security-breach", tmp_path, **ROTATE, apply=True, confirm=confirm)


def kv_keys(env, prefix):
    client = opslib.CloudflareClient(env)
    try:
        keys = client.kv_list_keys(env.kv_namespaces["SESSIONS"], prefix=prefix)
    finally:
        client.close()
    return sorted(k["name"] for k in keys)


def record_text(record):
    """Everything the archive holds for a run: the notebook and its sidecar."""
    path = Path(record.record_path)
    return path.read_text() + path.with_suffix(".json").read_text()


@pytest.fixture
def env(sandbox):
    sandbox.reset("healthy")
    return load_environment("sandbox")


def test_read_only_run_counts_sessions_and_keeps_evidence(env, tmp_path):
    sessions = kv_keys(env, "session:")
    version = live_version()
    record = run("security-breach", tmp_path, incident_id="INC-0")
    assert record.verdict["cause"] == "read-only"
    findings = {f["name"]: f for f in record.verdict["findings"]}
    assert findings["sessions"]["summary"].endswith("live sessions in SESSIONS")
    secret_rows = {r["name"] for r in findings["worker-secrets"]["evidence"]}
    assert {"JWT_SECRET", "STRIPE_WEBHOOK_SECRET"} <= secret_rows
    assert "no forced password reset" in findings["password-resets"]["summary"]
    kinds = {r["evidence"] for r in findings["evidence"]["evidence"]}
    assert {"Worker deployments", "audit_log entries"} <= kinds
    assert set(sessions) <= set(kv_keys(env, "session:"))
    assert live_version() == version
    assert not any(key.split(":", 1)[1] in record_text(record) for key in sessions)


def test_purge_dry_run_and_wrong_phrase_change_nothing(env, tmp_path):
    sessions = kv_keys(env, "session:")
    dry = run("security-breach", tmp_path, step="purge-sessions")
    assert result_of(dry)["outcome"] == "dry-run"
    assert dry.verdict["gated_step"]["confirm"] == "purge all sessions in sandbox"
    refused = run(
        "security-breach",
        tmp_path,
        step="purge-sessions",
        apply=True,
        confirm="purge sessions",
    )
    assert result_of(refused)["outcome"] == "refused"
    assert set(sessions) <= set(kv_keys(env, "session:"))


def test_purge_applied_deletes_sessions_only_and_records_no_key(env, tmp_path):
    sessions = kv_keys(env, "session:")
    counters = kv_keys(env, "rate_limit:")
    assert sessions
    record = run(
        "security-breach",
        tmp_path,
        step="purge-sessions",
        apply=True,
        confirm="purge all sessions in sandbox",
    )
    result = result_of(record)
    assert result["outcome"] == "applied"
    assert len(result["plan"]["before"]["keys_sha256"]) == 64
    assert result["plan"]["before"]["count"] >= len(sessions)
    assert "after the purge" in result["after"]["summary"]
    # The sandbox's own traffic keeps logging in and counting; none of the
    # sessions seen before may survive, and every counter must.
    assert not set(sessions) & set(kv_keys(env, "session:"))
    assert set(counters) <= set(kv_keys(env, "rate_limit:"))
    text = record_text(record)
    assert not any(key.split(":", 1)[1] in text for key in sessions)

    undo = run("undo", tmp_path, record_id=record.id)
    assert undo.verdict["cause"] == "inconclusive"
    assert "sessions cannot be restored" in undo.verdict["summary"]


def test_rotation_applied_never_records_the_value(env, tmp_path, monkeypatch):
    value = "rotated-" + secrets.token_hex(16)
    monkeypatch.setenv("RUNBOOK_NEW_SECRET", value)
    before = live_version()
    record = rotate(tmp_path)
    result = result_of(record)
    assert result["outcome"] == "applied"
    assert result["after"]["status"] == "ok"
    assert result["plan"]["before"]["secret_name"] == "JWT_SECRET"
    assert live_version() != before
    text = record_text(record)
    assert value not in text
    assert "redacted:RUNBOOK_NEW_SECRET" not in text  # never reached an output

    undo = run("undo", tmp_path, record_id=record.id)
    assert "old value is not kept" in undo.verdict["summary"]
    assert live_version() != before


def test_rotation_without_a_value_is_refused(env, tmp_path, monkeypatch):
    monkeypatch.delenv("RUNBOOK_NEW_SECRET", raising=False)
    before = live_version()
    record = rotate(tmp_path)
    assert result_of(record)["outcome"] == "refused"
    assert "RUNBOOK_NEW_SECRET" in result_of(record)["detail"]
    assert live_version() == before


def test_rotation_with_a_wrong_phrase_is_refused(env, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_NEW_SECRET", "rotated-" + secrets.token_hex(16))
    before = live_version()
    record = rotate(tmp_path, confirm="rotate JWT_SECRET")
    assert result_of(record)["outcome"] == "refused"
    assert live_version() == before


def test_rotation_is_refused_when_a_deploy_came_since_the_plan(env, monkeypatch):
    monkeypatch.setenv("RUNBOOK_NEW_SECRET", "rotated-" + secrets.token_hex(16))
    plan = opslib.plan_breach_step(env, step="rotate-secret", secret_name="JWT_SECRET")
    client = opslib.CloudflareClient(env)
    try:
        client.put_secret("ANTHROPIC_API_KEY", "another-" + secrets.token_hex(16))
    finally:
        client.close()
    moved = live_version()
    result = opslib.apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert live_version() == moved


def test_an_unknown_secret_plans_nothing(env):
    plan = opslib.plan_breach_step(env, step="rotate-secret", secret_name="NOT_THERE")
    assert plan.is_noop
    assert "no such secret" in plan.summary


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"step": "wipe"}, "step: got 'wipe'"),
        ({"secret_name": "jwt_secret"}, "secret_name: got 'jwt_secret'"),
    ],
)
def test_bad_parameters_stop_before_the_kernel(env, tmp_path, parameters, message):
    with pytest.raises(opslib.ParameterError, match=message):
        run_notebook(
            "security-breach",
            parameters=parameters,
            environment="sandbox",
            records_dir=tmp_path,
        )


def test_rotation_without_a_name_is_refused_before_a_kernel(env, tmp_path):
    with pytest.raises(opslib.ParameterError, match="secret_name: empty"):
        run_notebook(
            "security-breach",
            parameters={"step": "rotate-secret"},
            environment="sandbox",
            records_dir=tmp_path,
        )
    assert not any(tmp_path.rglob("*.json"))
    with pytest.raises(opslib.ParameterError, match="secret_name: '' is empty"):
        opslib.require_breach_target({"step": "rotate-secret", "secret_name": ""})
