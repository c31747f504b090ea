"""The payment-without-subscription checks and verdict, alone and per scenario."""

import pytest
import stripe

from opslib import (
    Finding,
    Status,
    check_checkout_metadata,
    check_one_time_payments,
    check_shown_plan,
    check_stripe_subscriptions,
    check_subscription_rows,
    check_subscription_users,
    diagnose_payment,
    load_environment,
    users_in_scope,
)
from opslib._payments import differences
from opslib._paymentverdict import classify

SUB = {
    "id": "sub_A",
    "customer": "cus_A",
    "status": "active",
    "plan": "pro",
    "start": 100,
    "end": 200,
    "cancel_at_period_end": False,
    "metadata": {},
}
ROW = {
    "status": "active",
    "current_period_start": 100,
    "current_period_end": 200,
    "cancel_at_period_end": 0,
}


def rows_finding(missing=(), stale=()):
    status = Status.FAIL if missing or stale else Status.OK
    facts = {"missing": list(missing), "stale": list(stale), "rows": {}}
    return Finding("subscription-rows", status, "rows", (), facts)


def verdict_for(*findings, customer=""):
    stripe = Finding("stripe-subscriptions", Status.OK, "subs", (), {"subs": [SUB]})
    environment = load_environment("sandbox")
    return diagnose_payment(
        [stripe, *findings],
        environment=environment,
        customer=customer,
        incident_id="INC-9",
    )


def test_matching_row_has_no_differences():
    assert differences(SUB, ROW) == []


def test_stale_row_names_each_column():
    stale = {**ROW, "status": "incomplete", "current_period_end": 150}
    assert differences(SUB, stale) == ["status", "current_period_end"]


@pytest.mark.parametrize(
    ("gone", "bad", "cause"),
    [
        (["sub_A"], ["sub_A"], "user-deleted"),
        ([], ["sub_A"], "metadata-missing-user"),
        ([], [], "subscription-insert-failed"),
    ],
)
def test_a_missing_row_is_classified_by_user_then_metadata(gone, bad, cause):
    found = {
        "subscription-rows": rows_finding(missing=[SUB]),
        "subscription-users": Finding(
            "subscription-users", Status.OK, "", (), {"gone": gone}
        ),
        "checkout-metadata": Finding(
            "checkout-metadata", Status.OK, "", (), {"bad": bad}
        ),
    }
    assert classify(found) == [("sub_A", cause)]


def test_stale_rows_come_after_missing_ones():
    other = {**SUB, "id": "sub_B"}
    found = {"subscription-rows": rows_finding([SUB], [{"sub": other, "row": ROW}])}
    assert [c for _, c in classify(found)] == [
        "subscription-insert-failed",
        "events-out-of-order",
    ]


def test_user_deleted_offers_no_gated_step():
    users = Finding("subscription-users", Status.FAIL, "", (), {"gone": ["sub_A"]})
    verdict = verdict_for(rows_finding(missing=[SUB]), users)
    assert (verdict.cause, verdict.status, verdict.gated_step) == (
        "user-deleted",
        Status.FAIL,
        None,
    )
    assert "decision for a person" in verdict.next_action


def test_repairable_cause_offers_the_gated_repair_with_its_phrase():
    verdict = verdict_for(rows_finding(missing=[SUB]), customer="cus_A")
    step = verdict.gated_step
    assert step["action"] == "repair-subscription-row"
    assert step["confirm"] == "repair subscription row sub_A in sandbox"
    assert "-p customer cus_A" in step["command"]
    assert "-p confirm 'repair subscription row sub_A in sandbox'" in step["command"]


def test_rows_unknown_is_inconclusive():
    rows = Finding("subscription-rows", Status.UNKNOWN, "D1 did not answer")
    verdict = verdict_for(rows)
    assert (verdict.cause, verdict.status) == ("inconclusive", Status.UNKNOWN)


def test_everything_matching_is_healthy_and_ok():
    verdict = verdict_for(rows_finding())
    assert (verdict.cause, verdict.status, verdict.gated_step) == (
        "healthy",
        Status.OK,
        None,
    )


def run_checks(sandbox, scenario, customer=""):
    sandbox.reset(scenario)
    environment = load_environment("sandbox")
    subs = check_stripe_subscriptions(environment, customer)
    rows = check_subscription_rows(environment, subs)
    metadata = check_checkout_metadata(environment, rows)
    users = check_subscription_users(environment, metadata, rows)
    shown = check_shown_plan(environment, users_in_scope(subs, rows, users))
    return subs, rows, metadata, users, shown


def test_healthy_sandbox_has_a_row_for_every_active_subscription(sandbox):
    findings = run_checks(sandbox, "healthy")
    assert [f.status for f in findings] == [Status.OK] * 5
    assert findings[0].facts["subs"] and not findings[1].facts["missing"]


def test_metadata_scenario_flags_the_snake_case_key(sandbox):
    _, rows, metadata, users, _ = run_checks(sandbox, "metadata-missing-user")
    assert len(rows.facts["missing"]) == 1
    (session,) = metadata.facts["sessions"]
    assert session["snake_case_user_id"] and not session["has_userId"]
    assert users.facts["users"][0]["source"] == "customer metadata"
    assert users.facts["users"][0]["exists"]


def test_user_deleted_scenario_finds_no_user(sandbox):
    _, rows, metadata, users, _ = run_checks(sandbox, "user-deleted")
    assert metadata.status is Status.OK
    assert users.status is Status.FAIL
    assert users.facts["gone"] == [rows.facts["missing"][0]["id"]]


def test_out_of_order_scenario_finds_a_stale_row(sandbox):
    _, rows, *_ = run_checks(sandbox, "events-out-of-order")
    (stale,) = rows.facts["stale"]
    assert stale["row"]["status"] == "incomplete"
    assert differences(stale["sub"], stale["row"]) == [
        "status",
        "current_period_start",
        "current_period_end",
    ]


def test_a_named_customer_scopes_the_run_and_its_shown_plan(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    everything = check_stripe_subscriptions(environment)
    customer = everything.facts["subs"][0]["customer"]
    subs, rows, _, _, shown = run_checks(sandbox, "healthy", customer)
    assert [s["customer"] for s in subs.facts["subs"]] == [customer]
    assert rows.status is Status.OK
    assert len(shown.facts["shown"]) == 1


def test_unknown_customer_warns(sandbox):
    subs, rows, *_ = run_checks(sandbox, "healthy", "cus_nobodyatall00")
    assert subs.status is Status.WARN
    assert rows.status is Status.OK


def pay_once_outside_checkout(environment):
    """A $10 PaymentIntent paid the way create-payment-intent takes it."""
    stripe.enable_telemetry = False
    client = stripe.StripeClient(
        environment.secret("STRIPE_API_KEY"),
        base_addresses={"api": environment.stripe_api_url},
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
    )
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030}
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {**card, "cvc": "123"}}
    )
    intent = client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "payment_method": method.id}
    )
    return client.v1.payment_intents.confirm(intent.id).id


def test_recorded_one_time_payments_are_ok(sandbox):
    subs, *_ = run_checks(sandbox, "healthy")
    finding = check_one_time_payments(load_environment("sandbox"), subs)
    assert finding.status is Status.OK
    assert finding.facts["one_time"] == 6


# The SDK's httpx client posts form bodies as data=bytes, which httpx 0.28 deprecates.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_a_payment_intent_without_a_row_is_flagged(sandbox):
    subs, *_ = run_checks(sandbox, "healthy")
    environment = load_environment("sandbox")
    paid = pay_once_outside_checkout(environment)
    finding = check_one_time_payments(environment, subs)
    assert finding.status is Status.WARN
    assert finding.facts["unrecorded"] == [paid]
    assert "no handler" in finding.summary
