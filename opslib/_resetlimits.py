"""Gated clearing of one IP's password-reset rate-limit counters.

The global middleware allows 3 requests an hour per IP on any path containing
``password-reset`` and 3 an hour on the endpoint ``/auth/password-reset-request``
(PLATFORM.md section 4); its counters live in SESSIONS under
``rate_limit:ip:<ip>:<path with / as _>`` and ``rate_limit:endpoint:<ip>:<path>``.
The action ``clear-reset-limits`` deletes that IP's counters of both reset
paths. The before-image is the keys and values deleted; no undo is needed, since
the counters start again at zero with the next request. The applier re-reads
the counters first and refuses a stale plan (other keys, or a new window), then
re-reads them until they are gone, as its follow-up check.

:func:`plan_reset_repair` picks the repair the password-reset verdict offers:
this one, or the manual reset of ``_resetaction``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._config import Environment
from ._counters import (
    clear_counters,
    plan_clear_counters,
    read_counters,
    wait_until_gone,
)
from ._finding import Finding, Status
from ._resetaction import plan_password_reset
from ._resetverdict import clear_reset_limits_phrase
from ._verdict import Verdict

CLEAR_RESET = "clear-reset-limits"
RESET_PATHS = ("/auth/password-reset-request", "/auth/password-reset")


def reset_counter_keys(ip: str) -> tuple[str, ...]:
    """The SESSIONS keys that limit password-reset requests from ``ip``."""
    by_ip = tuple(f"rate_limit:ip:{ip}:{p.replace('/', '_')}" for p in RESET_PATHS)
    return by_ip + tuple(f"rate_limit:endpoint:{ip}:{p}" for p in RESET_PATHS)


def plan_reset_repair(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan the repair a password-reset verdict offers, or no action.

    Args:
        environment: where the platform runs.
        verdict: the password-reset verdict.

    Returns:
        The clearing of the full counters for a rate-limited reset, the manual
        reset when the verdict offers it, else a no-op plan.
    """
    step = verdict.gated_step or {}
    if step.get("action") == CLEAR_RESET:
        return plan_clear_reset_limits(environment, str(step["ip"]))
    return plan_password_reset(environment, verdict)


def plan_clear_reset_limits(environment: Environment, ip: str) -> ActionPlan:
    """Plan deleting the password-reset counters of ``ip``; their values are the
    before-image. No counter left is a no-op plan."""
    before = read_counters(environment, reset_counter_keys(ip))
    if not before:
        return ActionPlan(
            "none", environment.name, ip, f"no password-reset counter of {ip} left"
        )
    return plan_clear_counters(
        environment,
        action=CLEAR_RESET,
        ip=ip,
        label="password-reset",
        before=before,
        confirm_phrase=clear_reset_limits_phrase(environment, ip),
    )


def _apply_clear_reset(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    keys = reset_counter_keys(plan.target)
    result = clear_counters(plan, environment, operator, keys)
    if result.outcome != "applied":
        return result
    return replace(result, after=_gone_check(environment, plan.target, keys))


def _gone_check(environment: Environment, ip: str, keys: tuple[str, ...]) -> Finding:
    left = wait_until_gone(environment, keys)
    rows: list[dict[str, Any]] = [{"key": k, "present": k in left} for k in keys]
    if left:
        return Finding(
            "repair-check", Status.FAIL, f"still present: {', '.join(left)}", rows
        )
    text = f"no password-reset counter left for {ip}"
    return Finding("repair-check", Status.OK, text, rows)


register_applier(CLEAR_RESET, _apply_clear_reset)
