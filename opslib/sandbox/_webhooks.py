"""The platform stand-in's Stripe webhook handler (PLATFORM.md sections 3 and 5).

``POST /webhooks/stripe`` (not rate-limited) and its legacy alias ``POST
/payments/webhook`` (behind the rate limiter) share one handler: the raw body
and the ``stripe-signature`` header are required (400 "No signature provided"),
the signature is checked against the Worker secret ``STRIPE_WEBHOOK_SECRET``
(400 "Invalid signature" on any verification exception), a ``[Webhook]`` line
is logged per event, and the six handled event types write D1 for real; any
exception inside the handler answers 500 ``{error}``; other types are logged as
unhandled and answered 200 ``{received: true}``. Every line the handler logs
goes to Workers Logs with the request.

The Worker's secret. The sandbox's versions carry placeholder secret values;
for ``STRIPE_WEBHOOK_SECRET`` a placeholder stands for the value set at setup,
which is the endpoint's signing secret (``World.webhook_secret``). A version
whose value is a real ``whsec_`` text (a scenario's, or one put through the
Cloudflare secrets API) is checked against that text instead.

Platform switches (behaviour, not state):

- ``webhook_sync_verify``: the synchronous ``constructEvent`` of the Workers build
  of stripe-node throws for every delivery before any HMAC is computed;
- ``webhook_handler_seconds``: the handler takes that much longer to answer (it
  still finishes its work), slower than Stripe's delivery timeout.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import stripe

from opslib._webhooks import HANDLED_EVENTS

from . import _timing
from ._call import Call, WorkerError, json_response
from ._http import Response
from ._state import World

logger = logging.getLogger(__name__)

PATHS = ("/webhooks/stripe", "/payments/webhook")
SECRET_NAME = "STRIPE_WEBHOOK_SECRET"
SYNC_VERIFY_SWITCH = "webhook_sync_verify"
SLOW_SWITCH = "webhook_handler_seconds"
SYNC_VERIFY_MESSAGE = "SubtleCryptoProvider cannot be used in a synchronous context."
UNDEFINED_BIND = "D1_TYPE_ERROR: Type 'undefined' not supported for value 'undefined'"
HANDLED = HANDLED_EVENTS
_UNDEFINED = object()


def is_webhook(method: str, path: str) -> bool:
    """True for a request the webhook handler serves."""
    return method == "POST" and path in PATHS


def worker_secret(world: World, call: Call) -> str | None:
    """The webhook secret the serving version holds, or None when it is unset."""
    value = call.version.secrets.get(SECRET_NAME)
    if value is None:
        return None
    return value if value.startswith("whsec_") else world.webhook_secret


def handle(call: Call) -> Response:
    """Answer one webhook delivery as the platform's handler does."""
    # A slow handler: the wait is charged to the request and slept after the
    # world lock is released (``_timing``); the work itself is still done.
    _timing.charge_wait(
        float(call.world.scenario.switches.get(SLOW_SWITCH) or 0) * 1000
    )
    header = call.request.headers.get("stripe-signature")
    if not header:
        return json_response(400, {"error": "No signature provided"})
    payload = call.request.body.decode("utf-8", errors="replace")
    try:
        event = _construct_event(call, payload, header)
    except (ValueError, stripe.SignatureVerificationError) as error:
        call.logs.append(f"[Webhook] Signature verification failed: {error}")
        return json_response(400, {"error": "Invalid signature"})

    kind, event_id = str(event.get("type")), str(event.get("id"))
    call.logs.append(f"[Webhook] Processing event: {kind} {event_id}")
    try:
        _dispatch(call, kind, dict((event.get("data") or {}).get("object") or {}))
    except WorkerError as error:
        call.logs.append(f"[Webhook] Error processing webhook: {error}")
        return json_response(500, {"error": str(error)})
    return json_response(200, {"received": True})


def _construct_event(call: Call, payload: str, header: str) -> dict[str, Any]:
    if call.world.scenario.switches.get(SYNC_VERIFY_SWITCH):
        raise ValueError(SYNC_VERIFY_MESSAGE)
    secret = worker_secret(call.world, call)
    if not secret:
        raise ValueError("No webhook secret value was provided.")
    stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=300)
    event: dict[str, Any] = json.loads(payload)
    return event


def _dispatch(call: Call, kind: str, obj: dict[str, Any]) -> None:
    handlers = {
        "checkout.session.completed": _checkout_completed,
        "customer.subscription.created": _subscription_changed,
        "customer.subscription.updated": _subscription_changed,
        "customer.subscription.deleted": _subscription_deleted,
        "invoice.payment_succeeded": _invoice_succeeded,
        "invoice.payment_failed": _invoice_failed,
    }
    handler = handlers.get(kind)
    if handler is None:
        call.logs.append(f"[Webhook] Unhandled event type: {kind}")
        return
    handler(call, obj)


def _bind(*values: Any) -> list[Any]:
    """D1's bind: an undefined value (a field the payload lacks) is a type error."""
    if any(v is _UNDEFINED for v in values):
        raise WorkerError(UNDEFINED_BIND)
    return list(values)


def _field(obj: dict[str, Any], name: str) -> Any:
    return obj.get(name, _UNDEFINED)


def _execute(call: Call, sql: str, args: list[Any]) -> list[Any]:
    with call.d1() as db:
        return list(db.execute(sql, args).fetchall())


def _subscription_changed(call: Call, sub: dict[str, Any]) -> None:
    args = _bind(
        _field(sub, "status"),
        _field(sub, "current_period_start"),
        _field(sub, "current_period_end"),
        int(bool(sub.get("cancel_at_period_end"))),
        int(call.now),
        _field(sub, "id"),
    )
    _execute(
        call,
        "UPDATE subscriptions SET status = ?, current_period_start = ?, "
        "current_period_end = ?, cancel_at_period_end = ?, updated_at = ? "
        "WHERE stripe_subscription_id = ?",
        args,
    )


def _subscription_deleted(call: Call, sub: dict[str, Any]) -> None:
    rows = _execute(
        call,
        "SELECT user_id FROM subscriptions WHERE stripe_subscription_id = ?",
        _bind(_field(sub, "id")),
    )
    _execute(
        call,
        "UPDATE subscriptions SET status = 'canceled', updated_at = ? "
        "WHERE stripe_subscription_id = ?",
        [int(call.now), sub["id"]],
    )
    for row in rows:
        _execute(
            call,
            "UPDATE users SET subscription_tier = 'free' WHERE id = ?",
            [row["user_id"]],
        )


def _checkout_completed(call: Call, session: dict[str, Any]) -> None:
    """Checkout: a one-time payment row, or the subscription row and the tier.

    The platform retrieves the subscription from Stripe for its status and
    periods; the sandbox takes them from the session's ``subscription_details``
    when present, else active for one month from the session's creation.
    """
    metadata = dict(session.get("metadata") or {})
    user_id = metadata.get("userId")
    if not user_id:
        raise WorkerError("Cannot read properties of undefined (reading 'userId')")
    if session.get("mode") == "payment":
        _insert_payment(
            call,
            user_id,
            None,
            {"pi": session.get("payment_intent"), "invoice": None},
            int(session.get("amount_total") or 0),
            ("one_time", "succeeded", "One-time analysis payment"),
        )
        return
    plan = str(metadata.get("planType") or "pro")
    details = dict(session.get("subscription_details") or {})
    start = int(details.get("current_period_start") or session.get("created") or 0)
    end = int(details.get("current_period_end") or start + 30 * 86_400)
    _execute(
        call,
        "INSERT INTO subscriptions (id, user_id, stripe_subscription_id, "
        "stripe_customer_id, plan_type, status, current_period_start, "
        "current_period_end, cancel_at_period_end, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) "
        "ON CONFLICT(stripe_subscription_id) DO UPDATE SET status = excluded.status, "
        "current_period_start = excluded.current_period_start, "
        "current_period_end = excluded.current_period_end",
        _bind(
            str(uuid.uuid4()),
            user_id,
            _field(session, "subscription"),
            _field(session, "customer"),
            plan,
            str(details.get("status") or "active"),
            start,
            end,
            int(call.now),
            int(call.now),
        ),
    )
    _execute(
        call,
        "UPDATE users SET subscription_tier = ? WHERE id = ?",
        [plan, user_id],
    )


def _invoice_subscription(call: Call, invoice: dict[str, Any]) -> Any:
    rows = _execute(
        call,
        "SELECT id, user_id FROM subscriptions WHERE stripe_subscription_id = ?",
        _bind(_field(invoice, "subscription")),
    )
    return rows[0] if rows else None


def _invoice_succeeded(call: Call, invoice: dict[str, Any]) -> None:
    sub = _invoice_subscription(call, invoice)
    if sub is None:
        return
    day = datetime.fromtimestamp(call.now, tz=UTC).date().isoformat()
    _insert_payment(
        call,
        sub["user_id"],
        sub["id"],
        {"pi": None, "invoice": invoice.get("id")},
        int(invoice.get("amount_paid") or 0),
        ("subscription", "succeeded", f"Subscription payment - {day}"),
    )


def _invoice_failed(call: Call, invoice: dict[str, Any]) -> None:
    sub = _invoice_subscription(call, invoice)
    if sub is None:
        return
    _insert_payment(
        call,
        sub["user_id"],
        sub["id"],
        {"pi": None, "invoice": invoice.get("id")},
        int(invoice.get("amount_due") or 0),
        ("subscription", "failed", "Payment failed"),
    )
    _execute(
        call,
        "UPDATE subscriptions SET status = 'past_due', updated_at = ? WHERE id = ?",
        [int(call.now), sub["id"]],
    )


def _insert_payment(
    call: Call,
    user_id: str,
    subscription_id: str | None,
    stripe_ids: dict[str, Any],
    amount: int,
    kind: tuple[str, str, str],
) -> None:
    payment_type, status, description = kind
    _execute(
        call,
        "INSERT INTO payment_history (id, user_id, subscription_id, "
        "stripe_payment_intent_id, stripe_invoice_id, amount, currency, "
        "payment_type, status, description, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'usd', ?, ?, ?, ?)",
        [
            str(uuid.uuid4()),
            user_id,
            subscription_id,
            stripe_ids["pi"],
            stripe_ids["invoice"],
            amount,
            payment_type,
            status,
            description,
            int(call.now),
        ],
    )
