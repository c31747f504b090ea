"""The gated resend of pending events: dry run, refusal, stale plan, application."""

import pytest

from opslib import (
    CloudflareClient,
    Status,
    StripeReader,
    apply_action,
    check_api_version,
    check_pending_events,
    check_webhook_endpoints,
    check_webhook_logs,
    check_webhook_secret,
    diagnose_stripe_webhooks,
    load_environment,
    plan_webhook_resend,
    probe_webhook,
)
from opslib._webhookaction import split_events

# The SDK's form posts pass bytes as data=, which httpx deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def make_plan(sandbox, scenario):
    sandbox.reset(scenario)
    environment = load_environment("sandbox")
    endpoints = check_webhook_endpoints(environment)
    findings = [
        check_webhook_secret(environment),
        endpoints,
        check_pending_events(environment, "24h"),
        check_api_version(endpoints, "2024-10-28.acacia"),
        check_webhook_logs(environment, "1h"),
        probe_webhook(environment),
    ]
    verdict = diagnose_stripe_webhooks(
        findings, environment=environment, api_version="2024-10-28.acacia"
    )
    return environment, verdict, plan_webhook_resend(environment, verdict)


def pending_counts(environment, event_ids):
    reader = StripeReader(environment)
    try:
        return [reader.event(i)["pending_webhooks"] for i in event_ids]
    finally:
        reader.close()


def enable(environment, endpoint):
    reader = StripeReader(environment)
    try:
        reader.enable_endpoint(endpoint)
    finally:
        reader.close()


def test_plan_lists_each_event_with_type_age_and_pending_count(sandbox):
    _, verdict, plan = make_plan(sandbox, "endpoint-disabled")
    assert verdict.cause == "endpoint-disabled"
    assert plan.action == "resend-webhook-events"
    assert len(plan.before["events"]) == 5
    first = plan.before["events"][0]
    assert {"id", "type", "age_s", "pending_webhooks"} <= set(first)
    assert "only useful once the cause is fixed" in plan.summary
    assert plan.confirm_phrase == verdict.gated_step["confirm"]


def test_recorded_invoice_events_are_left_out(sandbox):
    _, _, plan = make_plan(sandbox, "handler-timeout")
    left_out = {e["type"] for e in plan.before["excluded"]}
    assert left_out == {"invoice.payment_succeeded"}
    assert all("payment_history" in e["reason"] for e in plan.before["excluded"])
    assert len(plan.before["events"]) == 3


def test_events_past_retention_are_refused_in_the_plan():
    old = {
        "id": "evt_old",
        "type": "x",
        "age_s": 31 * 86_400,
        "pending_webhooks": 1,
        "invoice": None,
    }
    chosen, excluded = split_events([old], set())
    assert chosen == []
    assert "older than 30 days" in excluded[0]["reason"]


def test_healthy_plans_nothing(sandbox):
    _, verdict, plan = make_plan(sandbox, "healthy")
    assert verdict.cause == "healthy"
    assert plan.is_noop


def test_dry_run_resends_nothing(sandbox):
    environment, _, plan = make_plan(sandbox, "endpoint-disabled")
    enable(environment, plan.target)
    ids = [e["id"] for e in plan.before["events"]]
    result = apply_action(plan, environment=environment, apply=False)
    assert result.outcome == "dry-run"
    assert pending_counts(environment, ids) == [1] * len(ids)


def test_wrong_phrase_is_refused_and_resends_nothing(sandbox):
    environment, _, plan = make_plan(sandbox, "endpoint-disabled")
    enable(environment, plan.target)
    ids = [e["id"] for e in plan.before["events"]]
    result = apply_action(
        plan, environment=environment, apply=True, confirm="resend everything"
    )
    assert result.outcome == "refused"
    assert pending_counts(environment, ids) == [1] * len(ids)


def test_still_disabled_endpoint_refuses_at_the_gate(sandbox):
    environment, _, plan = make_plan(sandbox, "endpoint-disabled")
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "re-enable it first" in result.detail


def test_stale_plan_is_refused(sandbox):
    environment, _, plan = make_plan(sandbox, "endpoint-disabled")
    enable(environment, plan.target)
    reader = StripeReader(environment)
    try:  # someone resent one event from the Dashboard meanwhile
        reader.retry_event(plan.before["events"][0]["id"], plan.target)
    finally:
        reader.close()
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "stale" in result.detail


def test_applied_resend_empties_pending_and_records_before_image(sandbox):
    environment, _, plan = make_plan(sandbox, "endpoint-disabled")
    enable(environment, plan.target)  # the fix: the endpoint is enabled again
    ids = [e["id"] for e in plan.before["events"]]
    client = CloudflareClient(environment)
    try:
        before = client.d1_query("SELECT COUNT(*) AS n FROM payment_history")[0]
    finally:
        client.close()

    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )

    assert result.outcome == "applied", result.detail
    assert pending_counts(environment, ids) == [0] * len(ids)
    assert result.after is not None and result.after.status is Status.OK
    record = result.to_dict()
    assert [e["id"] for e in record["plan"]["before"]["events"]] == ids
    client = CloudflareClient(environment)
    try:
        after = client.d1_query("SELECT COUNT(*) AS n FROM payment_history")[0]
    finally:
        client.close()
    assert after["results"][0]["n"] == before["results"][0]["n"] + 2
