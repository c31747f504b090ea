"""Checks of the "authentication broken" runbook.

Logins are cookie sessions stored in the SESSIONS KV namespace (PLATFORM.md
section 4); JWT plays no part in them. So the runbook writes and reads SESSIONS
through the Cloudflare KV API, logs in as the dedicated test account, checks the
session cookie's attributes and the CORS preflight of every origin the
environment says must be allowed, reads the login rate-limit counters, looks for
unverified accounts among recent failed logins, and reports whether JWT_SECRET is
set (which matters only to the few routes that verify Bearer tokens).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ._authprobe import AuthProbeClient
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._counters import parse_counter_key
from ._errors import APIError, ServiceError
from ._finding import Finding, Status, check, unknown
from ._time import parse_duration, utcnow

logger = logging.getLogger(__name__)

PASSWORD_VARIABLE = "RUNBOOK_TEST_ACCOUNT_PASSWORD"
SESSIONS = "SESSIONS"
PROBE_PREFIX = "runbook-probe:"
PROBE_TTL_S = 60
READ_DEADLINE_S = 10.0
# What the platform's login sets (PLATFORM.md section 4), attribute by attribute.
EXPECTED_COOKIE = {
    "path": "/",
    "domain": ".example.com",
    "httponly": "true",
    "secure": "true",
    "samesite": "None",
    "max-age": "1800",
}
UNLISTED_ORIGIN = "https://unlisted-origin.invalid"
# Login limits per IP: failed logins per 5 min, and all attempts per 15 min.
LOGIN_LIMIT = 5
LOGIN_WINDOW_S = 900
# Login attempts one run of the probe adds to the counters of its own address.
PROBE_ATTEMPTS = 1
MAX_COUNTERS_READ = 100
UNVERIFIED_ALARM = 3


@check("sessions-kv")
def check_sessions_kv(
    environment: Environment, *, deadline_s: float = READ_DEADLINE_S
) -> Finding:
    """Write a probe key with a TTL into SESSIONS, read it back, delete it.

    KV is eventually consistent, so the read is retried until ``deadline_s``; a
    value still unseen then is a warning, not a failure. A refused write or
    delete is a failure: the platform cannot create sessions or count logins.
    """
    namespace_id = environment.kv_namespaces.get(SESSIONS, "")
    key, value = f"{PROBE_PREFIX}{uuid.uuid4()}", utcnow().isoformat().encode()
    client = CloudflareClient(environment)
    try:
        steps = _kv_round_trip(client, namespace_id, key, value, deadline_s)
    finally:
        client.close()

    rows = [{"step": s, "result": r} for s, r in steps.items()]
    failed = {s: r for s, r in steps.items() if r not in ("ok", "not visible yet")}
    facts = {"namespace_id": namespace_id, "failed": list(failed), "steps": steps}
    if failed:
        step, reason = next(iter(failed.items()))
        return Finding(
            "sessions-kv", Status.FAIL, f"SESSIONS {step} fails: {reason}", rows, facts
        )
    if steps.get("read") != "ok":
        text = f"probe key written but not readable within {deadline_s:g} s"
        return Finding("sessions-kv", Status.WARN, text, rows, facts)
    text = "SESSIONS accepts a write, reads it back and deletes it"
    return Finding("sessions-kv", Status.OK, text, rows, facts)


def _kv_round_trip(
    client: CloudflareClient, namespace_id: str, key: str, value: bytes, deadline: float
) -> dict[str, str]:
    steps: dict[str, str] = {}
    try:
        client.kv_put(namespace_id, key, value, ttl=PROBE_TTL_S)
    except APIError as error:
        _raise_unless_kv_alone(client, namespace_id, error)
        return {"write": str(error)}
    steps["write"] = "ok"
    steps["read"] = _read_until(client, namespace_id, key, value, deadline)
    try:
        client.kv_delete(namespace_id, key)
        steps["delete"] = "ok"
    except APIError as error:
        steps["delete"] = f"{error} (the key expires by itself in {PROBE_TTL_S} s)"
    return steps


def _raise_unless_kv_alone(
    client: CloudflareClient, namespace_id: str, error: APIError
) -> None:
    """Re-raise a refused write that says nothing about the namespace itself.

    An answer that could not be read (a 2xx whose body is not JSON), or a 5xx
    while the same API fails a read of the namespace too, is the Cloudflare API
    failing, not KV refusing writes: the check cannot tell, so it is unknown.
    """
    status = error.status_code
    if status is not None and 200 <= status < 300:
        raise error
    if status is None or status >= 500:
        client.kv_list_keys(namespace_id, prefix=PROBE_PREFIX, limit=1)


def _read_until(
    client: CloudflareClient, namespace_id: str, key: str, value: bytes, deadline: float
) -> str:
    stop = time.monotonic() + deadline
    while True:
        try:
            seen = client.kv_get(namespace_id, key)
        except APIError as error:
            return str(error)
        if seen == value:
            return "ok"
        if time.monotonic() >= stop:
            return "not visible yet"
        time.sleep(0.5)


@check("login")
def probe_login(environment: Environment, limits: Finding | None = None) -> Finding:
    """Log in as the test account, use the session once, and log out.

    The password comes from ``RUNBOOK_TEST_ACCOUNT_PASSWORD``, never from a
    parameter; the cookie's value is never shown. Each run spends one of the five
    login attempts per 15 minutes the platform allows per IP address, so with
    ``limits`` (the counters read before probing) the probe is skipped when one
    more attempt from its own address would reach the limit: the runbook must
    not lock out the engineer running it, nor the users behind the same address.
    Its own addresses are those of the test account's logins in the window.
    """
    email = environment.test_account_email
    password = environment.secret(PASSWORD_VARIABLE)
    if not email or not password:
        missing = "test_account_email in the environment file" if not email else ""
        missing = missing or f"the variable {PASSWORD_VARIABLE}"
        return unknown("login", f"cannot log in: set {missing}")
    if limits is not None:
        skipped = _skip_when_spent(environment, email, limits)
        if skipped is not None:
            return skipped
    client = AuthProbeClient(environment)
    try:
        probe = client.login(email, password)
    finally:
        client.close()

    row = {
        "login": probe.status_code,
        "error": probe.error,
        "cookie_set": bool(probe.cookie),
        "me": probe.me_status,
        "logout": probe.logout_status,
        "latency_ms": round(probe.elapsed_ms),
    }
    facts: dict[str, Any] = {**row, "cookie": dict(probe.cookie)}
    facts["rate_limit"] = dict(probe.rate_limit)
    facts["attempts_added"] = PROBE_ATTEMPTS
    spent = (
        f" (this probe added {PROBE_ATTEMPTS} login attempt to its address's "
        f"{LOGIN_LIMIT} per {LOGIN_WINDOW_S // 60} minutes)"
    )
    if probe.status_code is None:
        return Finding(
            "login", Status.UNKNOWN, f"no answer: {probe.error}", [row], facts
        )
    if not probe.readable:
        # Shaped as the unknown of any check whose answer could not be read, so
        # the advice after it says the platform failed on its side.
        facts.update(error="APIError", status_code=probe.status_code)
        facts["reason"] = probe.error
        text = f"login not judged: {probe.error}"
        return Finding("login", Status.UNKNOWN, text + spent, [row], facts)
    if probe.status_code == 200 and probe.cookie and probe.me_status == 200:
        text = "the test account logs in, and the session works for /auth/me"
        return Finding("login", Status.OK, text + spent, [row], facts)
    text = f"login answers {probe.status_code}"
    text += f" ({probe.error})" if probe.error else ""
    if probe.status_code == 200:
        text += f"; /auth/me with the new session answers {probe.me_status}"
    return Finding("login", Status.FAIL, text + spent, [row], facts)


def _skip_when_spent(
    environment: Environment, email: str, limits: Finding
) -> Finding | None:
    """A skipped-probe finding when one more attempt would reach the limit."""
    attempts: Mapping[str, Mapping[str, Any]] = limits.facts.get("attempts") or {}
    if not attempts:
        return None
    try:
        recent = _probe_logins(environment, email)
    except ServiceError as error:
        logger.warning("probe addresses unknown, guarding every address: %s", error)
        recent = []
    own = {r["ip"] for r in recent} if recent else set(attempts)
    near = {
        ip: a
        for ip, a in attempts.items()
        if ip in own and a["count"] + PROBE_ATTEMPTS >= LOGIN_LIMIT
    }
    if not near:
        return None
    ip = max(near, key=lambda i: near[i]["resets_in_s"])
    wait_s = int(near[ip]["resets_in_s"])
    last_ok = bool(recent) and recent[0]["action"] == "login"
    rows = [{"ip": i, **a, "limit": LOGIN_LIMIT} for i, a in near.items()]
    facts = {
        "skipped": True,
        "ips": sorted(near),
        "resets_in_s": wait_s,
        "attempts_added": 0,
        "last_probe_ok": last_ok,
    }
    text = (
        f"login probe skipped: {near[ip]['count']} of {LOGIN_LIMIT} login attempts "
        f"from {ip} in this window, and the probe adds {PROBE_ATTEMPTS}, which would "
        f"lock this address out; the window resets in {_minutes(wait_s)}"
    )
    if last_ok:
        text += "; the test account's last login from it succeeded"
    status = Status.WARN if last_ok else Status.UNKNOWN
    return Finding("login", status, text, rows, facts)


def _probe_logins(environment: Environment, email: str) -> list[dict[str, Any]]:
    """The test account's logins in the window, newest first: the probe's own."""
    since = int(utcnow().timestamp()) - LOGIN_WINDOW_S
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(
            "SELECT a.ip_address AS ip, a.action, a.timestamp FROM audit_log a "
            "JOIN users u ON u.id = a.user_id WHERE u.email = ? "
            "AND a.action IN ('login', 'login_failed') AND a.timestamp >= ? "
            "ORDER BY a.timestamp DESC LIMIT 50",
            [email, since],
        )[0]["results"]
    finally:
        client.close()
    return [dict(r) for r in rows if r.get("ip")]


def _minutes(seconds: int) -> str:
    return f"{max(1, round(seconds / 60))} min" if seconds > 0 else "now"


def check_session_cookie(login: Finding) -> Finding:
    """Compare the session cookie's attributes with what the platform should set.

    Args:
        login: the finding of :func:`probe_login`, whose facts hold the attributes.
    """
    started = time.monotonic()
    cookie: Mapping[str, str] = login.facts.get("cookie") or {}
    if login.facts.get("skipped"):
        return unknown("cookie", "not inspected: the login probe was skipped")
    if not cookie:
        text = "no session cookie to inspect (the login did not set one)"
        return unknown("cookie", text)
    rows = [
        {"attribute": name, "expected": want, "seen": cookie.get(name, "(absent)")}
        for name, want in EXPECTED_COOKIE.items()
    ]
    wrong = [r["attribute"] for r in rows if r["seen"] != r["expected"]]
    facts = {"wrong": wrong}
    elapsed = time.monotonic() - started
    if wrong:
        text = "session cookie attributes differ: " + ", ".join(wrong)
        return Finding("cookie", Status.FAIL, text, rows, facts, elapsed)
    text = "; ".join(f"{name}={value}" for name, value in EXPECTED_COOKIE.items())
    text = f"session cookie as expected: {text}"
    return Finding("cookie", Status.OK, text, rows, facts, elapsed)


@check("cors")
def check_cors(environment: Environment) -> Finding:
    """Preflight a login from each origin the environment says must be allowed.

    Each must come back as its own ``Access-Control-Allow-Origin`` with
    credentials allowed. An unlisted origin must get the first allowed origin
    back: never ``*`` (browsers refuse it with credentials) and never itself.
    """
    wanted = environment.allowed_origins
    if not wanted:
        return unknown("cors", "the environment file names no allowed_origins")
    client = AuthProbeClient(environment)
    try:
        answers = [client.preflight(origin) for origin in (*wanted, UNLISTED_ORIGIN)]
    finally:
        client.close()

    rows = [_preflight_row(a, a.origin == UNLISTED_ORIGIN) for a in answers]
    if all(a.status_code is None for a in answers):
        return unknown("cors", f"no answer from {environment.platform_url}")
    refused = [r["origin"] for r in rows if not r["ok"] and r["origin"] in wanted]
    unlisted_bad = not rows[-1]["ok"]
    facts = {"refused": refused, "unlisted_wrong": unlisted_bad}
    if refused or unlisted_bad:
        parts = [f"not allowed: {', '.join(refused)}"] if refused else []
        parts += [
            f"an unlisted origin gets {rows[-1]['allow_origin']!r}"
        ] * unlisted_bad
        return Finding("cors", Status.FAIL, "; ".join(parts), rows, facts)
    others = rows[-1]["allow_origin"]
    text = f"all {len(wanted)} origins allowed with credentials; others get {others}"
    return Finding("cors", Status.OK, text, rows, facts)


def _preflight_row(answer: Any, unlisted: bool) -> dict[str, Any]:
    allow = answer.allow_origin
    if unlisted:
        good = allow not in (None, "*", answer.origin)
    else:
        good = allow == answer.origin and answer.allow_credentials == "true"
    return {
        "origin": answer.origin,
        "status": answer.status_code,
        "allow_origin": allow,
        "credentials": answer.allow_credentials,
        "ok": bool(
            good and answer.status_code is not None and answer.status_code < 300
        ),
    }


@check("rate-limits")
def check_login_rate_limits(environment: Environment, client_ip: str = "") -> Finding:
    """Read the login rate-limit counters in SESSIONS and name IPs at the limit.

    Three counters gate a login per IP: ``rate_limit:login:<ip>`` (failed logins,
    5 per 5 min), ``rate_limit:ip:<ip>:_auth_login`` and
    ``rate_limit:endpoint:<ip>:/auth/login`` (all attempts, 5 per 15 min). At most
    100 counters are read; ``client_ip`` (an address a user reported) is always
    shown.
    """
    namespace_id = environment.kv_namespaces.get(SESSIONS, "")
    client = CloudflareClient(environment)
    try:
        names = [
            k["name"] for k in client.kv_list_keys(namespace_id, prefix="rate_limit:")
        ]
        counters = [_counter(client, namespace_id, n) for n in _login_keys(names)]
    finally:
        client.close()

    now_ms = utcnow().timestamp() * 1000
    live = [c for c in counters if c and c["reset_at"] > now_ms]
    limited = sorted({c["ip"] for c in live if c["count"] >= LOGIN_LIMIT})
    rows = [
        _counter_row(c, now_ms)
        for c in live
        if c["ip"] in limited or c["ip"] == client_ip
    ]
    facts = {
        "limited_ips": limited,
        "keys": {ip: _keys_of(live, ip) for ip in limited},
        "attempts": _attempts_by_ip(live, now_ms),
    }
    if limited:
        text = f"login limit reached for {len(limited)} IP(s): {', '.join(limited[:5])}"
        return Finding("rate-limits", Status.FAIL, text, rows, facts)
    text = f"no IP at the login limit ({len(live)} live login counters)"
    return Finding("rate-limits", Status.OK, text, rows, facts)


def login_counter_keys(ip: str) -> tuple[str, str, str]:
    """The three KV keys that limit logins from ``ip``."""
    return (
        f"rate_limit:login:{ip}",
        f"rate_limit:ip:{ip}:_auth_login",
        f"rate_limit:endpoint:{ip}:/auth/login",
    )


def _login_keys(names: list[str]) -> list[str]:
    login = [
        n
        for n in names
        if n.startswith("rate_limit:login:")
        or (n.startswith("rate_limit:ip:") and n.endswith(":_auth_login"))
        or (n.startswith("rate_limit:endpoint:") and n.endswith(":/auth/login"))
    ]
    return login[:MAX_COUNTERS_READ]


def _counter(
    client: CloudflareClient, namespace_id: str, key: str
) -> dict[str, Any] | None:
    raw = client.kv_get(namespace_id, key)
    try:
        record = json.loads(raw or b"null")
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    _, ip, _ = parse_counter_key(key)
    return {
        "key": key,
        "ip": ip,
        "count": int(record.get("count", 0)),
        "reset_at": float(record.get("resetAt", 0)),
    }


def _counter_row(counter: Mapping[str, Any], now_ms: float) -> dict[str, Any]:
    return {
        "ip": counter["ip"],
        "key": counter["key"],
        "count": counter["count"],
        "limit": LOGIN_LIMIT,
        "resets_in_s": round((counter["reset_at"] - now_ms) / 1000),
    }


def _attempts_by_ip(
    counters: list[dict[str, Any]], now_ms: float
) -> dict[str, dict[str, int]]:
    """Per IP, its fullest live counter: the count and when its window resets."""
    fullest: dict[str, dict[str, Any]] = {}
    for counter in counters:
        seen = fullest.get(counter["ip"])
        if seen is None or counter["count"] > seen["count"]:
            fullest[counter["ip"]] = counter
    return {
        ip: {
            "count": c["count"],
            "resets_in_s": max(0, round((c["reset_at"] - now_ms) / 1000)),
        }
        for ip, c in fullest.items()
    }


def _keys_of(counters: list[dict[str, Any]], ip: str) -> list[str]:
    return [c["key"] for c in counters if c["ip"] == ip]


@check("unverified")
def check_unverified_logins(environment: Environment, lookback: str = "24h") -> Finding:
    """Find unverified accounts among the failed logins in the lookback window.

    The platform refuses login with 403 until ``users.email_verified`` is 1, and
    it never sends a verification email. A wrong password is audited as
    ``login_failed``; the 403 itself leaves no audit row, so accounts that typed
    the right password are not seen here.
    """
    since = int((utcnow() - parse_duration(lookback)).timestamp())
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(
            "SELECT u.id AS user_id, COUNT(a.id) AS failed_logins, "
            "MAX(a.timestamp) AS last_attempt, u.created_at "
            "FROM audit_log a JOIN users u ON u.id = a.user_id "
            "WHERE a.action = 'login_failed' AND a.timestamp >= ? "
            "AND u.email_verified = 0 GROUP BY u.id "
            "ORDER BY last_attempt DESC LIMIT 20",
            [since],
        )[0]["results"]
    finally:
        client.close()

    now = utcnow()
    evidence = [_unverified_row(r, now.timestamp()) for r in rows]
    facts = {"user_ids": [r["user_id"] for r in rows], "lookback": lookback}
    if not rows:
        text = f"no unverified account among failed logins of the last {lookback}"
        return Finding("unverified", Status.OK, text, evidence, facts)
    status = Status.FAIL if len(rows) >= UNVERIFIED_ALARM else Status.WARN
    text = f"{len(rows)} unverified account(s) failed to log in in the last {lookback}"
    return Finding("unverified", status, text, evidence, facts)


def _unverified_row(row: Mapping[str, Any], now: float) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "failed_logins": row["failed_logins"],
        "last_attempt": f"{timedelta(seconds=int(now - row['last_attempt']))} ago",
        "registered_days_ago": int((now - row["created_at"]) // 86_400),
    }


@check("jwt-secret")
def check_jwt_secret(environment: Environment) -> Finding:
    """Report whether JWT_SECRET is set on the live Worker, and the last secret edit.

    Cookie sessions never read it; only the email-preference endpoints and the
    unrouted JWT password-reset module do. Missing, it is worth restoring, but it
    never explains a failed login.
    """
    client = CloudflareClient(environment)
    try:
        names = {s.get("name") for s in client.list_secrets()}
        deployments = client.list_deployments()
    finally:
        client.close()

    edits = [
        d
        for d in deployments
        if (d.get("annotations") or {}).get("workers/triggered_by") == "secret"
    ]
    last_edit = edits[0].get("created_on") if edits else None
    facts = {"present": "JWT_SECRET" in names, "last_secret_edit": last_edit}
    rows = [
        {
            "secret": "JWT_SECRET",
            "present": facts["present"],
            "last_secret_edit": last_edit,
        }
    ]
    if facts["present"]:
        return Finding("jwt-secret", Status.OK, "JWT_SECRET is set", rows, facts)
    text = "JWT_SECRET is not set on the live Worker"
    text += f" (last secret edit deployed {last_edit})" if last_edit else ""
    return Finding("jwt-secret", Status.WARN, text, rows, facts)
