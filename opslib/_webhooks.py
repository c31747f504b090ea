"""Checks of the "Stripe webhooks failing" runbook.

What the platform does (PLATFORM.md sections 3, 5 and 10.7): Stripe posts
events to ``/webhooks/stripe`` (the legacy alias ``/payments/webhook`` runs the
same handler but sits behind the rate limiter); the handler needs the
``stripe-signature`` header (400 "No signature provided"), checks it against the
Worker secret ``STRIPE_WEBHOOK_SECRET`` with the synchronous ``constructEvent``
(400 "Invalid signature" on any exception, whose real text only the log shows),
logs ``[Webhook] Processing event: <type> <id>``, and answers 500 when handling
throws. It is written for API version 2024-10-28.acacia: from 2025-03-31.basil
subscriptions carry their periods on the items and invoices their subscription
under ``parent``, the handler binds undefined and D1 refuses (500). Stripe keeps
retrying a failed delivery and counts it in the event's ``pending_webhooks``.

The checks read the Worker's secret names, Stripe's endpoints and undelivered
events, Workers Logs' ``[Webhook]`` lines and wall times, and post one locally
signed event the handler ignores.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import stripe

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errorrate import recent_events
from ._finding import Finding, Status, check, unknown
from ._http import json_body
from ._platform import platform_http
from ._stripe import StripeReader
from ._time import parse_duration, utcnow

logger = logging.getLogger(__name__)

SECRET_NAME = "STRIPE_WEBHOOK_SECRET"
WEBHOOK_PATH = "/webhooks/stripe"
ALIAS_PATH = "/payments/webhook"
HANDLED_EVENTS = (
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
)
# The probe's event type: one the handler only logs as unhandled, so it writes
# nothing to D1.
PROBE_EVENT_TYPE = "customer.created"
# A handler slower than this risks Stripe's delivery timeout; Stripe expects a
# quick 2xx and does its retries on its own schedule.
SLOW_HANDLER_S = 1.0
# Events younger than this may still be on their first delivery attempt.
PENDING_GRACE_S = 120
RETENTION_DAYS = 30
SYNC_CRYPTO_TEXT = "SubtleCryptoProvider cannot be used in a synchronous context"
_LOG_PREFIX = "[Webhook]"
_PROBE_TIMEOUT_S = 15.0


@check("webhook-secret")
def check_webhook_secret(environment: Environment) -> Finding:
    """Is ``STRIPE_WEBHOOK_SECRET`` set on the live Worker (names only)?"""
    client = CloudflareClient(environment)
    try:
        names = sorted(str(s.get("name")) for s in client.list_secrets())
    finally:
        client.close()
    facts = {"present": SECRET_NAME in names}
    if SECRET_NAME not in names:
        text = f"{SECRET_NAME} is not set on {environment.worker_name}"
        return Finding("webhook-secret", Status.FAIL, text, (), facts)
    text = f"{SECRET_NAME} is set (its value cannot be read back)"
    return Finding("webhook-secret", Status.OK, text, (), facts)


@check("webhook-endpoints")
def check_webhook_endpoints(environment: Environment) -> Finding:
    """Stripe's endpoint(s) for the platform: status, path and subscribed events.

    An endpoint is the platform's when its host is the host of
    ``platform_url``. Its path should be ``/webhooks/stripe``; the alias
    ``/payments/webhook`` works but is rate-limited.
    """
    reader = StripeReader(environment)
    try:
        everything = reader.webhook_endpoints()
    finally:
        reader.close()
    host = urlsplit(environment.platform_url).netloc
    mine = [_endpoint_row(e) for e in everything if urlsplit(e["url"]).netloc == host]
    facts: dict[str, Any] = {
        "endpoints": mine,
        "disabled": [e["id"] for e in mine if e["status"] != "enabled"],
        "others": len(everything) - len(mine),
    }
    if not mine:
        text = (
            f"no webhook endpoint points at {host} ({len(everything)} in the account)"
        )
        return Finding("webhook-endpoints", Status.FAIL, text, (), facts)
    if facts["disabled"]:
        text = f"endpoint {', '.join(facts['disabled'])} is disabled"
        enabled = [e["id"] for e in mine if e["status"] == "enabled"]
        if enabled:
            text += f"; {', '.join(enabled)} enabled"
        # Another enabled endpoint may have replaced it: the verdict weighs that.
        status = Status.WARN if enabled else Status.FAIL
        return Finding("webhook-endpoints", status, text, mine, facts)
    problems = [p for e in mine for p in e["problems"]]
    if problems:
        return Finding(
            "webhook-endpoints", Status.WARN, "; ".join(problems), mine, facts
        )
    text = (
        f"{len(mine)} endpoint(s) enabled on {WEBHOOK_PATH} with the 6 handled events"
    )
    return Finding("webhook-endpoints", Status.OK, text, mine, facts)


def _endpoint_row(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    path = urlsplit(str(endpoint.get("url"))).path
    enabled = list(endpoint.get("enabled_events") or [])
    missing = [] if "*" in enabled else [t for t in HANDLED_EVENTS if t not in enabled]
    problems = []
    if path == ALIAS_PATH:
        problems.append(f"{endpoint['id']} uses the rate-limited alias {ALIAS_PATH}")
    elif path != WEBHOOK_PATH:
        problems.append(f"{endpoint['id']} posts to {path}, not {WEBHOOK_PATH}")
    if missing:
        problems.append(f"{endpoint['id']} is not subscribed to {', '.join(missing)}")
    return {
        "id": endpoint["id"],
        "path": path,
        "status": endpoint.get("status"),
        "api_version": endpoint.get("api_version"),
        "missing_events": missing,
        "problems": problems,
    }


@check("pending-events")
def check_pending_events(environment: Environment, lookback: str = "24h") -> Finding:
    """Recent events some endpoint has not acknowledged, by type, with their age.

    ``pending_webhooks`` counts every endpoint of the account that has not
    answered 2xx yet; events younger than two minutes are left out (their first
    delivery may still be under way). Stripe keeps events for 30 days.
    """
    now = utcnow().timestamp()
    window = min(parse_duration(lookback).total_seconds(), RETENTION_DAYS * 86_400)
    reader = StripeReader(environment)
    try:
        events = reader.undelivered_events(int(now - window))
    finally:
        reader.close()
    pending = [
        _event_row(e, now)
        for e in events
        if int(e.get("pending_webhooks") or 0) > 0
        and now - int(e["created"]) >= PENDING_GRACE_S
    ]
    table = _by_type(pending)
    facts = {"pending": pending, "lookback": lookback}
    if pending:
        oldest = max(p["age_s"] for p in pending)
        text = (
            f"{len(pending)} event(s) still pending delivery in the last {lookback}, "
            f"oldest {_minutes(oldest)}"
        )
        return Finding("pending-events", Status.FAIL, text, table, facts)
    text = f"no event pending delivery in the last {lookback}"
    return Finding("pending-events", Status.OK, text, (), facts)


def _event_row(event: Mapping[str, Any], now: float) -> dict[str, Any]:
    obj = dict((event.get("data") or {}).get("object") or {})
    return {
        "id": event["id"],
        "type": event["type"],
        "created": int(event["created"]),
        "age_s": int(now - int(event["created"])),
        "pending_webhooks": int(event.get("pending_webhooks") or 0),
        "api_version": event.get("api_version"),
        "invoice": obj.get("id") if obj.get("object") == "invoice" else None,
    }


def _by_type(pending: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts = Counter(str(p["type"]) for p in pending)
    return [
        {
            "type": kind,
            "events": n,
            "oldest": _minutes(max(p["age_s"] for p in pending if p["type"] == kind)),
        }
        for kind, n in counts.most_common()
    ]


def _minutes(seconds: float) -> str:
    return (
        f"{seconds / 60:.0f} min ago"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h ago"
    )


@check("api-version")
def check_api_version(endpoints: Finding, expected: str) -> Finding:
    """Compare each endpoint's API version with the one the handler is written for.

    Payloads come in the endpoint's version, fixed when the endpoint was made.
    A newer one drops the top-level period fields and ``invoice.subscription``
    the handler reads, so it answers 500. Only enabled endpoints are compared
    (a disabled one receives nothing), unless none is enabled.
    """
    if endpoints.status is Status.UNKNOWN:
        return unknown("api-version", "the endpoints could not be read")
    mine = list(endpoints.facts.get("endpoints") or [])
    if not mine:
        return unknown("api-version", "no endpoint of the platform to compare")
    enabled = [e for e in mine if e.get("status") == "enabled"]
    rows = [
        {"endpoint": e["id"], "api_version": e["api_version"], "expected": expected}
        for e in enabled or mine
    ]
    newer = [r for r in rows if r["api_version"] and r["api_version"] > expected]
    other = [r for r in rows if r not in newer and r["api_version"] != expected]
    facts = {"newer": [r["endpoint"] for r in newer], "expected": expected}
    if newer:
        versions = ", ".join(sorted({str(r["api_version"]) for r in newer}))
        text = (
            f"endpoint payloads use {versions}; the handler is written for {expected}"
        )
        return Finding("api-version", Status.FAIL, text, rows, facts)
    if other:
        text = (
            f"{len(other)} endpoint(s) on another version than {expected} "
            "(none: the account's default)"
        )
        return Finding("api-version", Status.WARN, text, rows, facts)
    return Finding("api-version", Status.OK, f"payloads use {expected}", rows, facts)


@check("webhook-logs")
def check_webhook_logs(environment: Environment, lookback: str = "24h") -> Finding:
    """Read the ``[Webhook]`` lines and the wall times of webhook requests.

    The log tells what the 400 "Invalid signature" hides: a wrong secret ("No
    signatures found matching...") or the synchronous ``constructEvent`` of the
    Workers build ("SubtleCryptoProvider cannot be used in a synchronous
    context"). Workers Logs keeps a few days, so at most the last 24 hours are read.
    """
    window = min(parse_duration(lookback), parse_duration("24h"))
    raw, _, _ = recent_events(
        environment, int(window.total_seconds() // 60), requests_only=False
    )
    facts = summarise_logs(raw)
    return _logs_finding(facts)


def summarise_logs(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Count the webhook log lines by kind and collect the requests' wall times."""
    logged = [e.get("$metadata") or {} for e in events]
    lines = [
        str(m.get("message") or "")
        for m in logged
        if not m.get("statusCode")
        and str(m.get("message") or "").startswith(_LOG_PREFIX)
    ]
    requests = [e for e in events if _is_webhook_request(e)]
    walls = [float((e.get("$workers") or {}).get("wallTimeMs") or 0) for e in requests]
    failures = [line for line in lines if "failed" in line or "Error" in line]
    return {
        "lines": len(lines),
        "processed": sum("Processing event" in line for line in lines),
        "sync_crypto": sum(SYNC_CRYPTO_TEXT in line for line in lines),
        "signature_failed": sum(
            "Signature verification failed" in line and SYNC_CRYPTO_TEXT not in line
            for line in lines
        ),
        "handler_errors": sum("Error processing" in line for line in lines),
        "samples": sorted(set(failures))[:3],
        "requests": len(requests),
        "statuses": dict(
            Counter(
                int((e.get("$metadata") or {}).get("statusCode") or 0) for e in requests
            )
        ),
        "max_wall_ms": max(walls, default=0.0),
        "slow": sum(w > SLOW_HANDLER_S * 1000 for w in walls),
    }


def _is_webhook_request(event: Mapping[str, Any]) -> bool:
    meta = event.get("$metadata") or {}
    path = urlsplit(str(meta.get("url") or "")).path
    return bool(meta.get("statusCode")) and path in (WEBHOOK_PATH, ALIAS_PATH)


def _logs_finding(facts: dict[str, Any]) -> Finding:
    rows = [
        {"kind": k, "count": facts[k]}
        for k in (
            "processed",
            "signature_failed",
            "sync_crypto",
            "handler_errors",
            "slow",
        )
    ]
    rows += [{"kind": "sample", "count": line[:160]} for line in facts["samples"]]
    bad = facts["sync_crypto"] + facts["signature_failed"] + facts["handler_errors"]
    wall = f"slowest {facts['max_wall_ms'] / 1000:.2f} s"
    if bad or facts["slow"]:
        text = (
            f"{bad} failing webhook line(s) and {facts['slow']} request(s) slower than "
            f"{SLOW_HANDLER_S:g} s of {facts['requests']} ({wall})"
        )
        return Finding("webhook-logs", Status.FAIL, text, rows, facts)
    if not facts["requests"]:
        text = "no webhook request in Workers Logs (no delivery, or logs are off)"
        return Finding("webhook-logs", Status.WARN, text, rows, facts)
    text = f"{facts['requests']} webhook request(s), none failing ({wall})"
    return Finding("webhook-logs", Status.OK, text, rows, facts)


@check("webhook-probe")
def probe_webhook(environment: Environment, path: str = WEBHOOK_PATH) -> Finding:
    """POST a locally signed event the handler ignores; status, body and time.

    Signed with the stripe SDK and the operator's copy of the endpoint's signing
    secret (``STRIPE_WEBHOOK_SECRET`` in the environment's secrets), which is
    never printed. 200 means the Worker's secret matches the endpoint's and the
    check runs; 400 "Invalid signature" means a wrong secret or a broken check.
    """
    secret = environment.secret(SECRET_NAME) or ""
    if not secret:
        where = environment.secrets_file or "the environment"
        return unknown(
            "webhook-probe",
            f"{SECRET_NAME} (the endpoint's signing secret, whsec_...) is not set in "
            f"{where}; copy it from the Stripe Dashboard to probe",
        )
    payload = json.dumps(_probe_event(), separators=(",", ":"))
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    http = platform_http(environment, timeout=_PROBE_TIMEOUT_S)
    started = time.monotonic()
    try:
        response = http.request(
            "POST",
            path,
            content=payload.encode(),
            headers={"Content-Type": "application/json", "stripe-signature": header},
            idempotent=False,
        )
    finally:
        http.close()
    seconds = time.monotonic() - started
    if response.is_success:
        # A healthy handler answers {"received": true}; a success cut short in
        # transit is unreadable, not a pass.
        json_body(response, "platform")
    return _probe_finding(path, response.status_code, response.text[:200], seconds)


def _probe_event() -> dict[str, Any]:
    marker = secrets.token_hex(8)
    return {
        "id": f"evt_runbookprobe{marker}",
        "object": "event",
        "type": PROBE_EVENT_TYPE,
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 0,
        "data": {"object": {"id": f"cus_runbookprobe{marker}", "object": "customer"}},
        "request": {"id": None, "idempotency_key": None},
    }


def _probe_finding(path: str, status: int, body: str, seconds: float) -> Finding:
    row = {
        "path": path,
        "status": status,
        "body": body[:120],
        "seconds": round(seconds, 3),
    }
    facts = {"status_code": status, "body": body, "seconds": seconds}
    if status != 200:
        text = f"POST {path} with a good signature answered {status}: {body[:80]}"
        return Finding("webhook-probe", Status.FAIL, text, [row], facts)
    if seconds > SLOW_HANDLER_S:
        text = f"answered 200 but took {seconds:.2f} s (over {SLOW_HANDLER_S:g} s)"
        return Finding("webhook-probe", Status.WARN, text, [row], facts)
    text = f"a signed test event answered 200 in {seconds:.2f} s"
    return Finding("webhook-probe", Status.OK, text, [row], facts)
