"""The sandbox's webhook handler and its Stripe endpoints, events and retries."""

import json
import time

import httpx
import pytest
import stripe

from opslib import APIError, CloudflareClient, StripeReader, load_environment

SQL_PAYMENTS = "SELECT COUNT(*) AS n FROM payment_history WHERE stripe_invoice_id = ?"


def query(environment, sql, params):
    client = CloudflareClient(environment)
    try:
        return client.d1_query(sql, params)[0]["results"]
    finally:
        client.close()


def paid_subscription(environment):
    rows = query(
        environment,
        "SELECT stripe_subscription_id AS id FROM subscriptions "
        "WHERE plan_type != 'free' AND status = 'active' ORDER BY id LIMIT 1",
        [],
    )
    return rows[0]["id"]


def invoice_event(sub_id, invoice_id):
    return {
        "id": "evt_test" + invoice_id[3:],
        "object": "event",
        "type": "invoice.payment_succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": invoice_id,
                "object": "invoice",
                "subscription": sub_id,
                "amount_paid": 2900,
                "currency": "usd",
            }
        },
    }


def post(environment, body, *, secret=None, path="/webhooks/stripe", header=True):
    payload = json.dumps(body)
    headers = {"Content-Type": "application/json"}
    if header:
        secret = secret or environment.secret("STRIPE_WEBHOOK_SECRET")
        headers["stripe-signature"] = stripe.WebhookSignature.generate_signature_header(
            payload, secret
        )
    return httpx.post(
        environment.platform_url + path, content=payload, headers=headers, timeout=10
    )


@pytest.fixture
def environment(sandbox):
    sandbox.reset("healthy")
    return load_environment("sandbox")


def test_missing_signature_header_is_400(environment):
    answer = post(environment, {"type": "customer.created"}, header=False)
    assert answer.status_code == 400
    assert answer.json() == {"error": "No signature provided"}


def test_signature_with_another_secret_is_400(environment):
    answer = post(environment, {"type": "x"}, secret="whsec_" + "0" * 32)
    assert answer.status_code == 400
    assert answer.json() == {"error": "Invalid signature"}


def test_good_invoice_event_writes_one_payment_row(environment):
    sub_id = paid_subscription(environment)
    event = invoice_event(sub_id, "in_sandboxtest0001")

    answer = post(environment, event)

    assert answer.status_code == 200
    assert answer.json() == {"received": True}
    rows = query(environment, SQL_PAYMENTS, ["in_sandboxtest0001"])
    assert rows[0]["n"] == 1


def test_unhandled_type_is_200_and_writes_nothing(environment):
    before = query(environment, "SELECT COUNT(*) AS n FROM payment_history", [])
    answer = post(environment, {"id": "evt_x", "type": "customer.created", "data": {}})
    after = query(environment, "SELECT COUNT(*) AS n FROM payment_history", [])
    assert answer.status_code == 200
    assert after == before


def test_alias_shares_the_handler_but_is_rate_limited(environment):
    event = {"id": "evt_alias", "type": "customer.created", "data": {}}
    statuses = [
        post(environment, event, path="/payments/webhook").status_code
        for _ in range(101)
    ]
    assert statuses[0] == 200
    assert statuses[-1] == 429
    assert post(environment, event).status_code == 200  # the main path is not limited


def test_basil_payload_makes_the_handler_answer_500(environment):
    sub_id = paid_subscription(environment)
    event = invoice_event(sub_id, "in_sandboxtest0002")
    invoice = event["data"]["object"]
    invoice["parent"] = {
        "subscription_details": {"subscription": invoice.pop("subscription")}
    }

    answer = post(environment, event)

    assert answer.status_code == 500
    assert "D1_TYPE_ERROR" in answer.json()["error"]
    assert query(environment, SQL_PAYMENTS, ["in_sandboxtest0002"])[0]["n"] == 0


def test_endpoint_list_hides_the_secret_and_points_at_the_platform(environment):
    reader = StripeReader(environment)
    try:
        endpoints = reader.webhook_endpoints()
    finally:
        reader.close()
    assert len(endpoints) == 1
    assert "secret" not in endpoints[0]
    assert endpoints[0]["url"] == environment.platform_url + "/webhooks/stripe"
    assert endpoints[0]["status"] == "enabled"


def test_healthy_reset_delivers_every_seeded_event(environment):
    reader = StripeReader(environment)
    try:
        pending = reader.undelivered_events(int(time.time()) - 86_400)
    finally:
        reader.close()
    assert pending == []
    recorded = query(
        environment,
        "SELECT COUNT(*) AS n FROM payment_history WHERE stripe_invoice_id LIKE 'in_%'",
        [],
    )
    assert recorded[0]["n"] >= 2


# The SDK's form posts pass bytes as data=, which httpx deprecates.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_retry_delivers_again_once_the_endpoint_works(sandbox):
    sandbox.reset("endpoint-disabled")
    environment = load_environment("sandbox")
    reader = StripeReader(environment)
    try:
        pending = reader.undelivered_events(int(time.time()) - 86_400)
        endpoint = reader.webhook_endpoints()[0]["id"]
        with pytest.raises(APIError, match="is disabled"):
            reader.retry_event(pending[0]["id"], endpoint)
        reader.enable_endpoint(endpoint)
        answer = reader.retry_event(pending[0]["id"], endpoint)
        again = reader.event(pending[0]["id"])
    finally:
        reader.close()
    assert len(pending) == 5
    assert answer["pending_webhooks"] == 0
    assert again["pending_webhooks"] == 0


def test_webhook_lines_reach_workers_logs(environment):
    post(environment, {"id": "evt_logged", "type": "customer.created", "data": {}})
    client = CloudflareClient(environment)
    try:
        now = int(time.time() * 1000)
        events = client.telemetry_events(now - 60_000, now + 1000)
    finally:
        client.close()
    lines = [e["$metadata"]["message"] for e in events]
    assert "[Webhook] Processing event: customer.created evt_logged" in lines
    assert "[Webhook] Unhandled event type: customer.created" in lines
