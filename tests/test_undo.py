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


UPDATED_ROW_COLUMNS = (
    "id, user_id, stripe_subscription_id, plan_type, status, "
    "current_period_start, current_period_end, cancel_at_period_end"
)


def _payment_plan(sandbox, scenario):
    sandbox.reset(scenario)
    env = load_environment("sandbox")
    subs = opslib.check_stripe_subscriptions(env)
    rows = opslib.check_subscription_rows(env, subs)
    metadata = opslib.check_checkout_metadata(env, rows)
    users = opslib.check_subscription_users(env, metadata, rows)
    shown = opslib.check_shown_plan(env, opslib.users_in_scope(subs, rows, users))
    verdict = opslib.diagnose_payment(
        [subs, rows, metadata, users, shown], environment=env
    )
    return env, opslib.plan_subscription_repair(env, verdict)


def _table(env, table, columns):
    client = opslib.CloudflareClient(env)
    try:
        sql = f"SELECT {columns} FROM {table} ORDER BY 1"
        return client.d1_query(sql)[0]["results"]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("scenario", "columns"),
    [
        # The inserted row goes: the table is back byte for byte.
        ("subscription-insert-failed", "*"),
        # An updated row gets its columns back; updated_at keeps the repair's time.
        (
            "events-out-of-order",
            UPDATED_ROW_COLUMNS,
        ),
    ],
)
def test_subscription_repair_is_undone(sandbox, scenario, columns):
    env, plan = _payment_plan(sandbox, scenario)
    assert plan.action == "repair-subscription-row", plan.summary
    subscriptions = _table(env, "subscriptions", columns)
    tiers = _table(env, "users", "id, subscription_tier")
    result = apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied", result.detail
    assert _table(env, "subscriptions", columns) != subscriptions

    _, applied = undo(env, result)
    assert applied.outcome == "applied", applied.detail
    assert applied.after.is_ok, applied.after.summary
    assert _table(env, "subscriptions", columns) == subscriptions
    assert _table(env, "users", "id, subscription_tier") == tiers
