"""Where slow requests spend their time: wall against CPU time, and start-up.

Two checks of the "slow responses" runbook (PLATFORM.md 10.5):

- :func:`check_route_timings` reads Workers Logs (the Workers Observability
  telemetry query): each event carries the invocation's ``$workers.wallTimeMs``,
  start to answer with every wait included, and ``$workers.cpuTimeMs``, what the
  isolate computed (CLOUDFLARE.md section 3). A slow route whose CPU time stays
  low waited on something: on a route that calls an outside service
  (:data:`EXTERNAL_CALLS`), on that service. A slow request whose CPU time is
  close to its wall time computed: among fast requests of the same route, that
  is an isolate starting (a cold start).
- :func:`check_startup` reads the live version's ``startup_time_ms`` (versions
  API) and the previous version's, and how long ago the live one was deployed.

Which routes call out, from the platform's handlers (PLATFORM.md sections 3 to
5): Stripe on checkout, billing portal, payment intent and the webhook's
subscription read; MailChannels on the password-reset request. The AI provider
(Anthropic through AI Gateway, up to 5 attempts) is called by the analysis queue
consumers, not by an HTTP route: its latency shows as waiting jobs (the
queue-delays runbook), not as slow responses.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errorrate import invocation_rows, recent_events
from ._finding import Finding, Status, check
from ._latency import P95_LIMIT_MS, percentile
from ._time import describe_age, parse_timestamp, utcnow

logger = logging.getLogger(__name__)

WINDOW_MIN = 60
# A slow invocation with CPU time under this share of its wall time was waiting.
WAITING_CPU_SHARE = 0.25
# An invocation this slow whose CPU time is at least half of it was computing.
STARTUP_MIN_MS = 1000.0
STARTUP_CPU_SHARE = 0.5
SLOW_STARTUP_MS = 1000.0
EXTERNAL_CALLS: Mapping[str, str] = {
    "POST /payments/create-checkout-session": "Stripe",
    "POST /payments/create-portal-session": "Stripe",
    "POST /payments/create-payment-intent": "Stripe",
    "POST /webhooks/stripe": "Stripe",
    "POST /payments/webhook": "Stripe",
    "POST /auth/password-reset-request": "MailChannels",
}


@check("route-timings")
def check_route_timings(
    environment: Environment, *, window_min: int = WINDOW_MIN
) -> Finding:
    """Compare wall and CPU time per route over the window (Workers Logs).

    Args:
        environment: whose Worker to read.
        window_min: how many minutes back to read.

    Returns:
        A finding that fails when a route's wall-time p95 is over 3 s; its facts
        name the ``waiting`` routes (with the service they call, if any) and the
        ``computing`` invocations (start-up-like: slow and CPU-bound).
    """
    raw, _, _ = recent_events(environment, window_min)
    events = [e for e in (timed_event(r) for r in one_per_request(raw)) if e]
    if not events:
        text = (
            f"{len(raw)} Workers Logs event(s) in {window_min} min, none with wall "
            "and CPU times (is observability enabled on the Worker?)"
        )
        return Finding("route-timings", Status.WARN, text, (), {"events": len(raw)})
    rows = timing_table(events)
    facts = _timing_facts(events, rows)
    return Finding(
        "route-timings", _timing_status(facts), _timing_summary(facts), rows, facts
    )


def one_per_request(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Keep one event per invocation, the one with the HTTP status: the lines a
    Worker logs come as events of their own, with the same request id and the
    invocation's times but without the status or URL."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for number, event in enumerate(events):
        meta = event.get("$metadata") or {}
        key = str(meta.get("requestId") or f"#{number}")
        if key not in chosen or meta.get("statusCode") is not None:
            chosen[key] = event
    return list(chosen.values())


def timed_event(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Reduce a Workers Logs event to route, version, wall and CPU ms (None if
    it carries no times)."""
    meta = event.get("$metadata") or {}
    workers = event.get("$workers") or {}
    wall, cpu = workers.get("wallTimeMs"), workers.get("cpuTimeMs")
    if not isinstance(wall, int | float) or not isinstance(cpu, int | float):
        return None
    method = str(meta.get("trigger") or "GET").split(" ")[0]
    return {
        "at": float(event.get("timestamp") or 0) / 1000,
        "route": f"{method} {urlsplit(str(meta.get('url') or '')).path}",
        "version": str((workers.get("scriptVersion") or {}).get("id") or "?"),
        "wall_ms": float(wall),
        "cpu_ms": float(cpu),
    }


def timing_table(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Requests, wall and CPU percentiles per route, slowest wall p95 first."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        groups[event["route"]].append(event)
    rows = []
    for route, items in groups.items():
        walls = [e["wall_ms"] for e in items]
        cpus = [e["cpu_ms"] for e in items]
        rows.append(
            {
                "route": route,
                "requests": len(items),
                "wall_p50_ms": round(percentile(walls, 0.50)),
                "wall_p95_ms": round(percentile(walls, 0.95)),
                "wall_p99_ms": round(percentile(walls, 0.99)),
                "cpu_p50_ms": round(percentile(cpus, 0.50)),
                "cpu_p95_ms": round(percentile(cpus, 0.95)),
                "calls": EXTERNAL_CALLS.get(route, ""),
            }
        )
    return sorted(rows, key=lambda r: (-r["wall_p95_ms"], r["route"]))


def is_computing(event: Mapping[str, Any]) -> bool:
    """True for a slow invocation that spent most of its wall time on CPU."""
    wall, cpu = float(event["wall_ms"]), float(event["cpu_ms"])
    return wall >= STARTUP_MIN_MS and cpu >= STARTUP_CPU_SHARE * wall


def waiting_routes(
    events: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Routes over the p95 limit whose slow invocations mostly waited."""
    found = []
    for row in rows:
        if row["wall_p95_ms"] <= P95_LIMIT_MS:
            continue
        slow = [
            e
            for e in events
            if e["route"] == row["route"] and e["wall_ms"] > P95_LIMIT_MS
        ]
        shares = [e["cpu_ms"] / e["wall_ms"] for e in slow]
        if slow and percentile(shares, 0.5) < WAITING_CPU_SHARE:
            found.append(
                {
                    "route": row["route"],
                    "service": row["calls"],
                    "requests": row["requests"],
                    "slow": len(slow),
                    "wall_p95_ms": row["wall_p95_ms"],
                    "cpu_p95_ms": row["cpu_p95_ms"],
                }
            )
    return found


def _timing_facts(
    events: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    computing = [
        {
            "route": e["route"],
            "version": e["version"],
            "wall_ms": round(e["wall_ms"]),
            "cpu_ms": round(e["cpu_ms"]),
        }
        for e in sorted(events, key=lambda e: e["at"])
        if is_computing(e)
    ]
    return {
        "requests": len(events),
        "slow_routes": [r["route"] for r in rows if r["wall_p95_ms"] > P95_LIMIT_MS],
        "waiting": waiting_routes(events, rows),
        "computing": computing,
    }


def _timing_status(facts: Mapping[str, Any]) -> Status:
    if facts["slow_routes"]:
        return Status.FAIL
    return Status.WARN if facts["computing"] else Status.OK


def _timing_summary(facts: Mapping[str, Any]) -> str:
    text = f"{facts['requests']} logged requests"
    for item in facts["waiting"]:
        calls = f", which calls {item['service']}" if item["service"] else ""
        text += (
            f"; {item['route']}{calls}: wall p95 {item['wall_p95_ms']} ms against "
            f"CPU p95 {item['cpu_p95_ms']} ms (waiting)"
        )
    others = [
        r
        for r in facts["slow_routes"]
        if r not in {w["route"] for w in facts["waiting"]}
    ]
    if others:
        text += f"; over the 3 s wall p95 limit: {', '.join(others)}"
    if facts["computing"]:
        text += (
            f"; {len(facts['computing'])} slow request(s) spent most of their time "
            "on CPU (isolate start-up?)"
        )
    if not facts["slow_routes"] and not facts["computing"]:
        text += ": every route's wall p95 under 3 s"
    return text


_TIMES_QUERY = """query ($accountTag: string, $scriptName: string, $start: string, $end: string) {
  viewer { accounts(filter: {accountTag: $accountTag}) {
    workersInvocationsAdaptive(limit: 10000,
      filter: {scriptName: $scriptName, datetime_geq: $start, datetime_leq: $end}) {
      sum { requests subrequests }
      quantiles { cpuTimeP50 cpuTimeP99 wallTimeP50 wallTimeP99 }
    } } } }"""


@check("worker-times")
def check_worker_times(
    environment: Environment, *, window_min: int = WINDOW_MIN
) -> Finding:
    """Wall against CPU time of the whole Worker (GraphQL Analytics).

    ``workersInvocationsAdaptive`` has no route, but it needs no Workers Logs:
    its ``quantiles`` give CPU and wall time p50 and p99 in microseconds
    (CLOUDFLARE.md section 7; the wall-time unit is taken to be the same). A wall
    p99 over 3 s warns; the verdict reads the CPU share to tell waiting from
    computing.
    """
    rows = invocation_rows(environment, _TIMES_QUERY, window_min)
    requests = sum(int((r.get("sum") or {}).get("requests") or 0) for r in rows)
    if not rows or not requests:
        return Finding("worker-times", Status.OK, f"no invocations in {window_min} min")
    sums, quantiles = rows[0].get("sum") or {}, rows[0].get("quantiles") or {}
    facts: dict[str, Any] = {
        "requests": requests,
        "subrequests": int(sums.get("subrequests") or 0),
    }
    for name in ("cpuTimeP50", "cpuTimeP99", "wallTimeP50", "wallTimeP99"):
        facts[name] = round(float(quantiles.get(name) or 0) / 1000, 1)
    text = (
        f"{requests} invocations in {window_min} min, {facts['subrequests']} "
        f"outbound: wall p50 {facts['wallTimeP50']:.0f} ms, p99 "
        f"{facts['wallTimeP99']:.0f} ms; CPU p50 {facts['cpuTimeP50']:.0f} ms, p99 "
        f"{facts['cpuTimeP99']:.0f} ms"
    )
    status = Status.WARN if facts["wallTimeP99"] > P95_LIMIT_MS else Status.OK
    return Finding("worker-times", status, text, [facts], facts)


@check("startup")
def check_startup(environment: Environment) -> Finding:
    """Read the start-up time of the live version and of the one before it.

    The versions API reports ``startup_time_ms`` (optional): the time to load the
    script and run its top level, which every new isolate pays before its first
    request. Over 1 s on the live version warns; an absent value is reported as
    such, not as a failure.
    """
    client = CloudflareClient(environment)
    try:
        deployments = client.list_deployments()
        versions = [_main_version(d) for d in deployments[:2]]
        startups = [_startup_ms(client, v) for v in versions]
    finally:
        client.close()

    if not deployments:
        return Finding("startup", Status.WARN, "the Worker has no deployment")
    created = str(deployments[0].get("created_on") or "")
    moment = parse_timestamp(created) if created else None
    facts: dict[str, Any] = {
        "live_version": versions[0],
        "live_startup_ms": startups[0],
        "previous_version": versions[1] if len(versions) > 1 else None,
        "previous_startup_ms": startups[1] if len(startups) > 1 else None,
        "deployed_min_ago": (
            round((utcnow() - moment).total_seconds() / 60) if moment else None
        ),
        "deployed": describe_age(moment) if moment else "",
    }
    rows = [{"version": v, "startup_time_ms": s} for v, s in zip(versions, startups)]
    return Finding("startup", *_startup_verdict(facts), rows, facts)


def _startup_verdict(facts: Mapping[str, Any]) -> tuple[Status, str]:
    live, before = facts["live_startup_ms"], facts["previous_startup_ms"]
    deployed = f"deployed {facts['deployed']}".strip()
    if live is None:
        return Status.OK, f"live version {deployed}; start-up time not reported"
    text = f"live version {deployed} starts an isolate in {live} ms"
    text += f" (the one before: {before} ms)" if before is not None else ""
    return (Status.WARN if live >= SLOW_STARTUP_MS else Status.OK), text


def _main_version(deployment: Mapping[str, Any]) -> str:
    versions = deployment.get("versions") or [{}]
    main = max(versions, key=lambda v: v.get("percentage", 0))
    return str(main.get("version_id") or "")


def _startup_ms(client: CloudflareClient, version_id: str) -> int | None:
    if not version_id:
        return None
    value = client.get_version(version_id).get("startup_time_ms")
    return round(value) if isinstance(value, int | float) else None
