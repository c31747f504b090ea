"""GraphQL Analytics and Workers Observability stand-ins (CLOUDFLARE.md 3 and 7).

Both aggregate the platform stand-in's invocation records (``_invocations``), so
their numbers are what the stand-in really served.

``POST /client/v4/graphql`` answers ``{data, errors}``, not the v4 envelope, and
HTTP 200 carries errors, as the real API does. Only the dataset
``workersInvocationsAdaptive`` is served, with ``sum{requests errors
subrequests}``, ``quantiles{cpuTimeP50 cpuTimeP99 wallTimeP50 wallTimeP99}``
(microseconds, nearest rank over the records) and ``dimensions{datetime datetimeMinute datetimeHour date
scriptName status scriptVersion}``; the query is not parsed as full GraphQL: the
stand-in reads the dataset name, the ``sum`` and ``dimensions`` selections and the
filter's ``scriptName``, ``datetime_geq`` and ``datetime_leq`` (literal strings or
``$variables``). An unknown dataset or field answers 200 with an error.

``POST /client/v4/accounts/{a}/workers/observability/telemetry/query`` serves
``view: "events"`` only: one event per invocation with ``$metadata{id, service,
trigger, message, error, level, statusCode, url, requestId}`` and ``$workers{
scriptName, eventType, outcome, requestId, cpuTimeMs, wallTimeMs, scriptVersion{id,
message, tag}}`` (times as the platform stand-in charged them, ``_timing``), and
one per line the Worker logged (``$metadata.type`` "cf-worker", the line as
``message``, the request's ``trigger`` and ``requestId``, no status),
newest first; ``limit`` (at most 2000), ``offset`` (the last event's
``$metadata.id``) and ``eq``/``neq``/``gte``/``lt`` filters on ``$metadata.*``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from . import _cloudflare
from ._envelope import ApiError, ok
from ._http import Request, Response
from ._invocations import Invocation, invocations, wait_for_traffic
from ._state import World

DATASET = "workersInvocationsAdaptive"
SUMS = ("requests", "errors", "subrequests")
DIMENSIONS = (
    "datetime",
    "datetimeMinute",
    "datetimeHour",
    "date",
    "scriptName",
    "status",
    "scriptVersion",
)
QUANTILES = ("cpuTimeP50", "cpuTimeP99", "wallTimeP50", "wallTimeP99")
MAX_EVENTS = 2000
_OUTCOME_STATUS = {"ok": "success", "exception": "scriptThrewException"}
_DATASET_RE = re.compile(r"accounts\s*\([^)]*\)\s*\{\s*(\w+)")
_BLOCK_RE = r"{name}\s*\{{([^}}]*)\}}"
_FILTER_RE = re.compile(r"(\w+)\s*:\s*(\$\w+|\"[^\"]*\")")


def graphql(world: World, request: Request, params: dict[str, str]) -> Response:
    """Answer a GraphQL Analytics query on workersInvocationsAdaptive."""
    try:
        body = request.json()
        query = str(body["query"])
        variables = dict(body.get("variables") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return _graphql_errors(
            400, "failed to parse request body: expected JSON {query}"
        )
    dataset = _DATASET_RE.search(query)
    if dataset is None or dataset.group(1) != DATASET:
        name = dataset.group(1) if dataset else "?"
        return _graphql_errors(200, f'unknown field "{name}" on type "account"')
    sums = _selection(query, "sum")
    dimensions = _selection(query, "dimensions")
    quantiles = _selection(query, "quantiles")
    unknown = [s for s in sums if s not in SUMS]
    unknown += [d for d in dimensions if d not in DIMENSIONS]
    unknown += [q for q in quantiles if q not in QUANTILES]
    if unknown:
        return _graphql_errors(200, f'unknown field "{unknown[0]}" in {DATASET}')
    filters = _filters(query, variables)
    if variables.get("accountTag", world.environment.account_id) != (
        world.environment.account_id
    ):
        return _graphql_errors(200, "not authorized for that account")

    wait_for_traffic(world)
    chosen = _select(invocations(world), filters)
    rows = _aggregate(world, chosen, sums, dimensions, quantiles)
    data = {"viewer": {"accounts": [{DATASET: rows}]}}
    return Response.json(200, {"data": data, "errors": None})


def telemetry_query(world: World, request: Request, params: dict[str, str]) -> Response:
    """Answer a Workers Observability telemetry query (view "events")."""
    try:
        body = request.json()
        start = float(body["timeframe"]["from"]) / 1000
        end = float(body["timeframe"]["to"]) / 1000
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, 10001, "timeframe {from, to} in epoch ms is required")
    if body.get("view", "events") != "events":
        raise ApiError(400, 10001, "the sandbox serves view 'events' only")
    limit = min(int(body.get("limit") or 50), MAX_EVENTS)
    filters = (body.get("parameters") or {}).get("filters") or []

    wait_for_traffic(world)
    chosen = [i for i in invocations(world) if start <= i.at <= end]
    events = [e for i in reversed(chosen) for e in _events(world, i)]
    events = [e for e in events if all(_matches(e, f) for f in filters)]
    offset = str(body.get("offset") or "")
    if offset:
        ids = [e["$metadata"]["id"] for e in events]
        events = events[ids.index(offset) + 1 :] if offset in ids else []
    page = events[:limit]
    result = {"events": {"events": page, "count": len(events), "fields": []}}
    return ok({"run": {"id": "sandbox"}, "statistics": {}, **result})


def _graphql_errors(status: int, message: str) -> Response:
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    error = {"message": message, "path": None, "extensions": {"timestamp": stamp}}
    return Response.json(status, {"data": None, "errors": [error]})


def _selection(query: str, name: str) -> list[str]:
    found = re.search(_BLOCK_RE.format(name=name), query)
    return found.group(1).split() if found else []


def _filters(query: str, variables: dict[str, Any]) -> dict[str, str]:
    block = re.search(r"filter\s*:\s*\{([^}]*)\}", query.split(DATASET, 1)[-1])
    values: dict[str, str] = {}
    for key, raw in _FILTER_RE.findall(block.group(1) if block else ""):
        value = variables.get(raw[1:]) if raw.startswith("$") else raw.strip('"')
        values[key] = str(value or "")
    return values


def _select(records: Iterable[Invocation], filters: dict[str, str]) -> list[Invocation]:
    start = _epoch(filters.get("datetime_geq"), float("-inf"))
    end = _epoch(filters.get("datetime_leq"), float("inf"))
    return [r for r in records if start <= r.at <= end]


def _aggregate(
    world: World,
    records: list[Invocation],
    sums: list[str],
    dimensions: list[str],
    quantiles: Sequence[str] = (),
) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], list[Invocation]] = defaultdict(list)
    for record in records:
        groups[tuple(_dimension(world, record, d) for d in dimensions)].append(record)
    rows = []
    for key in sorted(groups):
        members = groups[key]
        totals = {
            "requests": len(members),
            "errors": sum(r.outcome != "ok" for r in members),
            "subrequests": sum(r.subrequests for r in members),
        }
        row: dict[str, Any] = {"sum": {s: totals[s] for s in sums}}
        if quantiles:
            row["quantiles"] = {q: _quantile(members, q) for q in quantiles}
        if dimensions:
            row["dimensions"] = dict(zip(dimensions, key, strict=True))
        rows.append(row)
    return rows


def _quantile(records: list[Invocation], name: str) -> float:
    """A CPU or wall time quantile of the records, in microseconds."""
    times = sorted(r.cpu_ms if name.startswith("cpu") else r.wall_ms for r in records)
    share = int(name[-2:]) / 100
    rank = max(1, math.ceil(share * len(times)))
    return round(times[rank - 1] * 1000, 1)


def _dimension(world: World, record: Invocation, name: str) -> str:
    moment = datetime.fromtimestamp(record.at, tz=UTC)
    values = {
        "datetime": moment.replace(microsecond=0),
        "datetimeMinute": moment.replace(second=0, microsecond=0),
        "datetimeHour": moment.replace(minute=0, second=0, microsecond=0),
    }
    if name in values:
        return values[name].isoformat().replace("+00:00", "Z")
    if name == "date":
        return moment.date().isoformat()
    if name == "scriptName":
        return world.environment.worker_name
    if name == "status":
        return _OUTCOME_STATUS.get(record.outcome, "internalError")
    return record.version_id


def _events(world: World, record: Invocation) -> list[dict[str, Any]]:
    """The invocation's event, then one event per line it logged (newest first)."""
    main = _event(world, record)
    lines = [_log_event(main, record, n, line) for n, line in enumerate(record.logs)]
    return [*reversed(lines), main]


def _log_event(
    main: dict[str, Any], record: Invocation, number: int, line: str
) -> dict[str, Any]:
    """A console line: the request's trigger and id, no status of its own."""
    failed = "failed" in line or "Error" in line
    return {
        "timestamp": main["timestamp"] + number + 1,
        "dataset": "cloudflare-workers",
        "source": {"message": line},
        "$metadata": {
            "id": f"{record.request_id}-{number + 1}",
            "service": main["$metadata"]["service"],
            "type": "cf-worker",
            "trigger": main["$metadata"]["trigger"],
            "message": line,
            "level": "error" if failed else "log",
            "requestId": record.request_id,
        },
        "$workers": {**main["$workers"]},
    }


def _event(world: World, record: Invocation) -> dict[str, Any]:
    version = world.main_script.version(record.version_id)
    level = "error" if record.status >= 500 else "info"
    return {
        "timestamp": int(record.at * 1000),
        "dataset": "cloudflare-workers",
        "source": {"message": record.error} if record.error else {},
        "$metadata": {
            "id": record.request_id,
            "service": world.environment.worker_name,
            "trigger": f"{record.method} {record.path}",
            "message": record.error or f"{record.method} {record.path}",
            "error": record.error or None,
            "level": level,
            "statusCode": record.status,
            "url": f"https://api.example.com{record.path}",
            "requestId": record.request_id,
        },
        "$workers": {
            "scriptName": world.environment.worker_name,
            "eventType": "fetch",
            "outcome": record.outcome,
            "requestId": record.request_id,
            "cpuTimeMs": round(record.cpu_ms),
            "wallTimeMs": round(record.wall_ms),
            "scriptVersion": {
                "id": record.version_id,
                "message": version.message if version else "",
                "tag": version.tag if version else None,
            },
        },
    }


def _matches(event: dict[str, Any], rule: Any) -> bool:
    if not isinstance(rule, dict):
        return True
    section, _, field = str(rule.get("key", "")).partition(".")
    value = (event.get(section) or {}).get(field)
    wanted = rule.get("value")
    operation = rule.get("operation", "eq")
    if operation in ("gte", "lt") and isinstance(value, int | float):
        return bool(
            value >= float(str(wanted))
            if operation == "gte"
            else value < float(str(wanted))
        )
    if operation == "neq":
        return str(value) != str(wanted)
    return str(value) == str(wanted)


def _epoch(text: str | None, default: float) -> float:
    if not text:
        return default
    return datetime.fromisoformat(text).timestamp()


# The Cloudflare API stand-in routes by its table; these two live under the same
# /client/v4 prefix and token check as every other call.
_cloudflare._ROUTES += [
    ("POST", re.compile(r"^/graphql/?$"), graphql),
    (
        "POST",
        re.compile(
            r"^/accounts/(?P<account>[^/]+)/workers/observability/telemetry/query/?$"
        ),
        telemetry_query,
    ),
]
