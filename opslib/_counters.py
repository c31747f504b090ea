"""Rate-limit counters in the SESSIONS namespace: read, compare, delete.

The platform keeps every rate-limit counter in SESSIONS as JSON ``{count,
resetAt}`` (resetAt in epoch ms; PLATFORM.md section 4). The gated clearing of
login counters (auth-broken) and of password-reset counters (password-reset)
share these helpers: the plan keeps the values as its before-image, and the
applier refuses when the set of counters or one's window (``resetAt``) changed
since the plan. Nothing needs undoing: deleted counters start again at zero.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._actions import ActionPlan, ActionResult
from ._cloudflare import CloudflareClient
from ._config import Environment

logger = logging.getLogger(__name__)

SESSIONS = "SESSIONS"
KV_SETTLE_S = 10.0


def parse_counter_key(name: str) -> tuple[str, str, str]:
    """Split a counter's key into its kind, the client's IP and the path counted.

    The platform writes ``rate_limit:ip:<ip>:<path with / as _>``,
    ``rate_limit:endpoint:<ip>:<path>`` and ``rate_limit:login:<ip>`` (failed
    logins). An IPv6 address holds colons itself, so the IP is what lies between
    the kind and the path, never one colon-separated field. A key of another kind
    gives its whole rest as the IP and an empty path.
    """
    kind, _, rest = name.removeprefix("rate_limit:").partition(":")
    if kind == "endpoint":
        ip, _, path = rest.partition(":/")
        return kind, ip, "/" + path
    if kind == "ip":
        ip, _, path = rest.rpartition(":")
        return kind, ip, path.replace("_", "/")
    if kind == "login":
        return kind, rest, "/auth/login"
    return kind, rest, ""


def read_counters(environment: Environment, keys: Iterable[str]) -> dict[str, Any]:
    """Read the counters among ``keys`` that exist, decoded (JSON or short text)."""
    namespace_id = environment.kv_namespaces[SESSIONS]
    client = CloudflareClient(environment)
    try:
        found = {k: client.kv_get(namespace_id, k) for k in keys}
    finally:
        client.close()
    return {k: _decoded(v) for k, v in found.items() if v is not None}


def stale_counters(planned: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when the live counters are not the planned ones (keys or windows)."""
    if set(live) != set(planned):
        return True
    return any(_reset_at(live[k]) != _reset_at(planned[k]) for k in live)


def delete_counters(
    environment: Environment, keys: Iterable[str], *, action: str
) -> None:
    """Delete counters from SESSIONS, one KV DELETE each (never retried)."""
    namespace_id = environment.kv_namespaces[SESSIONS]
    client = CloudflareClient(environment)
    try:
        for key in keys:
            logger.info("applying action=%s key=%s", action, key)
            client.kv_delete(namespace_id, key)
    finally:
        client.close()


def wait_until_gone(
    environment: Environment, keys: Iterable[str], *, settle_s: float = KV_SETTLE_S
) -> list[str]:
    """Re-read the counters until none is left or ``settle_s`` passed (KV is
    eventually consistent); return the ones still there."""
    wanted = list(keys)
    stop = time.monotonic() + settle_s
    while True:
        left = sorted(read_counters(environment, wanted))
        if not left or time.monotonic() >= stop:
            return left
        time.sleep(0.5)


def plan_clear_counters(
    environment: Environment,
    *,
    action: str,
    ip: str,
    label: str,
    before: Mapping[str, Any],
    confirm_phrase: str,
) -> ActionPlan:
    """Plan deleting the counters in ``before`` (key to value, the before-image).

    Args:
        environment: where the counters live.
        action: the action name its applier is registered under.
        ip: the client address the counters limit (the plan's target).
        label: what the counters limit, for the summary ("login rate-limit").
        before: the counters read now.
        confirm_phrase: the phrase that authorises the plan.
    """
    return ActionPlan(
        action=action,
        environment=environment.name,
        target=ip,
        summary=f"delete {len(before)} {label} counter(s) of {ip} in SESSIONS",
        changes=tuple(
            {"what": key, "from": value, "to": "(deleted)"}
            for key, value in before.items()
        ),
        before={"ip": ip, "keys": dict(before)},
        undo="none needed: the counters start again at zero with the next request",
        confirm_phrase=confirm_phrase,
    )


def clear_counters(
    plan: ActionPlan, environment: Environment, operator: str, keys: Iterable[str]
) -> ActionResult:
    """Apply a plan of :func:`plan_clear_counters` after re-reading ``keys``.

    Refuses when the live counters are not the planned ones (stale plan).
    """
    live = read_counters(environment, keys)
    if stale_counters(plan.before.get("keys") or {}, live):
        return ActionResult(
            plan,
            "refused",
            f"the counters of {plan.target} changed since the plan (now "
            f"{sorted(live)}): the plan is stale, re-run the runbook",
            operator,
        )
    delete_counters(environment, live, action=plan.action)
    return ActionResult(
        plan,
        "applied",
        f"deleted {len(live)} counter(s) of {plan.target}",
        operator,
        response={"deleted": dict(live)},
    )


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]


def _reset_at(value: Any) -> Any:
    return value.get("resetAt") if isinstance(value, dict) else value
