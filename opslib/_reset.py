"""Checks of the "password reset not working" runbook.

The live reset flow (PLATFORM.md sections 3, 4 and 9): ``POST
/auth/password-reset-request`` always answers 200, stores a 64-hex token in clear
in ``verification_tokens`` (+1 h) and has the Worker post the email to MailChannels
without an API key; a refused send is only logged. The reset page calls ``GET
/auth/verify-reset-token`` on load, then ``POST /auth/password-reset``. Every path
containing ``password-reset`` is limited to 3 requests per hour per IP, with the
counters in the SESSIONS namespace.

The probes use the environment's test account, never a real user: a run requests
one reset for it (one of the IP's 3 per hour on that path), so the test account is
sent one reset email, and leaves that token unused; it expires within the hour.
The counters are read before the probe, and the probe is skipped when one more
request would fill a counter, so repeated runs never lock out the address they
run from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._counters import parse_counter_key
from ._errors import ConfigError
from ._finding import Finding, Status, check, unknown
from ._mailchannels import MailChannelsClient, build_message
from ._resetflow import ResetFlowClient
from ._time import utcnow

logger = logging.getLogger(__name__)

RESET_LIMIT = 3
EMAIL_VARS = (
    "EMAIL_FROM_ADDRESS",
    "EMAIL_FROM_NAME",
    "EMAIL_ADMIN_ADDRESS",
    "EMAIL_REPLY_TO_ADDRESS",
    "FRONTEND_URL",
)
COUNTER_PREFIXES = ("rate_limit:ip:", "rate_limit:endpoint:")
KEYS_SCANNED = 5000
VALUES_READ = 50
# Clock skew allowed between this machine and the platform when matching the token
# the probe's own request created.
TOKEN_SKEW_S = 120


@check("reset-limits")
def check_reset_limits(environment: Environment) -> Finding:
    """Read the password-reset rate-limit counters in SESSIONS; flag full ones.

    Only the first 5,000 keys under each counter prefix are scanned and the first
    50 password-reset counters read; the finding says when it stopped early.
    """
    namespace = environment.kv_namespaces.get("SESSIONS", "")
    client = CloudflareClient(environment)
    try:
        names: list[str] = []
        capped = False
        for prefix in COUNTER_PREFIXES:
            keys = client.kv_list_keys(namespace, prefix=prefix, limit=KEYS_SCANNED)
            capped = capped or len(keys) >= KEYS_SCANNED
            names += [k["name"] for k in keys if "password-reset" in k["name"]]
        counters = [(n, client.kv_get(namespace, n)) for n in names[:VALUES_READ]]
    finally:
        client.close()

    now_ms = utcnow().timestamp() * 1000
    rows = [_counter_row(name, value, now_ms) for name, value in counters if value]
    full = [row for row in rows if row["at_limit"]]
    near = [row for row in rows if row["live"] and row["count"] >= RESET_LIMIT - 1]
    facts = {
        "at_limit": full,
        "near_limit": near,
        "counters": len(names),
        "read": len(rows),
    }
    if capped or len(names) > VALUES_READ:
        facts["stopped_early"] = True
    if full:
        where = ", ".join(sorted({f"{r['ip']} {r['path']}" for r in full}))
        text = f"{len(full)} password-reset counter(s) at the limit of 3/h: {where}"
        return Finding("reset-limits", Status.FAIL, text, full[:10], facts)
    text = f"{len(names)} password-reset counter(s), none at the limit"
    if facts.get("stopped_early"):
        text += f" (scan stopped early: {len(rows)} read)"
    return Finding("reset-limits", Status.OK, text, rows[:10], facts)


@check("email-vars")
def check_email_vars(environment: Environment) -> Finding:
    """Check the live Worker's plain_text vars the reset email is built from."""
    client = CloudflareClient(environment)
    try:
        bindings = client.get_settings().get("bindings") or []
    finally:
        client.close()

    plain = {
        b.get("name"): str(b.get("text") or "")
        for b in bindings
        if b.get("type") == "plain_text"
    }
    rows = [
        {"var": n, "set": bool(plain.get(n)), "value": plain.get(n)} for n in EMAIL_VARS
    ]
    missing = [n for n in EMAIL_VARS if not plain.get(n)]
    facts: dict[str, Any] = {
        "missing": missing,
        "from_address": plain.get("EMAIL_FROM_ADDRESS", ""),
        "from_name": plain.get("EMAIL_FROM_NAME", ""),
        "frontend_url": plain.get("FRONTEND_URL", ""),
    }
    if missing:
        text = f"the live Worker lacks {', '.join(missing)}"
        return Finding("email-vars", Status.FAIL, text, rows, facts)
    if not plain["FRONTEND_URL"].startswith("https://"):
        text = f"FRONTEND_URL is {facts['frontend_url']!r}; reset links need https"
        return Finding("email-vars", Status.WARN, text, rows, facts)
    return Finding("email-vars", Status.OK, "all 5 email vars are set", rows, facts)


@check("mail-provider")
def check_mail_provider(
    environment: Environment, *, sender: str = "", recipient: str = ""
) -> Finding:
    """Dry-run a send to MailChannels the way the Worker sends: without a key.

    Args:
        environment: where MailChannels is (``mailchannels_url``).
        sender: the From address; the Worker's EMAIL_FROM_ADDRESS when known.
        recipient: defaults to the environment's test account. A dry run renders
            the message and delivers nothing.
    """
    recipient = recipient or environment.test_account_email
    if not recipient:
        return unknown("mail-provider", "no recipient: set test_account_email")
    message = build_message(
        sender=sender or recipient,
        recipient=recipient,
        subject="Runbook probe: password reset (dry run)",
        text="Dry run by the password-reset runbook; nothing is delivered.",
    )
    try:
        client = MailChannelsClient(environment)
    except ConfigError as error:
        return unknown("mail-provider", str(error))
    try:
        answer = client.send(message, dry_run=True)
    finally:
        client.close()

    rows = [
        {"call": "send?dry-run=true", "api_key": "none", "status": answer.status_code}
    ]
    facts = {"status_code": answer.status_code, "errors": list(answer.errors)}
    if answer.is_accepted:
        text = "MailChannels accepts an unauthenticated dry-run send"
        return Finding("mail-provider", Status.OK, text, rows, facts)
    if answer.is_refused:
        text = f"MailChannels refuses the Worker's keyless sends ({answer.reason})"
        return Finding("mail-provider", Status.FAIL, text, rows, facts)
    if answer.status_code >= 500 or answer.status_code == 429:
        # Overloaded or throttling: says nothing about the Worker's sends.
        return unknown("mail-provider", f"MailChannels failed: {answer.reason}")
    text = f"MailChannels rejects the message ({answer.reason})"
    return Finding("mail-provider", Status.WARN, text, rows, facts)


@check("reset-request")
def probe_reset_request(
    environment: Environment, limits: Finding | None = None
) -> Finding:
    """Request a password reset for the test account; healthy answers 200.

    Args:
        environment: where the platform runs.
        limits: the counters read before this probe (:func:`check_reset_limits`).
            When one more request would fill a counter, the probe is skipped: it
            would spend the limit it is meant to diagnose.
    """
    email = environment.test_account_email
    if not email:
        return unknown("reset-request", "no test account: set test_account_email")
    skipped = _skip_reason(limits)
    if skipped is not None:
        return skipped
    requested_at = int(utcnow().timestamp())
    client = ResetFlowClient(environment)
    try:
        answer = client.request_reset(email)
    finally:
        client.close()

    rows = [{"path": "/auth/password-reset-request", "status": answer.status_code}]
    facts = {
        "status_code": answer.status_code,
        "rate_limited": answer.status_code == 429,
        "requested_at": requested_at,
        "email": email,
    }
    if answer.status_code == 200:
        text = "the reset request answers 200"
        return Finding("reset-request", Status.OK, text, rows, facts)
    detail = answer.error or str(answer.payload.get("message") or "")
    text = f"the reset request answers {answer.status_code}: {detail}"
    return Finding("reset-request", Status.FAIL, text, rows, facts)


@check("reset-tokens")
def check_reset_tokens(environment: Environment, email: str = "") -> Finding:
    """Show the user's newest verification_tokens rows: issued, used or expired.

    Args:
        environment: where D1 is.
        email: the affected user; the test account when empty.
    """
    email = (email or environment.test_account_email).strip().lower()
    client = CloudflareClient(environment)
    try:
        user = _first(
            client, "SELECT id, email_verified FROM users WHERE email = ?", email
        )
        tokens = []
        if user:
            tokens = client.d1_query(
                "SELECT token_type, used, created_at, expires_at FROM "
                "verification_tokens WHERE user_id = ? ORDER BY created_at DESC "
                "LIMIT 10",
                [user["id"]],
            )[0]["results"]
    finally:
        client.close()

    if not user:
        missing = {"user_id": None, "email": email}
        return Finding("reset-tokens", Status.WARN, f"no user {email}", facts=missing)
    now = int(utcnow().timestamp())
    rows = [_token_row(t, now) for t in tokens]
    resets = [r for r in rows if r["type"] == "password_reset"]
    states = {s: sum(r["state"] == s for r in resets) for s in _STATES}
    facts = {
        "user_id": user["id"],
        "email": email,
        "email_verified": bool(user["email_verified"]),
        "states": states,
    }
    counted = ", ".join(f"{n} {s}" for s, n in states.items())
    text = f"{len(resets)} recent reset token(s) for {email}: {counted}"
    return Finding("reset-tokens", Status.OK, text, rows, facts)


@check("reset-precheck")
def check_reset_precheck(environment: Environment, request: Finding) -> Finding:
    """Find whether the reset page's pre-check consumes the token.

    Takes the token the reset request just created for the test account from D1,
    calls ``GET /auth/verify-reset-token`` with it as the page does, then reads the
    row again: a healthy pre-check leaves ``used`` at 0.
    """
    if request.facts.get("skipped"):
        return unknown("reset-precheck", "skipped: no reset request was made")
    if request.status is not Status.OK:
        return unknown("reset-precheck", "skipped: the reset request did not succeed")
    since = int(request.facts["requested_at"]) - TOKEN_SKEW_S
    client = CloudflareClient(environment)
    flow = ResetFlowClient(environment)
    try:
        token = _fresh_token(client, str(request.facts["email"]), since)
        if token is None:
            return Finding(
                "reset-precheck",
                Status.FAIL,
                "the reset request answered 200 but stored no token",
                facts={"token_issued": False},
            )
        answer = flow.precheck(token)
        used = _first(client, _USED_SQL, token)
    finally:
        flow.close()
        client.close()
    return _precheck_finding(answer.status_code, answer.payload, used)


def _skip_reason(limits: Finding | None) -> Finding | None:
    near = (limits.facts.get("near_limit") or []) if limits is not None else []
    if not near:
        return None
    where = ", ".join(
        sorted({f"{r['ip']} {r['path']} at {r['count']}/{RESET_LIMIT}" for r in near})
    )
    wait = max(int(r["resets_in_min"]) for r in near)
    text = (
        f"skipped: one more reset request would fill a counter ({where}); the "
        f"window resets within {wait} min, re-run after that to probe"
    )
    facts = {"skipped": True, "near_limit": near, "resets_in_min": wait}
    return Finding("reset-request", Status.UNKNOWN, text, near[:10], facts)


_STATES = ("issued", "used", "expired")
_USED_SQL = "SELECT used FROM verification_tokens WHERE token = ?"


def _precheck_finding(
    status: int, payload: Mapping[str, Any], used: Mapping[str, Any] | None
) -> Finding:
    consumed = bool(used and used["used"])
    rows = [
        {
            "call": "GET /auth/verify-reset-token",
            "status": status,
            "valid": payload.get("valid"),
            "used_after": int(consumed),
        }
    ]
    facts = {"token_issued": True, "valid": payload.get("valid"), "consumed": consumed}
    if status == 200 and payload.get("valid") is True and not consumed:
        text = "the pre-check accepts a fresh token and leaves it unused"
        return Finding("reset-precheck", Status.OK, text, rows, facts)
    if consumed:
        text = "the pre-check marks the token used, so the reset submit will fail"
        return Finding("reset-precheck", Status.FAIL, text, rows, facts)
    text = f"the pre-check answers {status} valid={payload.get('valid')!r} for a fresh token"
    return Finding("reset-precheck", Status.WARN, text, rows, facts)


def _fresh_token(client: CloudflareClient, email: str, since: int) -> str | None:
    row = _first(
        client,
        "SELECT t.token FROM verification_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE u.email = ? AND t.token_type = 'password_reset' AND t.used = 0 "
        "AND t.created_at >= ? ORDER BY t.created_at DESC LIMIT 1",
        email,
        since,
    )
    return str(row["token"]) if row else None


def _first(client: CloudflareClient, sql: str, *params: Any) -> dict[str, Any] | None:
    results = client.d1_query(sql, list(params))[0]["results"]
    return results[0] if results else None


def _token_row(token: Mapping[str, Any], now: int) -> dict[str, Any]:
    state = (
        "used"
        if token["used"]
        else "expired"
        if token["expires_at"] <= now
        else "issued"
    )
    return {
        "type": token["token_type"],
        "state": state,
        "created_min_ago": round((now - token["created_at"]) / 60),
        "expires_in_min": round((token["expires_at"] - now) / 60),
    }


def _counter_row(name: str, value: bytes, now_ms: float) -> dict[str, Any]:
    kind, ip, path = parse_counter_key(name)
    try:
        record = json.loads(value)
    except ValueError:
        record = {}
    record = record if isinstance(record, dict) else {}
    count, reset_at = int(record.get("count") or 0), float(record.get("resetAt") or 0)
    live = reset_at > now_ms
    return {
        "kind": kind,
        "ip": ip,
        "path": path,
        "count": count,
        "live": live,
        "at_limit": live and count >= RESET_LIMIT,
        "resets_in_min": max(0, round((reset_at - now_ms) / 60000)) if live else 0,
    }
