"""Affected users of an incident, counted in D1 over the incident's window.

Which users an incident touched depends on what broke, so the count follows the
verdict's runbook: an outage or slow API touched everyone active in the window
(a login, an upload or any audited action); a stuck queue the authors whose
manuscripts waited; a password-reset fault the users who asked for a reset;
payments the users whose subscription or payment rows changed. Sessions live in
KV, not D1 (PLATFORM.md section 1), so activity comes from ``users.last_login``,
``audit_log`` and ``manuscripts.uploaded_at``. Each count is one SELECT, shown
in the report with its method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._dbwrite import run_select
from ._finding import Finding, Status, check

ACTIVE_USERS_SQL = (
    "SELECT COUNT(*) AS affected FROM (SELECT id AS user_id FROM users "
    "WHERE last_login BETWEEN :start AND :end "
    "UNION SELECT user_id FROM audit_log WHERE timestamp BETWEEN :start AND :end "
    "AND user_id <> 'anonymous' "
    "UNION SELECT user_id FROM manuscripts WHERE uploaded_at BETWEEN :start AND :end)"
)
QUEUED_AUTHORS_SQL = (
    "SELECT COUNT(DISTINCT user_id) AS affected FROM manuscripts "
    "WHERE status IN ('queued', 'analyzing', 'failed') "
    "AND uploaded_at BETWEEN :since AND :end"
)
QUEUE_RETENTION_S = 4 * 24 * 3600
RESET_USERS_SQL = (
    "SELECT COUNT(DISTINCT user_id) AS affected FROM verification_tokens "
    "WHERE token_type = 'password_reset' AND created_at BETWEEN :start AND :end"
)
PAYING_USERS_SQL = (
    "SELECT COUNT(*) AS affected FROM (SELECT user_id FROM subscriptions "
    "WHERE plan_type <> 'free' AND updated_at BETWEEN :start AND :end "
    "UNION SELECT user_id FROM payment_history WHERE created_at BETWEEN :start AND :end)"
)
TOTAL_USERS_SQL = "SELECT COUNT(*) AS total FROM users"


@dataclass(frozen=True)
class Method:
    """How affected users are counted for one kind of incident."""

    who: str
    sql: str


_ACTIVE = Method(
    "users active in the window (login, audited action or upload)", ACTIVE_USERS_SQL
)
METHODS: Mapping[str, Method] = {
    "api-down": _ACTIVE,
    "auth-broken": _ACTIVE,
    "high-error-rate": _ACTIVE,
    "slow-responses": _ACTIVE,
    "queue-delays": Method(
        "authors whose manuscript is still queued, analyzing or failed, uploaded "
        "from the queues' 4-day retention before the window to its end",
        QUEUED_AUTHORS_SQL,
    ),
    "password-reset": Method(
        "users who asked for a password reset in the window", RESET_USERS_SQL
    ),
    "stripe-webhooks": Method(
        "users whose paid subscription row or payment changed in the window",
        PAYING_USERS_SQL,
    ),
    "payment-without-subscription": Method(
        "users whose paid subscription row or payment changed in the window",
        PAYING_USERS_SQL,
    ),
}


@check("affected-users")
def count_affected_users(
    environment: Environment, runbooks: Sequence[str], start: float, end: float
) -> Finding:
    """Count the users each runbook's method finds in ``[start, end]`` (epoch s).

    The evidence has one row per method; facts hold the largest count (the
    methods overlap, so they are not added) and its share of all users.
    """
    methods = list(dict.fromkeys(METHODS.get(rb, _ACTIVE) for rb in runbooks)) or [
        _ACTIVE
    ]
    client = CloudflareClient(environment)
    try:
        total = int(run_select(client, TOTAL_USERS_SQL, [])[0]["total"])
        rows = [_count(client, m, start, end) for m in methods]
    finally:
        client.close()
    affected = max(row["affected"] for row in rows)
    share = affected / total if total else 0.0
    facts: dict[str, Any] = {"affected": affected, "total": total, "share": share}
    text = f"{affected} of {total} users ({share:.1%}) by the widest method"
    return Finding("affected-users", Status.OK, text, rows, facts)


def _count(
    client: CloudflareClient, method: Method, start: float, end: float
) -> dict[str, Any]:
    bounds = {"start": start, "end": end, "since": start - QUEUE_RETENTION_S}
    sql, values = _positional(method.sql, {k: int(v) for k, v in bounds.items()})
    found = run_select(client, sql, values)
    return {
        "method": method.who,
        "affected": int(found[0]["affected"]),
        "sql": method.sql,
    }


def _positional(sql: str, values: Mapping[str, int]) -> tuple[str, list[int]]:
    """Turn ``:name`` placeholders into ``?`` with their values in order."""
    params: list[int] = []
    out = sql
    while True:
        positions = {name: out.find(f":{name}") for name in values}
        found = {n: p for n, p in positions.items() if p >= 0}
        if not found:
            return out, params
        name = min(found, key=lambda n: found[n])
        params.append(values[name])
        out = out.replace(f":{name}", "?", 1)
