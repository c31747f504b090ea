"""Undo from a record for the actions that existed before gated D1 writes: the
account marked verified, the created index, the rollback; and what cannot be undone."""

import json

import pytest
from procedure_helpers import live_version

import opslib
from opslib import apply_action, check_restore, load_environment, plan_undo
from opslib._queryplan import HOT_INDEX, read_indexes


def sidecar_of(result, record_id="20261204T120000Z-test-0001", environment="sandbox"):
    """A record's sidecar as the runner writes it, holding one gate result."""
    return json.loads(
        json.dumps(
            {"id": record_id, "environment": environment, "actions": [result.to_dict()]}
        )
    )


def undo(env, result):
    plan = plan_undo(env, sidecar_of(result))
    applied = apply_action(
        plan,
        environment=env,
        apply=True,
        confirm=plan.confirm_phrase,
        verify=lambda: check_restore(env, plan),
    )
    return plan, applied


def user_row(env, user_id):
    client = opslib.CloudflareClient(env)
    try:
        sql = "SELECT * FROM users WHERE id = ?"
        return client.d1_query(sql, [user_id])[0]["results"]
    finally:
        client.close()


def indexes(env):
    client = opslib.CloudflareClient(env)
    try:
        return read_indexes(client)
    finally:
        client.close()


def test_verified_account_goes_back_to_unverified(sandbox):
    sandbox.reset("unverified-accounts")
    env = load_environment("sandbox")
    user_id = sandbox.truth()["details"]["user_ids"][0]
    before = user_row(env, user_id)
    plan = opslib.plan_verify_account(env, user_id)
    result = apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied"
    assert user_row(env, user_id) != before

    restore, applied = undo(env, result)
    assert restore.confirm_phrase.startswith("undo verify-account of record ")
    assert applied.outcome == "applied", applied.detail
    assert applied.after.is_ok
    assert user_row(env, user_id) == before


def test_created_index_is_dropped_again(sandbox):
    sandbox.reset("missing-index")
    env = load_environment("sandbox")
    before = indexes(env)
    plan = opslib.plan_create_index(env, _missing_index_verdict(env))
    result = apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied"
    assert HOT_INDEX in indexes(env)

    _, applied = undo(env, result)
    assert applied.outcome == "applied", applied.detail
    assert applied.after.is_ok
    assert indexes(env) == before


def test_rollback_is_undone_by_rolling_forward_again(sandbox):
    sandbox.reset("bad-deployment")
    truth = sandbox.truth()["details"]
    env = load_environment("sandbox")
    choice = opslib.choose_rollback_version(env)
    plan = opslib.plan_version_rollback(env, choice)
    result = apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert live_version() == truth["good_version"]

    restore, applied = undo(env, result)
    assert restore.action == "rollback"
    assert restore.changes[0]["to"] == truth["bad_version"]
    assert applied.outcome == "applied" and applied.after.is_ok
    assert live_version() == truth["bad_version"]


def test_undo_refuses_once_the_index_is_gone(sandbox):
    sandbox.reset("missing-index")
    env = load_environment("sandbox")
    plan = opslib.plan_create_index(env, _missing_index_verdict(env))
    result = apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    client = opslib.CloudflareClient(env)
    try:
        client.d1_query(f"DROP INDEX {HOT_INDEX}", read_only=False)
    finally:
        client.close()
    _, applied = undo(env, result)
    assert applied.outcome == "refused"


@pytest.mark.parametrize(
    ("sidecar", "why"),
    [
        ({"id": "x", "environment": "staging", "actions": []}, "is for 'staging'"),
        ({"id": "x", "environment": "sandbox", "actions": []}, "no applied action"),
        (
            {
                "id": "x",
                "environment": "sandbox",
                "actions": [
                    {
                        "kind": "result",
                        "action": "requeue",
                        "outcome": "applied",
                        "undo": "none",
                    }
                ],
            },
            "requeue cannot be undone",
        ),
        ({"id": "x", "missing": "record 'x': no such record"}, "no such record"),
    ],
)
def test_records_without_an_undoable_action_plan_nothing(sidecar, why):
    plan = plan_undo(load_environment("sandbox"), sidecar)
    assert plan.is_noop
    assert why in plan.summary


def _missing_index_verdict(env):
    findings = [opslib.check_query_plans(env), opslib.check_indexes(env)]
    return opslib.diagnose_slow_responses(findings, environment=env)
