"""The gated repair: create or correct one subscription's row from Stripe.

The runbook's own SQL is wrong for this platform (``plan_id``, 'basic', a made-up
period); the row written here has the platform's columns: ``plan_type`` (pro or
enterprise), Stripe's real subscription and customer ids, Stripe's status, its
periods and ``cancel_at_period_end``, and times in seconds. The same batch sets
``users.subscription_tier`` and cancels the user's active free row, so the view
the platform reads shows the paid plan. One D1 ``/query`` batch is the unit of
atomicity; every statement has a WHERE naming the rows of the before-image, and
the batch is refused if the live rows no longer match it.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check
from ._http import json_body
from ._payments import PAID_PLANS, read_rows
from ._paymentverdict import ACTION
from ._platform import platform_http
from ._resetflow import SESSION_COOKIE, ResetFlowClient
from ._verdict import Verdict

logger = logging.getLogger(__name__)

PASSWORD_VARIABLE = "RUNBOOK_TEST_ACCOUNT_PASSWORD"
_INSERT_GUARD = (
    " WHERE NOT EXISTS (SELECT 1 FROM subscriptions WHERE stripe_subscription_id = ?)"
)
_UPDATE_GUARD = (
    " WHERE stripe_subscription_id = ? AND status = ? AND current_period_start = ?"
)
_CANCEL_FREE = (
    "UPDATE subscriptions SET status = 'canceled', updated_at = ? "
    "WHERE id = ? AND plan_type = 'free' AND status = 'active'"
)
_FREE_SQL = (
    "SELECT id, status, updated_at FROM subscriptions "
    "WHERE user_id = ? AND plan_type = 'free' AND status = 'active'"
)
_USER_SQL = "SELECT id, email, subscription_tier FROM users WHERE id = ?"


def plan_subscription_repair(
    environment: Environment, verdict: Verdict, *, user_id: str = ""
) -> ActionPlan:
    """Plan the repair the verdict offers (or no action).

    Args:
        environment: where D1 is.
        verdict: the payment-without-subscription verdict.
        user_id: the user the subscription belongs to, as the users step found
            it; read from the findings when empty.
    """
    step = verdict.gated_step or {}
    if step.get("action") != ACTION:
        reason = f"no repair: the verdict's cause is {verdict.cause!r}"
        return ActionPlan("none", environment.name, "", reason)
    sub_id = str(step["subscription"])
    sub = _stripe_sub(verdict, sub_id)
    user_id = user_id or _user_of(verdict, sub_id)
    if sub is None or not user_id:
        return ActionPlan(
            "none", environment.name, sub_id, "no user found to attach it"
        )
    before = read_before(environment, sub_id, user_id)
    row = row_values(sub, user_id)
    changes = [
        {"what": f"subscriptions[{sub_id}].{k}", "from": _old(before, k), "to": v}
        for k, v in row.items()
        if k not in ("id", "created_at", "updated_at") and _old(before, k) != v
    ]
    changes.append(
        {
            "what": "users.subscription_tier",
            "from": before["user"]["subscription_tier"],
            "to": row["plan_type"],
        }
    )
    changes += [
        {
            "what": f"subscriptions[{r['id']}].status (free)",
            "from": "active",
            "to": "canceled",
        }
        for r in before["free_rows"]
    ]
    return ActionPlan(
        action=ACTION,
        environment=environment.name,
        target=sub_id,
        summary=("insert" if before["row"] == "no row" else "update")
        + f" the row of {sub_id} for user {user_id} ({row['plan_type']})",
        changes=tuple(changes),
        before=before,
        undo=_undo(before, sub_id),
        confirm_phrase=str(step["confirm"]),
    )


def read_before(environment: Environment, sub_id: str, user_id: str) -> dict[str, Any]:
    """The before-image: the subscription row (or "no row"), the user, free rows."""
    row = read_rows(environment, [sub_id]).get(sub_id)
    client = CloudflareClient(environment)
    try:
        users = client.d1_query(_USER_SQL, [user_id])[0]["results"]
        free = client.d1_query(_FREE_SQL, [user_id])[0]["results"]
    finally:
        client.close()
    user = dict(users[0]) if users else {"id": user_id, "subscription_tier": None}
    return {"row": row or "no row", "user": user, "free_rows": [dict(r) for r in free]}


def row_values(sub: dict[str, Any], user_id: str) -> dict[str, Any]:
    """The subscriptions row Stripe's subscription calls for (times in seconds)."""
    now = int(time.time())
    return {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "stripe_subscription_id": sub["id"],
        "stripe_customer_id": sub["customer"],
        "plan_type": sub["plan"] if sub["plan"] in PAID_PLANS else "pro",
        "status": sub["status"],
        "current_period_start": int(sub["start"]),
        "current_period_end": int(sub["end"]),
        "cancel_at_period_end": int(bool(sub["cancel_at_period_end"])),
        "created_at": now,
        "updated_at": now,
    }


def _apply_repair(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    before = dict(plan.before)
    user_id = str(before["user"]["id"])
    live = read_before(environment, plan.target, user_id)
    if _comparable(live) != _comparable(before):
        return ActionResult(
            plan,
            "refused",
            "the rows changed since the plan was made: the plan is stale, re-run the runbook",
            operator,
        )
    values = {
        c["what"].split(".")[-1]: c["to"]
        for c in plan.changes
        if c["what"].startswith(f"subscriptions[{plan.target}]")
    }
    statements = _statements(plan.target, before, values, user_id)
    logger.info("applying action=%s subscription=%s", ACTION, plan.target)
    client = CloudflareClient(environment)
    try:
        results = client.d1_batch(statements)
    finally:
        client.close()
    written = [int((r.get("meta") or {}).get("changes") or 0) for r in results]
    after = verify_shown_plan(
        environment, user_id, str(before["user"].get("email") or "")
    )
    return ActionResult(
        plan,
        "applied",
        f"row of {plan.target} written; rows changed per statement: {written}",
        operator,
        response={"rows_written": written},
        after=after,
    )


def _statements(
    sub_id: str, before: dict[str, Any], values: dict[str, Any], user_id: str
) -> list[tuple[str, list[Any]]]:
    now = int(time.time())
    full = {**_full_row(before, sub_id, user_id), **values, "updated_at": now}
    if before["row"] == "no row":
        columns = list(full)
        marks = ", ".join("?" for _ in columns)
        first = (
            f"INSERT INTO subscriptions ({', '.join(columns)}) SELECT {marks}"
            + _INSERT_GUARD,
            [full[c] for c in columns] + [sub_id],
        )
    else:
        row = before["row"]
        sets = {k: full[k] for k in (*values, "updated_at")}
        first = (
            f"UPDATE subscriptions SET {', '.join(f'{k} = ?' for k in sets)}"
            + _UPDATE_GUARD,
            [*sets.values(), sub_id, row["status"], row["current_period_start"]],
        )
    statements = [first]
    statements.append(
        (
            "UPDATE users SET subscription_tier = ? WHERE id = ?",
            [full["plan_type"], user_id],
        )
    )
    statements += [(_CANCEL_FREE, [now, r["id"]]) for r in before["free_rows"]]
    return statements


@check("shown-plan-after")
def verify_shown_plan(environment: Environment, user_id: str, email: str) -> Finding:
    """Follow-up: the plan the platform shows the user now.

    For the environment's test account, log in and read ``GET
    /payments/subscription`` with its cookie; for any other user, re-read the
    view ``user_subscriptions_with_usage`` the route reads. A platform or API
    that cannot be reached or read makes the follow-up unknown: the write is
    done by then, and its result must still be recorded.
    """
    password = environment.secret(PASSWORD_VARIABLE) or ""
    if email and email.lower() == environment.test_account_email.lower() and password:
        plan = _plan_from_route(environment, email, password)
        where = "GET /payments/subscription"
    else:
        client = CloudflareClient(environment)
        try:
            rows = client.d1_query(
                "SELECT plan_type FROM user_subscriptions_with_usage WHERE user_id = ?",
                [user_id],
            )[0]["results"]
        finally:
            client.close()
        plan = str(rows[0]["plan_type"]) if rows else "none"
        where = "the view user_subscriptions_with_usage"
    ok = plan in PAID_PLANS
    text = f"{where} shows plan {plan!r} for user {user_id}"
    return Finding("shown-plan-after", Status.OK if ok else Status.FAIL, text)


def _plan_from_route(environment: Environment, email: str, password: str) -> str:
    flow = ResetFlowClient(environment)
    http = platform_http(environment)
    try:
        answer, session = flow.login(email, password)
        if not session:
            return f"login answered {answer.status_code}"
        response = http.request(
            "GET",
            "/payments/subscription",
            headers={"Cookie": f"{SESSION_COOKIE}={session}"},
            idempotent=False,
        )
        flow.logout(session)
    finally:
        flow.close()
        http.close()
    body = json_body(response, http.system) if response.status_code == 200 else {}
    body = body if isinstance(body, dict) else {}
    return str((body.get("subscription") or {}).get("planType") or response.status_code)


def _full_row(before: dict[str, Any], sub_id: str, user_id: str) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "stripe_subscription_id": sub_id,
        "created_at": now,
    }
    if isinstance(before["row"], dict):
        return {**base, **before["row"]}
    return base


def _comparable(image: dict[str, Any]) -> tuple[Any, ...]:
    user = image["user"]
    return (
        image["row"],
        user.get("subscription_tier"),
        [r["id"] for r in image["free_rows"]],
    )


def _old(before: dict[str, Any], key: str) -> Any:
    row = before["row"]
    return row.get(key) if isinstance(row, dict) else None


def _stripe_sub(verdict: Verdict, sub_id: str) -> dict[str, Any] | None:
    for finding in verdict.findings:
        if finding.name == "stripe-subscriptions":
            for sub in finding.facts.get("subs") or []:
                if sub["id"] == sub_id:
                    return dict(sub)
    return None


def _user_of(verdict: Verdict, sub_id: str) -> str:
    """The user of ``sub_id``: as the users step resolved it, else its D1 row's."""
    for finding in verdict.findings:
        if finding.name == "subscription-users":
            for user in finding.facts.get("users") or []:
                if user["subscription"] == sub_id and user["exists"]:
                    return str(user["user_id"])
    for finding in verdict.findings:
        if finding.name == "subscription-rows":
            row = (finding.facts.get("rows") or {}).get(sub_id) or {}
            return str(row.get("user_id") or "")
    return ""


def _undo(before: dict[str, Any], sub_id: str) -> str:
    user = before["user"]
    tier = user.get("subscription_tier")
    steps = [f"UPDATE users SET subscription_tier = '{tier}' WHERE id = '{user['id']}'"]
    if before["row"] == "no row":
        steps.insert(
            0, f"DELETE FROM subscriptions WHERE stripe_subscription_id = '{sub_id}'"
        )
    else:
        row = before["row"]
        steps.insert(
            0,
            "UPDATE subscriptions SET "
            + ", ".join(
                f"{k} = {row[k]!r}"
                for k in (
                    "status",
                    "current_period_start",
                    "current_period_end",
                    "cancel_at_period_end",
                )
            )
            + f" WHERE stripe_subscription_id = '{sub_id}'",
        )
    steps += [
        f"UPDATE subscriptions SET status = 'active' WHERE id = '{r['id']}'"
        for r in before["free_rows"]
    ]
    return "; ".join(steps)


register_applier(ACTION, _apply_repair)
