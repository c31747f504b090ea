"""The sandbox's Stripe: localstripe, run in a child process on loopback.

``python -m opslib.sandbox._localstripe --fd N --state-file PATH --parent PID``
serves localstripe's own aiohttp app on a listening socket the sandbox bound to
127.0.0.1 and handed over (localstripe alone binds every interface). Its state
goes to the sandbox's own pickle instead of the fixed ``/tmp/localstripe.pickle``
every localstripe on the host would share, and the process exits when the
sandbox that started it is gone.

Webhook endpoints and events with ``pending_webhooks`` come from
``_stripeevents``. Added beside localstripe's routes, in Stripe's shapes, only
what the payment-without-subscription runbook reads and localstripe lacks: ``GET
/v1/checkout/sessions`` (filters ``customer``, ``subscription``) and ``GET
/v1/checkout/sessions/{id}``. ``POST /_config/opslib/seed`` (no key, like
localstripe's own ``/_config`` routes) replaces the whole store with the
customers, subscriptions, checkout sessions and one-time payments the sandbox's
D1 implies; its invoices (``_stripebilling``) come from ``payment_history``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pickle
import socket
from pathlib import Path
from typing import Any

from aiohttp import web
from localstripe import resources  # type: ignore[import-untyped]
from localstripe.errors import UserError  # type: ignore[import-untyped]
from localstripe.server import app  # type: ignore[import-untyped]

from ._stripebilling import routes as billing_routes
from ._stripebilling import seed_invoices
from ._stripeevents import routes as webhook_routes
from ._stripeevents import seed_webhooks

logger = logging.getLogger(__name__)

STATE_FILE_DEFAULT = "localstripe.pickle"
PLANS = {
    "pro": ("price_pro_monthly", 2900),
    "enterprise": ("price_enterprise_monthly", 9900),
}
_SESSIONS: dict[str, dict[str, Any]] = {}


class _State:
    """Where the store is pickled, and whether dumping waits (during a seed)."""

    file = Path(STATE_FILE_DEFAULT)
    paused = False


def _load(store: Any) -> None:
    try:
        with open(_State.file, "rb") as handle:
            old = pickle.load(handle)
    except (FileNotFoundError, EOFError):
        return
    store.clear()
    store.update(old)


def _dump(store: Any) -> None:
    if _State.paused:
        return
    with open(_State.file, "wb") as handle:
        pickle.dump(dict(store), handle, protocol=pickle.HIGHEST_PROTOCOL)


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/checkout/sessions``: newest first, filtered like Stripe's."""
    wanted = {
        k: request.query[k] for k in ("customer", "subscription") if k in request.query
    }
    limit = int(request.query.get("limit", "10"))
    rows = [
        s
        for s in sorted(_SESSIONS.values(), key=lambda s: -int(s["created"]))
        if all(s.get(k) == v for k, v in wanted.items())
    ]
    body = {
        "object": "list",
        "data": rows[:limit],
        "has_more": len(rows) > limit,
        "url": "/v1/checkout/sessions",
    }
    return web.json_response(body)


async def get_session(request: web.Request) -> web.Response:
    """``GET /v1/checkout/sessions/{id}``."""
    session = _SESSIONS.get(request.match_info["id"])
    if session is None:
        raise UserError(404, "No such checkout.session: " + request.match_info["id"])
    return web.json_response(session)


async def seed(request: web.Request) -> web.Response:
    """Replace the store with the objects in the JSON body; return the periods."""
    data = await request.json()
    _State.paused = True
    try:
        resources.store.clear()
        _SESSIONS.clear()
        for plan, (plan_id, amount) in PLANS.items():
            resources.Plan(
                id=plan_id,
                amount=amount,
                currency="usd",
                interval="month",
                product={"name": f"Manuscript platform {plan}"},
            )
        for customer in data.get("customers", []):
            _add_customer(customer)
        periods = {s["id"]: _add_subscription(s) for s in data.get("subscriptions", [])}
        for intent in data.get("payment_intents", []):
            _add_payment_intent(intent)
        for session in data.get("sessions", []):
            _SESSIONS[session["id"]] = _session(session)
        seed_invoices(data.get("invoices", []), _add_payment_intent)
    finally:
        _State.paused = False
    _dump(resources.store)
    if data.get("webhooks"):
        await seed_webhooks(data["webhooks"])
    return web.json_response({"periods": periods})


def _rekey(obj: Any, new_id: str) -> None:
    del resources.store[f"{obj.object}:{obj.id}"]
    obj.id = new_id
    resources.store[f"{obj.object}:{new_id}"] = obj


def _add_customer(data: dict[str, Any]) -> None:
    customer = resources.Customer(
        email=data.get("email"), metadata=data.get("metadata")
    )
    _rekey(customer, data["id"])
    if data.get("created"):
        customer.created = int(data["created"])


def _add_subscription(data: dict[str, Any]) -> list[int]:
    """Create a subscription with the given id, status and period start."""
    sub = resources.Subscription(
        customer=data["customer"],
        items=[{"plan": PLANS[data["plan"]][0]}],
        metadata=data.get("metadata") or {},
        trial_period_days=0,
        backdate_start_date=int(data["start"]),
    )
    _rekey(sub, data["id"])
    sub.items._list[0]._subscription = sub.id
    sub.items.url = "/v1/subscription_items?subscription=" + sub.id
    sub.trial_period_days = None
    sub.status = data.get("status", "active")
    sub.cancel_at_period_end = bool(data.get("cancel_at_period_end"))
    sub.created = int(data.get("created") or data["start"])
    if sub.status == "canceled":
        sub.canceled_at = sub.ended_at = int(data["start"])
    return [sub.current_period_start, sub.current_period_end]


def _add_payment_intent(data: dict[str, Any]) -> Any:
    """A card payment that succeeded, with the given id (returned)."""
    card = {"number": "4242424242424242", "exp_month": "12", "exp_year": "2030"}
    method = resources.PaymentMethod(type="card", card={**card, "cvc": "123"})
    intent = resources.PaymentIntent(
        amount=int(data["amount"]),
        currency="usd",
        customer=data.get("customer"),
        payment_method=method.id,
        metadata=data.get("metadata") or {},
    )
    _rekey(intent, data["id"])
    intent._confirm(on_failure_now=intent._report_failure)
    intent.created = int(data["created"])
    return intent


def _session(data: dict[str, Any]) -> dict[str, Any]:
    plan = PLANS.get(str(data.get("plan")), ("", 0))
    return {
        "id": data["id"],
        "object": "checkout.session",
        "created": int(data["created"]),
        "customer": data.get("customer"),
        "subscription": data.get("subscription"),
        "payment_intent": data.get("payment_intent"),
        "mode": data.get("mode", "subscription"),
        "status": "complete",
        "payment_status": "paid",
        "amount_total": data.get("amount_total", plan[1]),
        "currency": "usd",
        "metadata": data.get("metadata") or {},
        "client_reference_id": None,
        "livemode": False,
    }


async def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    logger.info("sandbox gone, localstripe exits parent=%s", parent)
    os._exit(0)


def main() -> None:
    """Serve localstripe on the inherited loopback socket until the parent exits."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--state-file", required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args()

    _State.file = Path(args.state_file)
    resources.Store.try_load_from_disk = _load
    resources.Store.dump_to_disk = _dump
    resources.store.clear()
    app.router.add_get("/v1/checkout/sessions", list_sessions)
    app.router.add_get("/v1/checkout/sessions/{id}", get_session)
    app.router.add_post("/_config/opslib/seed", seed)
    app.middlewares.append(webhook_routes)
    app.middlewares.append(billing_routes)

    async def start_watch(_: web.Application) -> None:
        asyncio.get_running_loop().create_task(_watch_parent(args.parent))

    app.on_startup.append(start_watch)
    sock = socket.socket(fileno=args.fd)
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
