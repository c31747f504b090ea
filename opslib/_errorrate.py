"""Checks of the "high error rate" runbook (RUNBOOK issue 4, PLATFORM.md 10.4).

Two sources, because neither tells the whole story:

- GraphQL Analytics, dataset ``workersInvocationsAdaptive``: invocations per
  minute and version. Its ``errors`` count only uncaught exceptions; the
  platform's global handler catches every error and answers 500 JSON, so a 500
  that users see counts as a successful invocation there.
- Workers Logs (Workers Observability telemetry query): one event per request with
  ``$metadata.statusCode``, ``$metadata.url`` and ``$metadata.error`` and the
  serving ``$workers.scriptVersion``; the per-route HTTP status comes from here.
  It needs observability enabled on the Worker; a head sampling rate below 1
  shows that share of the requests only.

429 answers are kept apart from failures: FREE users get 10 calls per path per
day, and their refusals look like errors in a status histogram.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check, unknown
from ._time import parse_timestamp, utcnow

logger = logging.getLogger(__name__)

WINDOW_MIN = 60
SERVER_ERROR_RATE = 0.01
ROUTE_ERROR_RATE = 0.05
ROUTE_MIN_ERRORS = 3
LIMITED_SHARE = 0.05
FREE_PER_PATH = 10
KEYS_SCANNED = 5000
VALUES_READ = 200
TABLE_ERROR = re.compile(r"no such table: (?:main\.)?(\w+)")
_QUERY = """query ($accountTag: string, $scriptName: string, $start: string, $end: string) {
  viewer { accounts(filter: {accountTag: $accountTag}) {
    workersInvocationsAdaptive(limit: 10000, orderBy: [datetimeMinute_ASC],
      filter: {scriptName: $scriptName, datetime_geq: $start, datetime_leq: $end}) {
      sum { requests errors }
      dimensions { datetimeMinute status scriptVersion }
    } } } }"""


@check("invocations")
def check_invocations(
    environment: Environment, *, window_min: int = WINDOW_MIN
) -> Finding:
    """Count the Worker's invocations per minute and version (GraphQL Analytics)."""
    rows = invocation_rows(environment, _QUERY, window_min)
    series = [_series_row(row) for row in rows]
    by_version: Counter[str] = Counter()
    for row in series:
        by_version[row["version"]] += row["requests"]
    requests = sum(by_version.values())
    exceptions = sum(row["errors"] for row in series)
    evidence = [{"version": v, "requests": n} for v, n in by_version.most_common()]
    facts = {"requests": requests, "exceptions": exceptions, "series": series}
    text = (
        f"{requests} invocations in {window_min} min on {len(by_version)} version(s), "
        f"{exceptions} uncaught exception(s); 5xx answers from the global handler "
        "count as successes here"
    )
    if requests == 0:
        return Finding(
            "invocations", Status.WARN, "no invocations in the window", (), facts
        )
    status = Status.FAIL if exceptions / requests >= SERVER_ERROR_RATE else Status.OK
    return Finding("invocations", status, text, evidence, facts)


def invocation_rows(
    environment: Environment, query: str, window_min: int
) -> list[dict[str, Any]]:
    """Run a ``workersInvocationsAdaptive`` query over the Worker's last
    ``window_min`` minutes; return its rows.

    The query declares ``$accountTag``, ``$scriptName``, ``$start`` and ``$end``
    (as strings: time-typed declarations were reported to fail validation).
    """
    end = utcnow()
    start = end - timedelta(minutes=window_min)
    variables = {
        "accountTag": environment.account_id,
        "scriptName": environment.worker_name,
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
    }
    client = CloudflareClient(environment)
    try:
        data = client.graphql(query, variables)
    finally:
        client.close()
    accounts = (data.get("viewer") or {}).get("accounts") or [{}]
    return list(accounts[0].get("workersInvocationsAdaptive") or [])


def recent_events(
    environment: Environment, window_min: int, *, requests_only: bool = True
) -> tuple[list[dict[str, Any]], datetime, datetime]:
    """Read the Worker's Workers Logs events of the last ``window_min`` minutes.

    Args:
        environment: whose Worker.
        window_min: how many minutes back.
        requests_only: keep only request events (they carry a status code);
            False keeps the lines the Worker logged too.

    Returns:
        The raw events, and the window's start and end.
    """
    end = utcnow()
    start = end - timedelta(minutes=window_min)
    client = CloudflareClient(environment)
    try:
        raw = client.telemetry_events(
            int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        )
    finally:
        client.close()
    if requests_only:
        raw = [e for e in raw if (e.get("$metadata") or {}).get("statusCode")]
    return raw, start, end


def recent_event_rows(
    environment: Environment, window_min: int
) -> list[dict[str, Any]]:
    """The last ``window_min`` minutes of Workers Logs, one small dict per event.

    Each row holds ``at`` (epoch seconds), ``route``, ``status``, ``version`` and
    ``error``.
    """
    raw, _, _ = recent_events(environment, window_min)
    return [_slim(event) for event in raw]


@check("route-errors")
def check_route_errors(
    environment: Environment, *, window_min: int = WINDOW_MIN
) -> Finding:
    """Break the logged requests down by route, version and status (Workers Logs)."""
    raw, start, end = recent_events(environment, window_min)
    events = sorted((_slim(e) for e in raw), key=lambda e: e["at"])
    if not events:
        text = "no Workers Logs events in the window (is observability enabled?)"
        return Finding("route-errors", Status.WARN, text, (), {"events": []})
    table = route_table(events)
    facts = _totals(events, table)
    facts["window_start"], facts["window_end"] = start.timestamp(), end.timestamp()
    return Finding(
        "route-errors", _route_status(facts), _route_summary(facts), table, facts
    )


@check("deployments-in-window")
def check_error_deployments(
    environment: Environment, route_errors: Finding, *, window_min: int = WINDOW_MIN
) -> Finding:
    """Find deployments in the window and whether failing routes began with one."""
    client = CloudflareClient(environment)
    try:
        deployments = client.list_deployments()
    finally:
        client.close()

    since = utcnow() - timedelta(minutes=window_min)
    recent = [_deployment_row(d) for d in deployments]
    inside = [d for d in recent if d["at"] >= since.timestamp()]
    onsets = _onsets(route_errors.facts, inside)
    previous = next((d for d in recent if d["at"] < since.timestamp()), None)
    facts = {"deployments": inside, "onsets": onsets, "previous": previous}
    evidence = [{k: d[k] for k in ("created_on", "version", "message")} for d in inside]
    if onsets:
        where = ", ".join(f"{o['route']} since version {o['version']}" for o in onsets)
        return Finding(
            "deployments-in-window",
            Status.FAIL,
            f"errors began with a deployment: {where}",
            evidence,
            facts,
        )
    text = f"{len(inside)} deployment(s) in the last {window_min} min"
    if inside:
        return Finding(
            "deployments-in-window",
            Status.WARN,
            text + "; no route's errors began with one",
            evidence,
            facts,
        )
    return Finding("deployments-in-window", Status.OK, text, evidence, facts)


@check("user-rate-limits")
def check_user_limits(environment: Environment) -> Finding:
    """Find per-user rate-limit counters at their daily limit, with the user's tier."""
    namespace = environment.kv_namespaces.get("SESSIONS", "")
    client = CloudflareClient(environment)
    try:
        keys = client.kv_list_keys(
            namespace, prefix="rate_limit:user:", limit=KEYS_SCANNED
        )
        counters = [
            (k["name"], client.kv_get(namespace, k["name"])) for k in keys[:VALUES_READ]
        ]
        read = [_counter(name, value) for name, value in counters]
        full = [c for c in read if c is not None and c["count"] >= FREE_PER_PATH]
        tiers = _tiers(client, sorted({c["user_id"] for c in full}))
    finally:
        client.close()

    for counter in full:
        counter["tier"] = tiers.get(counter["user_id"], "?")
    free = [c for c in full if c["tier"] == "FREE"]
    facts = {"at_limit": full, "free_at_limit": len(free), "scanned": len(keys)}
    if free:
        users = len({c["user_id"] for c in free})
        text = (
            f"{len(free)} per-path counter(s) of {users} FREE user(s) at 10 a day: "
            "their calls get 429"
        )
        return Finding("user-rate-limits", Status.WARN, text, free[:10], facts)
    text = f"{len(keys)} per-user counter(s), none of a FREE user at the limit"
    return Finding("user-rate-limits", Status.OK, text, full[:10], facts)


@check("missing-tables")
def check_missing_tables(environment: Environment, route_errors: Finding) -> Finding:
    """Check in D1 the tables that failing requests say are missing."""
    if route_errors.status is Status.UNKNOWN:
        return unknown("missing-tables", "skipped: the failing requests were not read")
    named = sorted(set(route_errors.facts.get("missing_tables") or ()))
    if not named:
        return Finding(
            "missing-tables", Status.OK, "no request failed on a missing table"
        )
    client = CloudflareClient(environment)
    try:
        marks = ",".join("?" for _ in named)
        result = client.d1_query(
            f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
            named,
        )
    finally:
        client.close()

    present = {row["name"] for row in result[0].get("results") or []}
    rows = [{"table": t, "in_d1": t in present} for t in named]
    missing = [t for t in named if t not in present]
    facts = {"missing": missing, "named": named}
    if missing:
        return Finding(
            "missing-tables", Status.FAIL, f"D1 lacks {', '.join(missing)}", rows, facts
        )
    return Finding(
        "missing-tables", Status.WARN, "tables named in errors exist now", rows, facts
    )


def route_table(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Requests, 5xx and 429 per route and version, worst error rate first."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        groups[(event["route"], event["version"])].append(event)
    rows = []
    for (route, version), items in groups.items():
        failed = [e for e in items if e["status"] >= 500]
        messages = Counter(e["error"] for e in failed if e["error"])
        rows.append(
            {
                "route": route,
                "version": version[:8],
                "requests": len(items),
                "5xx": len(failed),
                "429": sum(e["status"] == 429 for e in items),
                "5xx_rate": round(len(failed) / len(items), 3),
                "top_error": messages.most_common(1)[0][0][:80] if messages else "",
            }
        )
    return sorted(rows, key=lambda r: (-r["5xx_rate"], -r["429"], r["route"]))


def error_class(message: str) -> str:
    """Sort a thrown message into missing-table, d1, r2 or code."""
    if TABLE_ERROR.search(message):
        return "missing-table"
    d1_load = ("D1 DB is overloaded", "exceeded timeout", "Network connection lost")
    if any(text in message for text in d1_load):
        return "d1"
    if "(10058)" in message or "R2" in message or "Reduce your concurrent" in message:
        return "r2"
    return "code"


def _slim(event: Mapping[str, Any]) -> dict[str, Any]:
    meta = event.get("$metadata") or {}
    workers = event.get("$workers") or {}
    method = str(meta.get("trigger") or "GET").split(" ")[0]
    return {
        "at": float(event.get("timestamp") or 0) / 1000,
        "route": f"{method} {urlsplit(str(meta.get('url') or '')).path}",
        "status": int(meta.get("statusCode") or 0),
        "version": str((workers.get("scriptVersion") or {}).get("id") or "?"),
        "error": str(meta.get("error") or ""),
    }


def _totals(
    events: list[dict[str, Any]], table: list[dict[str, Any]]
) -> dict[str, Any]:
    failed = [e for e in events if e["status"] >= 500]
    limited = sum(e["status"] == 429 for e in events)
    problem = sorted(
        {
            r["route"]
            for r in table
            if r["5xx"] >= ROUTE_MIN_ERRORS and r["5xx_rate"] >= ROUTE_ERROR_RATE
        }
    )
    classes = Counter(error_class(e["error"]) for e in failed)
    tables = [m.group(1) for e in failed if (m := TABLE_ERROR.search(e["error"]))]
    return {
        "events": events,
        "requests": len(events),
        "server_errors": len(failed),
        "rate_limited": limited,
        "server_error_rate": len(failed) / len(events),
        "limited_share": limited / len(events),
        "problem_routes": problem,
        "error_classes": dict(classes),
        "messages": Counter(e["error"] for e in failed).most_common(5),
        "missing_tables": sorted(set(tables)),
    }


def _route_status(facts: Mapping[str, Any]) -> Status:
    if facts["server_error_rate"] >= SERVER_ERROR_RATE or facts["problem_routes"]:
        return Status.FAIL
    if facts["limited_share"] >= LIMITED_SHARE:
        return Status.WARN
    return Status.OK


def _route_summary(facts: Mapping[str, Any]) -> str:
    text = (
        f"{facts['requests']} requests: {facts['server_errors']} 5xx "
        f"({facts['server_error_rate']:.1%}), {facts['rate_limited']} 429 "
        f"({facts['limited_share']:.1%}, kept apart)"
    )
    if facts["problem_routes"]:
        text += f"; failing routes: {', '.join(facts['problem_routes'])}"
    return text


def _series_row(row: Mapping[str, Any]) -> dict[str, Any]:
    sums, dims = row.get("sum") or {}, row.get("dimensions") or {}
    return {
        "minute": str(dims.get("datetimeMinute") or ""),
        "status": str(dims.get("status") or ""),
        "version": str(dims.get("scriptVersion") or "?"),
        "requests": int(sums.get("requests") or 0),
        "errors": int(sums.get("errors") or 0),
    }


def _deployment_row(deployment: Mapping[str, Any]) -> dict[str, Any]:
    versions = deployment.get("versions") or [{}]
    main = max(versions, key=lambda v: v.get("percentage", 0))
    annotations = deployment.get("annotations") or {}
    created = str(deployment.get("created_on") or "")
    return {
        "id": str(deployment.get("id") or ""),
        "created_on": created,
        "at": parse_timestamp(created).timestamp() if created else 0.0,
        "version": str(main.get("version_id") or ""),
        "message": str(annotations.get("workers/message") or "")[:80],
    }


def _onsets(
    facts: Mapping[str, Any], deployments: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Failing routes whose 5xx all came from a version deployed in the window,
    while the same route answered without 5xx before that deployment."""
    events = facts.get("events") or []
    onsets = []
    for route in facts.get("problem_routes") or ():
        mine = [e for e in events if e["route"] == route]
        failing = {e["version"] for e in mine if e["status"] >= 500}
        for deployment in deployments:
            before = [e for e in mine if e["at"] < deployment["at"]]
            if (
                failing == {deployment["version"]}
                and before
                and not any(e["status"] >= 500 for e in before)
            ):
                onsets.append(
                    {
                        "route": route,
                        "version": deployment["version"],
                        "at": deployment["created_on"],
                    }
                )
    return onsets


def _counter(name: str, value: bytes | None) -> dict[str, Any] | None:
    parts = name.split(":", 3)
    if value is None or len(parts) < 4:
        return None
    try:
        record = json.loads(value)
        count = int(record.get("count", 0))
    except (ValueError, AttributeError, TypeError):
        return None
    return {"user_id": parts[2], "path": parts[3], "count": count}


def _tiers(client: CloudflareClient, user_ids: list[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    marks = ",".join("?" for _ in user_ids)
    result = client.d1_query(
        f"SELECT id, role, subscription_tier FROM users WHERE id IN ({marks})", user_ids
    )
    return {
        row["id"]: "ADMIN"
        if row["role"] == "admin"
        else str(row["subscription_tier"]).upper()
        for row in result[0].get("results") or []
    }


@check("live-version")
def check_live_version(environment: Environment, version_id: str) -> Finding:
    """Check that ``version_id`` serves all traffic now (the rollback's follow-up).

    The error rate itself needs fresh traffic to move: re-run the runbook after a
    few minutes to see it fall.
    """
    client = CloudflareClient(environment)
    try:
        deployments = client.list_deployments()
    finally:
        client.close()

    if not deployments:
        return Finding("live-version", Status.FAIL, "the Worker has no deployment")
    live = _deployment_row(deployments[0])
    facts = {"live_version": live["version"]}
    if live["version"] == version_id:
        text = f"version {version_id} is live at 100 % since {live['created_on']}"
        return Finding("live-version", Status.OK, text, [live], facts)
    text = f"version {version_id} is not the live version ({live['version']})"
    return Finding("live-version", Status.FAIL, text, [live], facts)
