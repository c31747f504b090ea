"""Queues endpoints of the Cloudflare stand-in (CLOUDFLARE.md sections 5 and 7).

Paths take the queue's id, found by listing with ``?name=``. Pull leases messages
for ``visibility_timeout_ms`` (30 s by default) and ack deletes them; peek reads
without a lease. JSON bodies travel base64-encoded, as the real API sends them.
The backlog history answers GraphQL queries on the ``queueBacklogAdaptiveGroups``
dataset; the query is not parsed as full GraphQL: the stand-in reads the
``accountTag``, ``queueId``, ``datetime_geq`` and ``datetime_leq`` filter arguments
(string literals or ``$variables``) and always answers ``avg{messages bytes}`` with
``dimensions{datetimeMinute}``, oldest first. A query on any other dataset goes to
the next ``/graphql`` route another stand-in module adds, or gets a GraphQL error.

Codes the reference does not give are the stand-in's own: 11000 for an unknown
queue and 11001 for a malformed message request.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from datetime import datetime
from typing import Any

from ._envelope import ApiError, body_json, iso, ok, paginate
from ._http import Request, Response
from ._queuestate import RETENTION_S, Message, Queue, board
from ._state import World

MAX_BATCH = 100
DEFAULT_BATCH = 5
DEFAULT_VISIBILITY_MS = 30_000
_Q = r"/accounts/(?P<account>[^/]+)/queues"


def list_queues(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET /accounts/{a}/queues (?name= repeatable, page-style)."""
    names = request.query.get("name") or []
    items = [
        _render_queue(q)
        for q in board(world).queues.values()
        if not names or q.name in names
    ]
    chunk, info = paginate(items, request, default=100, maximum=1000)
    return ok(chunk, result_info=info)


def get_queue(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET /accounts/{a}/queues/{q}."""
    return ok(_render_queue(_queue(world, params)))


def list_consumers(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET /accounts/{a}/queues/{q}/consumers."""
    queue = _queue(world, params)
    return ok([_render_consumer(c) for c in queue.consumers])


def get_metrics(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET /accounts/{a}/queues/{q}/metrics: the backlog now."""
    return ok(_metrics(_queue(world, params)))


def peek_messages(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST .../messages/peek ``{batch_size}``: read without leasing."""
    queue = _queue(world, params)
    size = _batch_size(body_json(request))
    shown = [_render_message(m, lease=False) for m in queue.messages[:size]]
    return ok({"messages": shown})


def pull_messages(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST .../messages/pull: lease up to ``batch_size`` free messages."""
    queue = _queue(world, params)
    body = body_json(request) or {}
    size = _batch_size(body)
    visibility = body.get("visibility_timeout_ms", body.get("visibility_timeout"))
    seconds = int(visibility or DEFAULT_VISIBILITY_MS) / 1000
    now = time.time()
    free = [m for m in queue.messages if m.lease_until <= now][:size]
    for message in free:
        message.lease_id = secrets.token_urlsafe(24)
        message.lease_until = now + seconds
        message.attempts += 1
    return ok(
        {
            "messages": [_render_message(m, lease=True) for m in free],
            "message_backlog_count": len(queue.messages),
            "metadata": {"metrics": _metrics(queue)},
        }
    )


def ack_messages(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST .../messages/ack ``{acks:[{lease_id}], retries:[{lease_id}]}``."""
    queue = _queue(world, params)
    body = body_json(request) or {}
    leases = {m.lease_id: m for m in queue.messages if m.lease_id}
    warnings: dict[str, str] = {}
    acked = retried = 0
    for item in body.get("acks") or []:
        found = leases.pop(str(item.get("lease_id", "")), None)
        if found is None:
            warnings[str(item.get("lease_id", ""))] = "lease not found"
            continue
        queue.messages.remove(found)
        acked += 1
    for item in body.get("retries") or []:
        found = leases.pop(str(item.get("lease_id", "")), None)
        if found is not None:
            found.lease_id, found.lease_until = "", 0.0
            retried += 1
    return ok({"ackCount": acked, "retryCount": retried, "warnings": warnings})


def send_message(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST .../messages ``{body, content_type}``: answers only success."""
    queue = _queue(world, params)
    _enqueue(queue, [body_json(request) or {}])
    return Response.json(200, {"success": True})


def send_batch(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST .../messages/batch ``{messages:[{body, content_type}]}`` (<= 100)."""
    queue = _queue(world, params)
    items = (body_json(request) or {}).get("messages")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise ApiError(400, 11001, f"messages: expected 1 to {MAX_BATCH} messages")
    _enqueue(queue, items)
    return Response.json(200, {"success": True})


def graphql(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST /graphql: the queue backlog history; answers ``{data, errors}``."""
    payload = body_json(request) or {}
    query = str(payload.get("query") or "")
    variables = payload.get("variables") or {}
    if "queueBacklogAdaptiveGroups" not in query:
        return _other_graphql(world, request, params)
    if _argument(query, variables, "accountTag") != world.environment.account_id:
        return _graphql_error("account not found or not authorised")
    queue = board(world).by_id(_argument(query, variables, "queueId"))
    try:
        start = _epoch(_argument(query, variables, "datetime_geq"))
        end = _epoch(_argument(query, variables, "datetime_leq"))
    except ValueError:
        return _graphql_error("datetime_geq and datetime_leq must be ISO 8601 times")
    # The live backlog counts as of the query's end when that is within a minute.
    now = time.time()
    live = [(min(now, end), len(queue.messages))] if queue and end >= now - 60 else []
    samples = (list(queue.samples) if queue else []) + live
    rows = [
        {
            "avg": {"messages": count, "bytes": count * 180},
            "dimensions": {"datetimeMinute": iso(moment // 60 * 60)[:19] + "Z"},
        }
        for moment, count in samples
        if start <= moment <= end
    ]
    data = {"viewer": {"accounts": [{"queueBacklogAdaptiveGroups": rows}]}}
    return Response.json(200, {"data": data, "errors": None})


def _other_graphql(world: World, request: Request, params: dict[str, str]) -> Response:
    """Hand a query on another dataset to the next ``/graphql`` route, if any."""
    from . import _cloudflare

    for method, pattern, handler in _cloudflare._ROUTES:
        if method == "POST" and pattern.match("/graphql") and handler is not graphql:
            return handler(world, request, params)
    return _graphql_error("unknown field: the stand-in serves queue backlog only")


def _enqueue(queue: Queue, items: list[Any]) -> None:
    now = time.time()
    for item in items:
        if not isinstance(item, dict) or "body" not in item:
            raise ApiError(400, 11001, "each message needs a body")
        content_type = str(item.get("content_type") or "json")
        queue.add(item["body"], now, content_type)


def _queue(world: World, params: dict[str, str]) -> Queue:
    found = board(world).by_id(params["queue"])
    if found is None:
        raise ApiError(404, 11000, "Queue not found")
    return found


def _batch_size(body: Any) -> int:
    size = (body or {}).get("batch_size", DEFAULT_BATCH)
    if not isinstance(size, int) or not 1 <= size <= MAX_BATCH:
        raise ApiError(400, 11001, f"batch_size: expected 1 to {MAX_BATCH}")
    return size


def _metrics(queue: Queue) -> dict[str, Any]:
    oldest = min((m.timestamp_ms for m in queue.messages), default=0)
    return {
        "backlog_count": len(queue.messages),
        "backlog_bytes": sum(m.size for m in queue.messages),
        "oldest_message_timestamp_ms": oldest,
    }


def _render_queue(queue: Queue) -> dict[str, Any]:
    return {
        "queue_id": queue.id,
        "queue_name": queue.name,
        "created_on": iso(queue.created_on),
        "modified_on": iso(queue.created_on),
        "producers": list(queue.producers),
        "producers_total_count": len(queue.producers),
        "consumers": [_render_consumer(c) for c in queue.consumers],
        "consumers_total_count": len(queue.consumers),
        "settings": {
            "delivery_delay": 0,
            "delivery_paused": False,
            "message_retention_period": RETENTION_S,
        },
    }


def _render_consumer(consumer: dict[str, Any]) -> dict[str, Any]:
    return {**consumer, "created_on": iso(float(consumer["created_on"]))}


def _render_message(message: Message, *, lease: bool) -> dict[str, Any]:
    text = json.dumps(message.body)
    body = (
        base64.b64encode(text.encode()).decode()
        if message.content_type in ("json", "bytes")
        else str(message.body)
    )
    rendered: dict[str, Any] = {
        "id": message.id,
        "body": body,
        "attempts": message.attempts,
        "timestamp_ms": message.timestamp_ms,
        "metadata": {
            "CF-sourceMessageSource": "worker",
            "CF-Content-Type": message.content_type,
        },
    }
    if lease:
        rendered["lease_id"] = message.lease_id
    else:
        rendered["ref"] = message.id
    return rendered


def _graphql_error(text: str) -> Response:
    stamp = iso(time.time())
    errors = [{"message": text, "path": None, "extensions": {"timestamp": stamp}}]
    return Response.json(200, {"data": None, "errors": errors})


def _argument(query: str, variables: dict[str, Any], name: str) -> str:
    """A filter argument's value: a string literal, or the ``$variable`` it names."""
    found = re.search(rf'\b{name}\s*:\s*(\$\w+|"[^"]*")', query)
    if found is None:
        return ""
    value = found.group(1)
    if value.startswith("$"):
        return str(variables.get(value[1:], ""))
    return value.strip('"')


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


ROUTE_TABLE = (
    ("GET", _Q, list_queues),
    ("GET", _Q + r"/(?P<queue>[^/]+)", get_queue),
    ("GET", _Q + r"/(?P<queue>[^/]+)/consumers", list_consumers),
    ("GET", _Q + r"/(?P<queue>[^/]+)/metrics", get_metrics),
    ("POST", _Q + r"/(?P<queue>[^/]+)/messages", send_message),
    ("POST", _Q + r"/(?P<queue>[^/]+)/messages/batch", send_batch),
    ("POST", _Q + r"/(?P<queue>[^/]+)/messages/peek", peek_messages),
    ("POST", _Q + r"/(?P<queue>[^/]+)/messages/pull", pull_messages),
    ("POST", _Q + r"/(?P<queue>[^/]+)/messages/ack", ack_messages),
    ("POST", r"/graphql", graphql),
)
"""(method, path pattern, handler) rows the Cloudflare stand-in routes to."""

ROUTES = [
    (method, re.compile(f"^{pattern}/?$"), handler)
    for method, pattern, handler in ROUTE_TABLE
]
