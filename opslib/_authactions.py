"""Gated repairs of the "authentication broken" runbook.

Two actions, each planned with a before-image and applied only through
:func:`opslib.apply_action`:

* ``clear-rate-limits``: delete the three login counters of one IP from SESSIONS.
  The before-image is the keys and values deleted. Undo is not needed (the
  counters start again at zero), and cannot restore the old counts exactly.
* ``verify-account``: ``UPDATE users SET email_verified = 1 WHERE id = ? AND
  email_verified = 0``, after a SELECT of that row, which is the before-image.

Both appliers re-read the live state first and refuse a stale plan.
"""

from __future__ import annotations

import logging
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._auth import login_counter_keys
from ._authdiagnosis import clear_limits_phrase, verify_account_phrase
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._counters import (
    clear_counters,
    plan_clear_counters,
    read_counters,
    wait_until_gone,
)
from ._finding import Finding, Status, check
from ._verdict import Verdict

logger = logging.getLogger(__name__)

CLEAR = "clear-rate-limits"
VERIFY = "verify-account"
_USER_COLUMNS = "id, email_verified, role, created_at, last_login"


def plan_auth_repair(
    environment: Environment,
    verdict: Verdict,
    *,
    client_ip: str = "",
    user_id: str = "",
) -> ActionPlan:
    """Plan the repair the verdict calls for, or no action.

    Args:
        environment: where the platform runs.
        verdict: the auth-broken verdict.
        client_ip: the IP whose counters to clear, when the verdict names none.
        user_id: the account to mark verified, when the verdict names none.

    The verdict's gated step already names the target asked for (see
    :func:`diagnose_auth_broken`), so the plan and the printed command agree.
    """
    step = verdict.gated_step or {}
    if step.get("action") == CLEAR:
        return plan_clear_rate_limits(environment, step.get("ip") or client_ip)
    if step.get("action") == VERIFY:
        return plan_verify_account(environment, step.get("user_id") or user_id)
    return ActionPlan(
        "none", environment.name, "", f"no repair: the cause is {verdict.cause!r}"
    )


def plan_clear_rate_limits(environment: Environment, ip: str) -> ActionPlan:
    """Plan deleting the login counters of ``ip``, with their values as before-image."""
    return plan_clear_counters(
        environment,
        action=CLEAR,
        ip=ip,
        label="login rate-limit",
        before=_read_counters(environment, ip),
        confirm_phrase=clear_limits_phrase(environment, ip),
    )


def plan_verify_account(environment: Environment, user_id: str) -> ActionPlan:
    """Plan marking one account verified; its row is the before-image.

    The row holds id, email_verified, role, created_at and last_login: never the
    email address or the password hash.
    """
    row = _read_user(environment, user_id)
    if row is None:
        return ActionPlan(
            "none", environment.name, user_id, f"no such user: {user_id!r} in D1"
        )
    if row.get("email_verified") != 0:
        return ActionPlan(
            "none", environment.name, user_id, f"user {user_id!r} is verified already"
        )
    return ActionPlan(
        action=VERIFY,
        environment=environment.name,
        target=user_id,
        summary=f"UPDATE users SET email_verified = 1 WHERE id = {user_id!r}",
        changes=(
            {
                "what": "users.email_verified",
                "from": (row or {}).get("email_verified"),
                "to": 1,
            },
        ),
        before={"row": row},
        undo=f"UPDATE users SET email_verified = 0 WHERE id = '{user_id}'",
        confirm_phrase=verify_account_phrase(environment, user_id),
    )


@check("repair-check")
def verify_auth_repair(environment: Environment, plan: ActionPlan) -> Finding:
    """The follow-up check after a repair: counters gone, or the account verified."""
    if plan.action == CLEAR:
        left = wait_until_gone(environment, login_counter_keys(plan.target))
        rows = [
            {"key": k, "present": k in left} for k in login_counter_keys(plan.target)
        ]
        if left:
            return Finding(
                "repair-check", Status.FAIL, f"still present: {', '.join(left)}", rows
            )
        return Finding(
            "repair-check", Status.OK, f"no login counter left for {plan.target}", rows
        )
    row = _read_user(environment, plan.target) or {}
    verified = row.get("email_verified") == 1
    status = Status.OK if verified else Status.FAIL
    text = f"user {plan.target} email_verified = {row.get('email_verified')}"
    return Finding("repair-check", status, text, [row] if row else [])


def _apply_clear(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    return clear_counters(plan, environment, operator, login_counter_keys(plan.target))


def _apply_verify(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    live = _read_user(environment, plan.target)
    if live is None:
        return ActionResult(
            plan,
            "refused",
            f"no such user: {plan.target!r} is no longer in D1; re-run the runbook",
            operator,
        )
    if live != plan.before.get("row") or live.get("email_verified") != 0:
        return ActionResult(
            plan,
            "refused",
            f"user {plan.target} is now {live!r}, not the planned unverified row: "
            "the plan is stale, re-run the runbook",
            operator,
        )
    client = CloudflareClient(environment)
    try:
        logger.info("applying action=%s user=%s", VERIFY, plan.target)
        meta = (
            client.d1_query(
                "UPDATE users SET email_verified = 1 "
                "WHERE id = ? AND email_verified = 0",
                [plan.target],
                read_only=False,
            )[0].get("meta")
            or {}
        )
    finally:
        client.close()
    changes = meta.get("changes")
    if changes != 1:
        return ActionResult(
            plan, "failed", f"the UPDATE changed {changes} rows, expected 1", operator
        )
    return ActionResult(
        plan,
        "applied",
        f"user {plan.target} is marked verified",
        operator,
        response={"changes": changes},
    )


def _read_counters(environment: Environment, ip: str) -> dict[str, Any]:
    return read_counters(environment, login_counter_keys(ip))


def _read_user(environment: Environment, user_id: str) -> dict[str, Any] | None:
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", [user_id]
        )[0]["results"]
    finally:
        client.close()
    return dict(rows[0]) if rows else None


register_applier(CLEAR, _apply_clear)
register_applier(VERIFY, _apply_verify)
