"""Stripe's webhook endpoints and events, served inside the localstripe child.

localstripe has no ``/v1/webhook_endpoints``, and its events carry neither
``pending_webhooks`` nor the endpoint's API version. This module serves them in
Stripe's shapes (STRIPE-AND-FRIENDS.md 1.5 and 1.6), ahead of localstripe's own
event routes:

- ``GET|POST /v1/webhook_endpoints`` and ``GET|POST /v1/webhook_endpoints/{id}``
  (create: ``url`` and ``enabled_events`` required, ``api_version``,
  ``description``, ``metadata``, ``connect``; update: ``url``,
  ``enabled_events``, ``disabled``, ``description``, ``metadata``); the
  ``secret`` is in the create answer only, as Stripe shows it;
- ``GET /v1/events`` (newest first; ``type`` with a ``.*`` wildcard, ``types``,
  ``created``, ``delivery_success``, ``limit``, ``starting_after``,
  ``ending_before``) and ``GET /v1/events/{id}``, with ``pending_webhooks``;
- ``POST /v1/events/{id}/retry`` with ``webhook_endpoint``: delivers the event
  now, signed with the endpoint's secret, and acknowledges it when the endpoint
  answers 2xx. Events older than 30 days and disabled endpoints are refused
  with 400 (how Stripe answers a retry to a disabled endpoint is not
  documented; the sandbox assumes a refusal). A retry to an endpoint on
  another API version than the event's is rendered in that endpoint's version
  (an assumption: the sandbox renders each endpoint's payloads in its version).

At each seed the sandbox sends the endpoint and a few recent events (type,
subscription, time); each event is rendered from the store's subscription in
the endpoint's API version (from ``2025-03-31.basil``: periods on the items,
the invoice's subscription under ``parent``) and delivered at once, so a
platform fault leaves it pending. Deliveries time out after
``DELIVERY_TIMEOUT_S``, scaled down from Stripe's so that drills stay fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import stripe
from aiohttp import web
from localstripe import resources  # type: ignore[import-untyped]
from localstripe.errors import UserError  # type: ignore[import-untyped]
from localstripe.server import get_post_data, unflatten_data  # type: ignore[import-untyped]

from ._webhookseed import BASIL, DELIVERY_TIMEOUT_S

logger = logging.getLogger(__name__)

RETENTION_S = 30 * 86_400
_ENDPOINTS: dict[str, dict[str, Any]] = {}
_SECRETS: dict[str, str] = {}
_EVENTS: dict[str, dict[str, Any]] = {}
_ITEMS: dict[str, dict[str, Any]] = {}
MAX_ENDPOINTS = 16
_CREATE_KEYS = frozenset(
    {"url", "enabled_events", "api_version", "description", "metadata", "connect"}
)
Handler = Callable[..., Awaitable[web.Response]]


async def seed_webhooks(spec: dict[str, Any]) -> None:
    """Replace endpoints and events with the seed's, then deliver the events."""
    _ENDPOINTS.clear()
    _SECRETS.clear()
    _EVENTS.clear()
    _ITEMS.clear()
    endpoint = dict(spec["endpoint"])
    _SECRETS[endpoint["id"]] = str(endpoint.pop("secret", ""))
    _ENDPOINTS[endpoint["id"]] = {
        "object": "webhook_endpoint",
        "livemode": False,
        "application": None,
        "metadata": {},
        **endpoint,
    }
    for item in spec.get("events", []):
        event = _render(item, endpoint)
        if event is not None:
            _EVENTS[event["id"]] = event
            _ITEMS[event["id"]] = dict(item)
    if endpoint.get("status") == "enabled":
        await asyncio.gather(
            *(_deliver_and_ack(e, _ENDPOINTS[endpoint["id"]]) for e in _due(endpoint))
        )


def _due(endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in _EVENTS.values() if _subscribed(endpoint, e["type"])]


def _subscribed(endpoint: dict[str, Any], kind: str) -> bool:
    enabled = endpoint.get("enabled_events") or []
    return "*" in enabled or kind in enabled


def _render(item: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any] | None:
    sub = resources.store.get(f"subscription:{item['subscription']}")
    if sub is None:
        return None
    version = str(endpoint.get("api_version") or "")
    kind = str(item["type"])
    obj = (
        _invoice(sub, item, version)
        if kind.startswith("invoice.")
        else _sub(sub, version)
    )
    digest = hashlib.sha256(f"{kind}:{sub.id}:{item['created']}".encode()).hexdigest()
    return {
        "id": "evt_" + digest[:24],
        "object": "event",
        "api_version": version,
        "created": int(item["created"]),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1 if _subscribed(endpoint, kind) else 0,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def _sub(sub: Any, version: str) -> dict[str, Any]:
    plan = sub.items._list[0].plan
    item = {"id": sub.items._list[0].id, "object": "subscription_item"}
    item["price"] = {"id": plan.id, "unit_amount": plan.amount}
    periods = {
        "current_period_start": sub.current_period_start,
        "current_period_end": sub.current_period_end,
    }
    body: dict[str, Any] = {
        "id": sub.id,
        "object": "subscription",
        "customer": sub.customer,
        "status": sub.status,
        "cancel_at_period_end": bool(sub.cancel_at_period_end),
        "metadata": dict(sub.metadata or {}),
        "created": sub.created,
    }
    if version >= BASIL:
        item.update(periods)
    else:
        body.update(periods)
    body["items"] = {"object": "list", "data": [item]}
    return body


def _invoice(sub: Any, item: dict[str, Any], version: str) -> dict[str, Any]:
    amount = int(sub.items._list[0].plan.amount)
    digest = hashlib.sha256(f"{sub.id}:{item['created']}".encode()).hexdigest()
    paid = item["type"] == "invoice.payment_succeeded"
    body: dict[str, Any] = {
        "id": "in_" + digest[:24],
        "object": "invoice",
        "customer": sub.customer,
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "currency": "usd",
        "status": "paid" if paid else "open",
        "created": int(item["created"]),
    }
    if version >= BASIL:
        details = {"subscription": sub.id, "metadata": dict(sub.metadata or {})}
        body["parent"] = {
            "type": "subscription_details",
            "subscription_details": details,
        }
    else:
        body["subscription"] = sub.id
    return body


async def _deliver(event: dict[str, Any], endpoint: dict[str, Any]) -> int | None:
    """POST the event to the endpoint; its status, or None on timeout or error."""
    payload = json.dumps(event, indent=2, sort_keys=True)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, _SECRETS.get(endpoint["id"], "")
    )
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": header,
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                endpoint["url"], data=payload.encode(), headers=headers
            ) as answer,
        ):
            return answer.status
    except (TimeoutError, aiohttp.ClientError) as error:
        logger.info("delivery failed event=%s error=%r", event["id"], error)
        return None


async def _deliver_and_ack(
    event: dict[str, Any], endpoint: dict[str, Any]
) -> int | None:
    status = await _deliver(_in_version(event, endpoint), endpoint)
    if status is not None and 200 <= status < 300:
        event["pending_webhooks"] = max(0, int(event["pending_webhooks"]) - 1)
    return status


def _page(items: list[dict[str, Any]], query: dict[str, Any], url: str) -> web.Response:
    limit = max(1, min(100, int(query.get("limit") or 10)))
    ids = [i["id"] for i in items]
    after, before = query.get("starting_after"), query.get("ending_before")
    if after in ids:
        items = items[ids.index(after) + 1 :]
    elif before in ids:
        items = items[: ids.index(before)][-limit:]
    body = {"object": "list", "data": items[:limit], "has_more": len(items) > limit}
    return web.json_response({**body, "url": url})


async def list_endpoints(request: web.Request) -> web.Response:
    """``GET /v1/webhook_endpoints``."""
    query = unflatten_data(request.query)
    rows = sorted(_ENDPOINTS.values(), key=lambda e: -int(e.get("created") or 0))
    return _page(rows, query, "/v1/webhook_endpoints")


def _in_version(event: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any]:
    """The event as ``endpoint`` receives it: rendered in its API version."""
    version = str(endpoint.get("api_version") or "")
    item = _ITEMS.get(event["id"])
    if item is None or version == event["api_version"]:
        return event
    rendered = _render(item, endpoint)
    if rendered is None:
        return event
    return {**rendered, "pending_webhooks": event["pending_webhooks"]}


async def create_endpoint(request: web.Request) -> web.Response:
    """``POST /v1/webhook_endpoints``: the answer alone carries the ``secret``."""
    data = await get_post_data(request) or {}
    unknown = set(data) - _CREATE_KEYS
    if unknown:
        raise UserError(400, "Received unknown parameter: " + min(unknown))
    for required in ("url", "enabled_events"):
        if not data.get(required):
            raise UserError(400, f"Missing required param: {required}.")
    if len(_ENDPOINTS) >= MAX_ENDPOINTS:
        raise UserError(
            400,
            f"You have reached the maximum of {MAX_ENDPOINTS} test webhook endpoints.",
        )
    endpoint_id = "we_" + secrets.token_hex(12)
    endpoint = {
        "id": endpoint_id,
        "object": "webhook_endpoint",
        "api_version": data.get("api_version") or None,
        "application": None,
        "created": int(time.time()),
        "description": data.get("description"),
        "enabled_events": _as_list(data["enabled_events"]),
        "livemode": False,
        "metadata": dict(data.get("metadata") or {}),
        "status": "enabled",
        "url": str(data["url"]),
    }
    _ENDPOINTS[endpoint_id] = endpoint
    _SECRETS[endpoint_id] = "whsec_" + secrets.token_hex(16)
    logger.info("webhook endpoint created id=%s", endpoint_id)
    return web.json_response({**endpoint, "secret": _SECRETS[endpoint_id]})


async def get_endpoint(request: web.Request, id: str) -> web.Response:
    """``GET /v1/webhook_endpoints/{id}``."""
    return web.json_response(_endpoint(id))


async def update_endpoint(request: web.Request, id: str) -> web.Response:
    """``POST /v1/webhook_endpoints/{id}``: url, enabled_events, disabled, ..."""
    endpoint = _endpoint(id)
    data = await get_post_data(request) or {}
    unknown = set(data) - {
        "url",
        "enabled_events",
        "disabled",
        "description",
        "metadata",
    }
    if unknown:
        raise UserError(400, "Received unknown parameter: " + min(unknown))
    if "disabled" in data:
        disabled = str(data.pop("disabled")).lower() == "true"
        endpoint["status"] = "disabled" if disabled else "enabled"
    if "enabled_events" in data:
        data["enabled_events"] = _as_list(data["enabled_events"])
    endpoint.update(data)
    logger.info("webhook endpoint updated id=%s status=%s", id, endpoint["status"])
    return web.json_response(endpoint)


def _endpoint(endpoint_id: str) -> dict[str, Any]:
    endpoint = _ENDPOINTS.get(endpoint_id)
    if endpoint is None:
        raise UserError(404, "No such webhook_endpoint: " + endpoint_id)
    return endpoint


async def list_events(request: web.Request) -> web.Response:
    """``GET /v1/events``: newest first, Stripe's filters."""
    query = unflatten_data(request.query)
    rows = sorted(_EVENTS.values(), key=lambda e: (-int(e["created"]), e["id"]))
    rows = [e for e in rows if _event_matches(e, query)]
    return _page(rows, query, "/v1/events")


def _event_matches(event: dict[str, Any], query: dict[str, Any]) -> bool:
    kind = str(query.get("type") or "")
    if kind.endswith(".*") and not event["type"].startswith(kind[:-1]):
        return False
    if kind and not kind.endswith(".*") and event["type"] != kind:
        return False
    types = _as_list(query.get("types") or [])
    if types and event["type"] not in types:
        return False
    success = str(query.get("delivery_success") or "")
    if success and (success == "true") != (event["pending_webhooks"] == 0):
        return False
    return _in_range(int(event["created"]), query.get("created"))


def _in_range(value: int, rule: Any) -> bool:
    if rule in (None, ""):
        return True
    if not isinstance(rule, dict):
        return value == int(rule)
    tests = {
        "gt": value.__gt__,
        "gte": value.__ge__,
        "lt": value.__lt__,
        "lte": value.__le__,
    }
    return all(tests[k](int(v)) for k, v in rule.items() if k in tests)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value, key=int)]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


async def get_event(request: web.Request, id: str) -> web.Response:
    """``GET /v1/events/{id}``."""
    return web.json_response(_event(id))


def _event(event_id: str) -> dict[str, Any]:
    event = _EVENTS.get(event_id)
    if event is None:
        raise UserError(404, "No such event: " + event_id)
    return event


async def retry_event(request: web.Request, id: str) -> web.Response:
    """``POST /v1/events/{id}/retry`` with ``webhook_endpoint``: deliver it now."""
    event = _event(id)
    data = await get_post_data(request) or {}
    endpoint = _endpoint(str(data.get("webhook_endpoint") or ""))
    if time.time() - int(event["created"]) > RETENTION_S:
        raise UserError(400, f"Event {id} is older than 30 days and cannot be resent")
    if endpoint["status"] != "enabled":
        raise UserError(400, f"Webhook endpoint {endpoint['id']} is disabled")
    status = await _deliver_and_ack(event, endpoint)
    logger.info("event resent id=%s endpoint=%s status=%s", id, endpoint["id"], status)
    return web.json_response(event)


_ROUTES: tuple[tuple[str, re.Pattern[str], Handler], ...] = (
    ("GET", re.compile(r"^/v1/webhook_endpoints/?$"), list_endpoints),
    ("POST", re.compile(r"^/v1/webhook_endpoints/?$"), create_endpoint),
    ("GET", re.compile(r"^/v1/webhook_endpoints/(?P<id>we_\w+)$"), get_endpoint),
    ("POST", re.compile(r"^/v1/webhook_endpoints/(?P<id>we_\w+)$"), update_endpoint),
    ("GET", re.compile(r"^/v1/events/?$"), list_events),
    ("GET", re.compile(r"^/v1/events/(?P<id>evt_\w+)$"), get_event),
    ("POST", re.compile(r"^/v1/events/(?P<id>evt_\w+)/retry$"), retry_event),
)


@web.middleware
async def routes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve the routes above ahead of localstripe's (after its key check)."""
    for method, pattern, route in _ROUTES:
        found = pattern.match(request.path)
        if request.method == method and found:
            return await route(request, **found.groupdict())
    return await handler(request)
