"""Invoices of the sandbox's Stripe, served inside the localstripe child.

localstripe makes invoices only for subscriptions it bills itself, so the
subscriptions the sandbox seeds with a past start have none, and its invoice
list breaks on a ``status`` filter. The platform's ``payment_history`` rows name
invoices, though; this module serves them in Stripe's shape (STRIPE-AND-FRIENDS.md
1.10), ahead of localstripe's routes:

- ``GET /v1/invoices`` (filters ``customer``, ``subscription``, ``status``;
  newest first; ``limit``) and ``GET /v1/invoices/{id}``;
- ``POST /v1/refunds`` is checked first as Stripe checks it: an ``amount``
  above what is left unrefunded on the charge is refused with 400, before
  localstripe (which would accept it) sees it; and, as Stripe does, a request
  with an ``Idempotency-Key`` already seen gets the first answer again (same
  parameters) or a 400 ``idempotency_error`` (other parameters), where
  localstripe would ignore the header and refund twice.

A paid invoice is paid by a real localstripe PaymentIntent of the customer, so
its ``charge`` can be refunded, fully or in part, through localstripe's own
refunds. An unpaid one is ``open``, with the attempts made so far and the time
of Stripe's next retry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from localstripe import resources  # type: ignore[import-untyped]
from localstripe.errors import UserError  # type: ignore[import-untyped]
from localstripe.server import get_post_data  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 3 * 86_400
_INVOICES: dict[str, dict[str, Any]] = {}
_REFUND_KEYS: dict[str, tuple[dict[str, Any], int, bytes]] = {}
"""Idempotency-Key -> (the request's parameters, status, body) of refunds."""
Handler = Callable[..., Awaitable[web.StreamResponse]]


def seed_invoices(invoices: list[dict[str, Any]], pay: Callable[..., Any]) -> None:
    """Replace the invoices; ``pay(data)`` makes the PaymentIntent of a paid one."""
    _INVOICES.clear()
    _REFUND_KEYS.clear()
    for data in invoices:
        invoice = _invoice(data)
        if data["paid"]:
            intent = pay(
                {
                    "id": "pi_" + data["id"][3:],
                    "amount": data["amount"],
                    "customer": data["customer"],
                    "created": data["created"],
                    "metadata": {"invoice": data["id"]},
                }
            )
            invoice.update(payment_intent=intent.id, charge=intent.latest_charge.id)
        _INVOICES[invoice["id"]] = invoice


def _invoice(data: dict[str, Any]) -> dict[str, Any]:
    paid = bool(data["paid"])
    created = int(data["created"])
    return {
        "id": data["id"],
        "object": "invoice",
        "customer": data["customer"],
        "subscription": data["subscription"],
        "status": "paid" if paid else "open",
        "paid": paid,
        "amount_due": int(data["amount"]),
        "amount_paid": int(data["amount"]) if paid else 0,
        "amount_remaining": 0 if paid else int(data["amount"]),
        "currency": "usd",
        "attempt_count": int(data.get("attempts") or 1),
        "attempted": True,
        "next_payment_attempt": None if paid else created + RETRY_AFTER_S,
        "billing_reason": "subscription_cycle",
        "charge": None,
        "payment_intent": None,
        "created": created,
        "livemode": False,
    }


async def list_invoices(request: web.Request) -> web.Response:
    """``GET /v1/invoices``, newest first, filtered like Stripe's."""
    wanted = {
        k: request.query[k]
        for k in ("customer", "subscription", "status")
        if k in request.query
    }
    limit = int(request.query.get("limit", "10"))
    rows = [
        i
        for i in sorted(_INVOICES.values(), key=lambda i: -int(i["created"]))
        if all(i.get(k) == v for k, v in wanted.items())
    ]
    body = {
        "object": "list",
        "data": rows[:limit],
        "has_more": len(rows) > limit,
        "url": "/v1/invoices",
    }
    return web.json_response(body)


async def get_invoice(request: web.Request, id: str) -> web.Response:
    """``GET /v1/invoices/{id}``."""
    if id not in _INVOICES:
        raise UserError(404, "No such invoice: " + id)
    return web.json_response(_INVOICES[id])


async def check_refund(request: web.Request) -> None:
    """Refuse a refund above what is left on the charge, as Stripe does."""
    data = await get_post_data(request, remove_auth=False) or {}
    amount = data.get("amount")
    charge_id = data.get("charge")
    if data.get("payment_intent") and not charge_id:
        intent = resources.PaymentIntent._api_retrieve(data["payment_intent"])
        charge_id = intent.latest_charge.id if intent.latest_charge else None
    if amount is None or not charge_id:
        return
    charge = resources.Charge._api_retrieve(charge_id)
    left = int(charge.amount) - int(charge.amount_refunded)
    if int(amount) > left:
        raise UserError(
            400,
            f"Refund amount ({int(amount)}) is greater than unrefunded amount "
            f"on charge ({left})",
        )


_ROUTES: tuple[tuple[str, re.Pattern[str], Handler], ...] = (
    ("GET", re.compile(r"^/v1/invoices/?$"), list_invoices),
    ("GET", re.compile(r"^/v1/invoices/(?P<id>in_\w+)$"), get_invoice),
)


@web.middleware
async def routes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve the invoices and check refunds ahead of localstripe's routes."""
    for method, pattern, route in _ROUTES:
        found = pattern.match(request.path)
        if request.method == method and found:
            return await route(request, **found.groupdict())
    if request.method == "POST" and request.path.rstrip("/") == "/v1/refunds":
        return await _idempotent_refund(request, handler)
    return await handler(request)


async def _idempotent_refund(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Create a refund once per ``Idempotency-Key``, as Stripe does."""
    key = request.headers.get("Idempotency-Key", "")
    params = await get_post_data(request) or {}
    if key in _REFUND_KEYS:
        seen, status, body = _REFUND_KEYS[key]
        if seen != params:
            raise UserError(
                400,
                f"Keys for idempotent requests can only be used with the same "
                f"parameters they were first used with ({key})",
            )
        return web.Response(status=status, body=body, content_type="application/json")
    await check_refund(request)
    response = await handler(request)
    if key and isinstance(response, web.Response) and isinstance(response.body, bytes):
        _REFUND_KEYS[key] = (params, response.status, response.body)
    return response
