"""The gated subscription-row repair: dry run, refusal, stale plan, application."""

import json
from pathlib import Path

import pytest

from opslib import (
    CloudflareClient,
    Status,
    apply_action,
    check_checkout_metadata,
    check_shown_plan,
    check_stripe_subscriptions,
    check_subscription_rows,
    check_subscription_users,
    diagnose_payment,
    load_environment,
    plan_subscription_repair,
    run_notebook,
    users_in_scope,
    verify_shown_plan,
)


def diagnose(environment):
    subs = check_stripe_subscriptions(environment)
    rows = check_subscription_rows(environment, subs)
    metadata = check_checkout_metadata(environment, rows)
    users = check_subscription_users(environment, metadata, rows)
    shown = check_shown_plan(environment, users_in_scope(subs, rows, users))
    return diagnose_payment(
        [subs, rows, metadata, users, shown],
        environment=environment,
        incident_id="INC-10",
    )


def make_plan(sandbox, scenario):
    sandbox.reset(scenario)
    environment = load_environment("sandbox")
    verdict = diagnose(environment)
    return environment, verdict, plan_subscription_repair(environment, verdict)


def query(environment, sql, params):
    client = CloudflareClient(environment)
    try:
        return client.d1_query(sql, params)[0]["results"]
    finally:
        client.close()


def test_plan_for_a_missing_row_keeps_no_row_as_before_image(sandbox):
    _, verdict, plan = make_plan(sandbox, "subscription-insert-failed")
    assert plan.action == "repair-subscription-row"
    assert plan.target == verdict.gated_step["subscription"]
    assert plan.before["row"] == "no row"
    assert plan.before["user"]["subscription_tier"] == "FREE"
    assert len(plan.before["free_rows"]) == 1
    changed = {c["what"].split(".")[-1]: c["to"] for c in plan.changes}
    assert changed["plan_type"] == "pro"
    assert changed["status"] == "active"
    assert "plan_id" not in changed
    assert plan.undo.startswith(
        "DELETE FROM subscriptions WHERE stripe_subscription_id"
    )


def test_user_deleted_plans_nothing(sandbox):
    _, verdict, plan = make_plan(sandbox, "user-deleted")
    assert verdict.cause == "user-deleted"
    assert plan.is_noop


def test_dry_run_changes_nothing(sandbox):
    environment, _, plan = make_plan(sandbox, "subscription-insert-failed")
    result = apply_action(plan, environment=environment, apply=False)
    assert result.outcome == "dry-run"
    sql = "SELECT id FROM subscriptions WHERE stripe_subscription_id = ?"
    assert query(environment, sql, [plan.target]) == []


def test_wrong_phrase_is_refused(sandbox):
    environment, _, plan = make_plan(sandbox, "subscription-insert-failed")
    result = apply_action(
        plan, environment=environment, apply=True, confirm="repair it please"
    )
    assert result.outcome == "refused"
    assert "does not match" in result.detail


def test_stale_plan_is_refused(sandbox):
    environment, _, plan = make_plan(sandbox, "events-out-of-order")
    user_id = plan.before["user"]["id"]
    client = CloudflareClient(environment)
    try:
        client.d1_query(
            "UPDATE users SET subscription_tier = 'enterprise' WHERE id = ?",
            [user_id],
            read_only=False,
        )
    finally:
        client.close()
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "stale" in result.detail


@pytest.mark.parametrize("scenario", ["metadata-missing-user", "events-out-of-order"])
def test_applied_repair_writes_stripes_values_and_the_view_shows_paid(
    sandbox, scenario
):
    environment, _, plan = make_plan(sandbox, scenario)
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied", result.detail
    assert result.after is not None and result.after.status is Status.OK
    row = query(
        environment,
        "SELECT plan_type, status, current_period_start, current_period_end "
        "FROM subscriptions WHERE stripe_subscription_id = ?",
        [plan.target],
    )[0]
    assert (row["plan_type"], row["status"]) == ("pro", "active")
    assert row["current_period_end"] > row["current_period_start"] > 1_700_000_000
    assert diagnose(environment).cause == "healthy"


def test_follow_up_for_the_test_account_reads_the_platform_route(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    user = query(
        environment,
        "SELECT id, email FROM users WHERE email = ?",
        [environment.test_account_email],
    )[0]
    finding = verify_shown_plan(environment, user["id"], user["email"])
    assert finding.status is Status.FAIL
    assert "GET /payments/subscription shows plan 'free'" in finding.summary


@pytest.mark.parametrize("kind", ["truncated", "refused"])
def test_follow_up_is_unknown_when_the_platform_cannot_be_read(sandbox, kind):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    user = query(
        environment,
        "SELECT id, email FROM users WHERE email = ?",
        [environment.test_account_email],
    )[0]
    sandbox.fault("platform", kind)
    try:
        finding = verify_shown_plan(environment, user["id"], user["email"])
    finally:
        sandbox.clear_faults()
    assert finding.status is Status.UNKNOWN
    assert finding.summary.startswith("platform: ")


def test_record_keeps_plan_before_image_and_outcome(sandbox, tmp_path):
    sandbox.reset("subscription-insert-failed")
    params = {"incident_id": "INC-11"}
    dry = run_notebook(
        "payment-without-subscription",
        parameters=params,
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert dry.status == "succeeded", dry.error
    phrase = dry.verdict["gated_step"]["confirm"]
    sandbox.reset("subscription-insert-failed")
    record = run_notebook(
        "payment-without-subscription",
        parameters={**params, "apply": True, "confirm": phrase},
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    text = Path(record.record_path).read_text()
    assert '"outcome": "applied"' in text
    assert '"row": "no row"' in text
    assert "shown-plan-after" in text
    sidecar = json.loads(Path(record.record_path).with_suffix(".json").read_text())
    assert sidecar["verdict"]["cause"] == "subscription-insert-failed"
    assert "@example.com" not in text


def hidden_paying_customer(environment):
    """A customer whose user the platform shows as free (active free row first)."""
    rows = query(
        environment,
        "SELECT stripe_customer_id, user_id FROM subscriptions "
        "WHERE plan_type != 'free' AND status = 'active' ORDER BY stripe_customer_id",
        [],
    )
    for row in rows:
        shown = query(
            environment,
            "SELECT plan_type FROM user_subscriptions_with_usage WHERE user_id = ?",
            [row["user_id"]],
        )
        if shown[0]["plan_type"] == "free":
            return row["stripe_customer_id"]
    raise AssertionError("the seed has no paying user shown as free")


def test_paid_row_hidden_by_a_free_row_is_repaired_by_cancelling_it(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    customer = hidden_paying_customer(environment)
    subs = check_stripe_subscriptions(environment, customer)
    rows = check_subscription_rows(environment, subs)
    metadata = check_checkout_metadata(environment, rows)
    users = check_subscription_users(environment, metadata, rows)
    shown = check_shown_plan(environment, users_in_scope(subs, rows, users))
    verdict = diagnose_payment(
        [subs, rows, metadata, users, shown],
        environment=environment,
        customer=customer,
    )
    assert (verdict.cause, verdict.status) == ("healthy", Status.WARN)
    plan = plan_subscription_repair(environment, verdict)
    assert [c["to"] for c in plan.changes if "(free)" in c["what"]] == ["canceled"]
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied", result.detail
    assert result.after is not None and result.after.status is Status.OK
