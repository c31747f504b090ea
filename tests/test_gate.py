"""One gate for every action: phrases name the environment, and production changes
only when the environment was named where the run started."""

import dataclasses

import pytest

from opslib import apply_action, gate_widget, load_environment, plan_d1_write
from opslib._actions import gate_problem
from opslib._apidown import rollback_phrase
from opslib._authdiagnosis import clear_limits_phrase, verify_account_phrase
from opslib._backupaction import manual_backup_phrase
from opslib._config import NAMED_ENVIRONMENT_VARIABLE
from opslib._dbwrite import write_phrase
from opslib._latencyverdict import create_index_phrase
from opslib._paymentverdict import repair_phrase
from opslib._queueverdict import requeue_phrase
from opslib._resetverdict import clear_reset_limits_phrase, set_password_phrase
from opslib._restoreaction import restore_phrase
from opslib._undo import undo_phrase
from opslib._webhookverdict import enable_phrase, resend_phrase

SQL = "UPDATE users SET role = 'publisher' WHERE email = 'prodtest2@example.com'"


@pytest.fixture
def production(sandbox, monkeypatch, tmp_path):
    """A production-named environment whose URLs are the sandbox's."""
    sandbox.reset("healthy")
    monkeypatch.setenv("RUNBOOK_RECORDS", str(tmp_path))
    monkeypatch.delenv(NAMED_ENVIRONMENT_VARIABLE, raising=False)
    return dataclasses.replace(load_environment("sandbox"), name="production")


def role(env):
    from opslib import CloudflareClient

    client = CloudflareClient(env)
    try:
        sql = "SELECT role FROM users WHERE email = 'prodtest2@example.com'"
        return client.d1_query(sql)[0]["results"][0]["role"]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("build", "verb", "target"),
    [
        (lambda e: rollback_phrase(e, "v-good"), "rollback", "v-good"),
        (lambda e: repair_phrase(e, "sub_1"), "repair", "sub_1"),
        (lambda e: clear_limits_phrase(e, "10.0.0.1"), "clear", "10.0.0.1"),
        (lambda e: verify_account_phrase(e, "user-1"), "mark", "user-1"),
        (
            lambda e: create_index_phrase(e, "idx_a"),
            "create index",
            "idx_a on manuscripts",
        ),
        (
            lambda e: requeue_phrase(e, 3, "dlq", "queue"),
            "re-enqueue",
            "from dlq to queue",
        ),
        (lambda e: set_password_phrase(e, "user-2"), "set password", "user-2"),
        (lambda e: write_phrase(e, "delete", 2, "users"), "delete", "2 rows of users"),
        (
            lambda e: write_phrase(e, "create-index", 0, "users", "idx_b"),
            "create index",
            "idx_b on users",
        ),
        (
            lambda e: resend_phrase(e, "https://api.example.com/webhooks"),
            "resend",
            "to https://api.example.com/webhooks",
        ),
        (lambda e: enable_phrase(e, "we_123"), "enable webhook endpoint", "we_123"),
        (lambda e: clear_reset_limits_phrase(e, "10.0.0.2"), "clear", "10.0.0.2"),
        (lambda e: manual_backup_phrase(e), "upload", "manual backup of"),
        (lambda e: restore_phrase(e, "backup-1.sql.gz"), "restore", "backup-1.sql.gz"),
        (
            lambda e: undo_phrase(e, "d1-write", "20261204T1715"),
            "undo d1-write",
            "record 20261204T1715",
        ),
    ],
)
def test_every_confirm_phrase_names_action_target_and_environment(build, verb, target):
    env = dataclasses.replace(load_environment("sandbox"), name="staging")
    phrase = build(env)
    assert phrase.endswith(" in staging")
    assert target in phrase
    assert phrase.startswith(f"{verb} ")


def test_a_phrase_without_the_environment_is_refused(production):
    env = load_environment("sandbox")
    plan = dataclasses.replace(plan_d1_write(env, SQL), confirm_phrase="go ahead")
    result = apply_action(plan, environment=env, apply=True, confirm="go ahead")
    assert result.outcome == "refused"
    assert "does not name the environment" in result.detail


def test_production_apply_is_refused_unless_named_on_the_command_line(production):
    plan = plan_d1_write(production, SQL)
    assert plan.confirm_phrase.startswith("update 1 row of users [")
    assert plan.confirm_phrase.endswith("] in production")
    result = apply_action(
        plan, environment=production, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "--env production" in result.detail
    assert result.operator
    assert role(production) == "author"


def test_production_apply_goes_through_when_named(production, monkeypatch):
    monkeypatch.setenv(NAMED_ENVIRONMENT_VARIABLE, "production")
    plan = plan_d1_write(production, SQL)
    result = apply_action(
        plan, environment=production, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied"
    assert role(production) == "publisher"


def test_a_name_for_another_environment_does_not_count(production, monkeypatch):
    monkeypatch.setenv(NAMED_ENVIRONMENT_VARIABLE, "sandbox")
    plan = plan_d1_write(production, SQL)
    assert "got sandbox named" in gate_problem(plan, production)


def test_production_dry_run_needs_no_name(production):
    plan = plan_d1_write(production, SQL)
    assert apply_action(plan, environment=production).outcome == "dry-run"


def test_widget_in_production_is_refused_unless_named(production):
    plan = plan_d1_write(production, SQL)
    box = gate_widget(plan, environment=production)
    box.children[1].value = plan.confirm_phrase
    box.children[2].click()
    assert [r.outcome for r in box.results] == ["refused"]
    assert box.results[0].operator and box.results[0].at
    assert role(production) == "author"
    [record] = box.records
    [result] = [a for a in record.sidecar["actions"] if a["kind"] == "result"]
    assert result["outcome"] == "refused" and "--env production" in result["detail"]
    assert record.sidecar["environment"] == "production"


def test_widget_in_production_applies_when_named(production, monkeypatch):
    monkeypatch.setenv(NAMED_ENVIRONMENT_VARIABLE, "production")
    plan = plan_d1_write(production, SQL)
    box = gate_widget(plan, environment=production)
    box.children[1].value = plan.confirm_phrase
    box.children[2].click()
    assert [r.outcome for r in box.results] == ["applied"]
    assert role(production) == "publisher"
    assert box.records[0].sidecar["actions"][-1]["outcome"] == "applied"


def test_a_name_left_in_the_shell_does_not_reach_the_kernel(monkeypatch, tmp_path):
    import os

    from opslib._runner import _kernel_environment

    monkeypatch.setenv(NAMED_ENVIRONMENT_VARIABLE, "production")
    with _kernel_environment(None, tmp_path):
        assert NAMED_ENVIRONMENT_VARIABLE not in os.environ
        assert os.environ["RUNBOOK_RECORDS"] == str(tmp_path)
    assert os.environ[NAMED_ENVIRONMENT_VARIABLE] == "production"
    with _kernel_environment("staging", tmp_path):
        assert os.environ[NAMED_ENVIRONMENT_VARIABLE] == "staging"
