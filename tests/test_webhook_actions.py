"""The gated steps: resend and re-enable; dry run, refusal, stale plan, application."""

from pathlib import Path

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
    plan_webhook_repair,
    probe_webhook,
    run_notebook,
)
from opslib._webhookaction import split_events

# The SDK's form posts pass bytes as data=, which httpx deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def diagnose(environment):
    endpoints = check_webhook_endpoints(environment)
    findings = [
        check_webhook_secret(environment),
        endpoints,
        check_pending_events(environment, "24h"),
        check_api_version(endpoints, "2024-10-28.acacia"),
        check_webhook_logs(environment, "1h"),
        probe_webhook(environment),
    ]
    return diagnose_stripe_webhooks(
        findings, environment=environment, api_version="2024-10-28.acacia"
    )


def make_plan(sandbox, scenario):
    sandbox.reset(scenario)
    environment = load_environment("sandbox")
    verdict = diagnose(environment)
    return environment, verdict, plan_webhook_repair(environment, verdict)


def resend_plan(sandbox):
    """The endpoint was disabled and is enabled again: its events are still pending."""
    sandbox.reset("endpoint-disabled")
    environment = load_environment("sandbox")
    reader = StripeReader(environment)
    try:
        reader.enable_endpoint(reader.webhook_endpoints()[0]["id"])
    finally:
        reader.close()
    verdict = diagnose(environment)
    return environment, verdict, plan_webhook_repair(environment, verdict)


def pending_counts(environment, event_ids):
    reader = StripeReader(environment)
    try:
        return [reader.event(i)["pending_webhooks"] for i in event_ids]
    finally:
        reader.close()


def test_plan_lists_each_event_with_type_age_and_pending_count(sandbox):
    _, verdict, plan = resend_plan(sandbox)
    assert verdict.cause == "inconclusive"
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
    environment, _, plan = resend_plan(sandbox)
    ids = [e["id"] for e in plan.before["events"]]
    result = apply_action(plan, environment=environment, apply=False)
    assert result.outcome == "dry-run"
    assert pending_counts(environment, ids) == [1] * len(ids)


def test_wrong_phrase_is_refused_and_resends_nothing(sandbox):
    environment, _, plan = resend_plan(sandbox)
    ids = [e["id"] for e in plan.before["events"]]
    result = apply_action(
        plan, environment=environment, apply=True, confirm="resend everything"
    )
    assert result.outcome == "refused"
    assert pending_counts(environment, ids) == [1] * len(ids)


def test_endpoint_disabled_again_refuses_the_resend(sandbox):
    environment, _, plan = resend_plan(sandbox)
    reader = StripeReader(environment)
    try:
        reader._call(
            lambda: reader._client.v1.webhook_endpoints.update(
                plan.target, params={"disabled": True}
            )
        )
    finally:
        reader.close()
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "re-enable it first" in result.detail


def test_disabled_endpoint_plans_its_re_enabling(sandbox):
    _, verdict, plan = make_plan(sandbox, "endpoint-disabled")
    assert verdict.cause == "endpoint-disabled"
    assert plan.action == "enable-webhook-endpoint"
    assert plan.before["status"] == "disabled"
    assert plan.confirm_phrase.startswith("enable webhook endpoint we_")
    assert "run the runbook again afterwards" in verdict.next_action


def test_re_enabling_applied_enables_the_endpoint(sandbox):
    environment, _, plan = make_plan(sandbox, "endpoint-disabled")
    wrong = apply_action(plan, environment=environment, apply=True, confirm="enable")
    assert wrong.outcome == "refused"
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied", result.detail
    assert result.after.status is Status.OK
    again = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert again.outcome == "refused"  # now enabled: the plan went stale
    assert "stale" in again.detail


def test_stale_plan_is_refused(sandbox):
    environment, _, plan = resend_plan(sandbox)
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
    environment, _, plan = resend_plan(sandbox)
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


def test_headless_run_re_enables_and_keeps_the_secret_out_of_the_record(
    sandbox, tmp_path
):
    params = {"incident_id": "INC-77"}
    sandbox.reset("endpoint-disabled")
    dry = run_notebook(
        "stripe-webhooks",
        parameters=params,
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert dry.status == "succeeded", dry.error
    assert dry.verdict["cause"] == "endpoint-disabled"
    phrase = dry.verdict["gated_step"]["confirm"]

    record = run_notebook(
        "stripe-webhooks",
        parameters={**params, "apply": True, "confirm": phrase},
        environment="sandbox",
        records_dir=tmp_path,
    )

    assert record.status == "succeeded", record.error
    text = Path(record.record_path).read_text()
    assert '"outcome": "applied"' in text
    assert '"status": "disabled"' in text  # the before-image
    assert "endpoint-after" in text
    secret = load_environment("sandbox").secret("STRIPE_WEBHOOK_SECRET")
    assert secret and secret not in text
