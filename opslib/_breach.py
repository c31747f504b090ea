"""Reads of the security-breach procedure: secrets, sessions, resets, evidence.

What the platform really offers (PLATFORM.md sections 2 and 4) decides each step:

- Secrets are the Worker's ``ANTHROPIC_API_KEY``, ``JWT_SECRET``,
  ``STRIPE_SECRET_KEY`` and ``STRIPE_WEBHOOK_SECRET``. Rotating ``JWT_SECRET``
  logs nobody out: the live login uses cookie sessions in KV, not JWTs.
- Sessions live only in KV ``SESSIONS`` as ``session:<uuid>``, where the uuid is
  the cookie's value: a session key's name is itself a credential. Reads here
  count them and never show a name.
- There is no forced password reset: no column marks an account as needing a
  new password, and a password change does not end sessions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._counters import SESSIONS
from ._finding import Finding, Status, check
from ._time import parse_duration, parse_timestamp

logger = logging.getLogger(__name__)

SESSION_PREFIX = "session:"
WORKER_SECRETS: Mapping[str, str] = {
    "ANTHROPIC_API_KEY": (
        "create a new key in the Anthropic console, put it, then revoke the old one"
    ),
    "JWT_SECRET": (
        "any long random value; logs nobody out (cookie sessions do not use it); "
        "only the unrouted JWT paths and email-preference tokens read it"
    ),
    "STRIPE_SECRET_KEY": (
        "roll the key in the Stripe Dashboard (Developers, API keys), put the new "
        "one; the old one stops at the expiry you chose when rolling"
    ),
    "STRIPE_WEBHOOK_SECRET": (
        "roll the endpoint's signing secret in Stripe first (it can keep the old "
        "one valid for up to 24 h), then put the new whsec_ value"
    ),
}
OUTSIDE_WORKER = (
    "CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID (GitHub Actions deploy "
    "secrets), the R2 API token's S3 keys, the Stripe restricted key opslib uses, "
    "the MailChannels key if any: rotate them where they are issued"
)


@check("worker-secrets")
def check_worker_secrets(environment: Environment) -> Finding:
    """The Worker's secrets (names only), each with how to rotate it, in order.

    A secret the environment expects but the Worker lacks is a warning; one the
    Worker has that the platform does not know is listed too (rotate or remove).
    """
    client = CloudflareClient(environment)
    try:
        live = {s["name"] for s in client.list_secrets()}
    finally:
        client.close()
    names = sorted(live | set(environment.required_secrets) | set(WORKER_SECRETS))
    rows = [
        {
            "name": name,
            "on_worker": name in live,
            "how": WORKER_SECRETS.get(
                name, "unknown to the platform: rotate or remove"
            ),
        }
        for name in names
    ]
    absent = [name for name in names if name not in live]
    status = Status.WARN if absent else Status.OK
    summary = f"{len(live)} secrets on the Worker to rotate one by one"
    if absent:
        summary += f"; not set: {', '.join(absent)}"
    facts = {"live": sorted(live), "absent": absent, "outside_worker": OUTSIDE_WORKER}
    return Finding("worker-secrets", status, summary, rows, facts)


def list_session_keys(environment: Environment) -> list[str]:
    """Every ``session:`` key name in SESSIONS (credentials: never print them)."""
    client = CloudflareClient(environment)
    try:
        keys = client.kv_list_keys(
            environment.kv_namespaces[SESSIONS], prefix=SESSION_PREFIX, limit=1_000_000
        )
    finally:
        client.close()
    return sorted(str(k["name"]) for k in keys)


@check("sessions")
def check_sessions(environment: Environment) -> Finding:
    """How many sessions are live in KV (a count; the key names are credentials)."""
    keys = list_session_keys(environment)
    summary = f"{len(keys)} live sessions in SESSIONS"
    return Finding("sessions", Status.OK, summary, facts={"count": len(keys)})


@check("password-resets")
def check_password_reset_support(environment: Environment) -> Finding:
    """What the platform offers to force new passwords: nothing of its own.

    No column marks an account as needing a new password, a password change
    leaves sessions alive, and the emailed reset link fails as committed (its
    page spends the token on a pre-check). Overwriting hashes would lock
    everyone out of a reset path that does not work, so no gated step is
    offered; purge the sessions and ask users to reset through the page that
    posts directly (``frontend/password-reset.html``).
    """
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(
            "SELECT COUNT(*) AS users, SUM(role = 'admin') AS admins FROM users"
        )[0]["results"]
    finally:
        client.close()
    users, admins = int(rows[0]["users"] or 0), int(rows[0]["admins"] or 0)
    summary = (
        "the platform has no forced password reset: purge the sessions, then ask "
        f"the {users} users (first the {admins} admins) to reset their password"
    )
    return Finding(
        "password-resets",
        Status.WARN,
        summary,
        facts={"supported": False, "users": users, "admins": admins},
    )


@check("evidence")
def collect_evidence(environment: Environment, lookback: str = "7d") -> Finding:
    """Evidence to keep in the record: deployments, audit log, logins, admins.

    Each row names a query and what it returned within ``lookback``; together
    with the record's timings they date what happened. Addresses are
    pseudonymised in the record.
    """
    since = int(time.time() - parse_duration(lookback).total_seconds())
    client = CloudflareClient(environment)
    try:
        rows = [_deployments(client, since)]
        rows += [_count(client, name, sql, since) for name, sql in _EVIDENCE_SQL]
    finally:
        client.close()
    summary = (
        f"{len(rows)} evidence queries over the last {lookback} kept in the record"
    )
    return Finding("evidence", Status.OK, summary, rows, {"since": since})


_AUDIT_SQL = (
    "SELECT COUNT(*) AS n, GROUP_CONCAT(DISTINCT action) AS detail "
    "FROM audit_log WHERE timestamp >= ?"
)
_LOGINS_SQL = (
    "SELECT COUNT(*) AS n, MAX(last_login) AS detail FROM users WHERE last_login >= ?"
)
_ADMINS_SQL = (
    "SELECT COUNT(*) AS n, GROUP_CONCAT(id) AS detail FROM users "
    "WHERE role = 'admin' AND created_at >= ?"
)
_REGISTRATIONS_SQL = (
    "SELECT COUNT(*) AS n, MAX(created_at) AS detail FROM users WHERE created_at >= ?"
)
_EVIDENCE_SQL = (
    ("audit_log entries", _AUDIT_SQL),
    ("logins (users.last_login)", _LOGINS_SQL),
    ("admin accounts created", _ADMINS_SQL),
    ("registrations", _REGISTRATIONS_SQL),
)


def _count(client: CloudflareClient, name: str, sql: str, since: int) -> dict[str, Any]:
    row = client.d1_query(sql, [since])[0]["results"][0]
    return {"evidence": name, "count": row["n"], "detail": str(row["detail"] or "")}


def _deployments(client: CloudflareClient, since: int) -> dict[str, Any]:
    recent = [
        d
        for d in client.list_deployments()
        if _epoch(str(d.get("created_on") or "")) >= since
    ]
    detail = ", ".join(
        f"{d.get('created_on')} by {d.get('author_email') or '?'}"
        f" ({(d.get('annotations') or {}).get('workers/triggered_by') or '?'})"
        for d in recent[:10]
    )
    return {"evidence": "Worker deployments", "count": len(recent), "detail": detail}


def _epoch(text: str) -> float:
    try:
        return parse_timestamp(text).timestamp()
    except ValueError:
        return 0.0
