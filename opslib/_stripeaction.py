"""The gated changes of the stripe procedure: refund a charge, cancel a subscription.

A refund moves money back to the customer: Stripe offers no way to take it
back, so its plan says that it cannot be undone, and ``runbook undo`` refuses
it. The amount is checked against the charge first (what is left unrefunded);
the platform records no refunds in D1 (its webhook handles none), so D1 is left
alone.

A cancellation changes Stripe and brings D1's row in line as the platform's own
webhook would: cancelled now, the row's ``status`` becomes ``canceled`` and
``users.subscription_tier`` becomes ``free`` (what the handler of
``customer.subscription.deleted`` writes), unless the user has another active
paid subscription, whose tier stays; at period end, the row gets
``cancel_at_period_end = 1`` and access lasts until the period ends. The
before-image is the Stripe subscription, the whole D1 row and the user's tier;
``runbook undo`` puts the D1 side back. Stripe cannot reactivate a subscription
cancelled now; one set to cancel at period end is resumed by clearing the flag
in Stripe, which the undo does not do.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._cloudflare import CloudflareClient
from ._command import incident_parameter
from ._config import Environment
from ._errors import ParameterError
from ._finding import Finding, Status
from ._stripe import StripeReader

logger = logging.getLogger(__name__)

REFUND_ACTION = "refund"
CANCEL_ACTION = "cancel-subscription"
ROW_SQL = "SELECT * FROM subscriptions WHERE stripe_subscription_id = ?"
USER_SQL = "SELECT id, subscription_tier FROM users WHERE id = ?"
OTHER_PAID_SQL = (
    "SELECT COUNT(*) AS n FROM subscriptions WHERE user_id = ? AND id <> ? "
    "AND status = 'active' AND plan_type <> 'free'"
)


def refund_phrase(
    environment: Environment, charge: str, amount: int, refundable: int
) -> str:
    """The confirm phrase that authorises refunding ``amount`` cents of ``charge``
    while ``refundable`` cents of it are left unrefunded.

    Naming what is left binds the phrase to the charge as planned: once any
    refund goes through, the same command (from shell history, say) plans
    another phrase and is refused.
    """
    return (
        f"refund {amount} of {refundable} refundable cents of {charge} "
        f"in {environment.name}"
    )


def refund_idempotency_key(charge: Mapping[str, Any], amount: int) -> str:
    """The key Stripe keeps a refund under: the charge, the amount and what was
    refunded before, so a retried or repeated request of one plan refunds once."""
    return f"refund:{charge['id']}:{amount}:{int(charge['amount_refunded'])}"


def cancel_phrase(
    environment: Environment, subscription: str, at_period_end: bool
) -> str:
    """The confirm phrase that authorises cancelling ``subscription``."""
    when = "at period end" if at_period_end else "now"
    return f"cancel {subscription} {when} in {environment.name}"


def plan_refund(environment: Environment, charge: str, amount: int = 0) -> ActionPlan:
    """Plan refunding a charge in full (``amount`` 0) or in part (cents).

    Args:
        environment: where Stripe is.
        charge: a charge id (``ch_...``) or a PaymentIntent id (``pi_...``).
        amount: cents to refund; 0 refunds what is left unrefunded.

    Returns:
        The plan, or a no-op plan saying why nothing can be refunded (no such
        charge, nothing left, or more asked for than is left).
    """
    reader = StripeReader(environment)
    try:
        found = _read_charge(reader, charge)
    finally:
        reader.close()
    if found is None:
        return ActionPlan(
            "none", environment.name, charge, f"cannot refund: Stripe has no {charge}"
        )
    left = int(found["amount"]) - int(found["amount_refunded"])
    amount = amount or left
    if left <= 0 or amount > left:
        why = (
            f"cannot refund {amount} cents of {found['id']}: {left} of "
            f"{found['amount']} cents are left unrefunded"
        )
        return ActionPlan("none", environment.name, found["id"], why, before=found)
    kind = "in full" if amount == left and not found["amount_refunded"] else "in part"
    return ActionPlan(
        action=REFUND_ACTION,
        environment=environment.name,
        target=found["id"],
        summary=f"refund {amount} of {found['amount']} cents of {found['id']} ({kind})",
        changes=(
            {
                "what": f"{found['id']}.amount_refunded",
                "from": found["amount_refunded"],
                "to": found["amount_refunded"] + amount,
            },
        ),
        before=found,
        undo=(
            "a refund cannot be undone: Stripe returns the money and offers no "
            "reversal; charging the customer again needs their consent"
        ),
        confirm_phrase=refund_phrase(environment, found["id"], amount, left),
    )


def _read_charge(reader: StripeReader, charge: str) -> dict[str, Any] | None:
    if charge.startswith("pi_"):
        intent = reader.payment_intent(charge)
        latest = (intent or {}).get("latest_charge")
        charge = latest if isinstance(latest, str) else (latest or {}).get("id", "")
        if not charge:
            return None
    found = reader.charge(charge)
    if found is None:
        return None
    keys = ("id", "amount", "amount_refunded", "currency", "customer", "payment_intent")
    return {k: found.get(k) for k in keys}


def _apply_refund(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    change = plan.changes[0]
    amount = int(change["to"]) - int(change["from"])
    reader = StripeReader(environment)
    try:
        live = _read_charge(reader, plan.target)
        if live != dict(plan.before):
            detail = (
                f"{plan.target} changed since the plan (refunded now "
                f"{(live or {}).get('amount_refunded')}): the plan is stale, re-run"
            )
            return ActionResult(plan, "refused", detail, operator)
        logger.info("applying action=refund charge=%s amount=%s", plan.target, amount)
        key = refund_idempotency_key(plan.before, amount)
        refund = reader.create_refund(plan.target, amount, idempotency_key=key)
        after = _read_charge(reader, plan.target) or {}
    finally:
        reader.close()
    refunded = int(after.get("amount_refunded") or 0)
    ok = refunded == int(change["to"])
    check = Finding(
        "refund-after",
        Status.OK if ok else Status.FAIL,
        f"{plan.target} shows {refunded} cents refunded",
    )
    response = {"refund": refund.get("id"), "status": refund.get("status")}
    detail = f"refund {refund.get('id')} of {amount} cents created"
    return ActionResult(
        plan, "applied", detail, operator, response=response, after=check
    )


def plan_cancellation(
    environment: Environment, subscription: str, *, at_period_end: bool = False
) -> ActionPlan:
    """Plan cancelling a subscription, now or at period end, with D1 in line.

    Args:
        environment: where Stripe and D1 are.
        subscription: the Stripe subscription id (``sub_...``).
        at_period_end: True to let it run to the end of the paid period.
    """
    before = read_cancel_before(environment, subscription)
    stripe_sub = before["subscription"]
    if stripe_sub is None:
        why = f"cannot cancel: Stripe has no {subscription}"
        return ActionPlan("none", environment.name, subscription, why)
    if stripe_sub["status"] == "canceled" or (
        at_period_end and stripe_sub["cancel_at_period_end"]
    ):
        why = f"nothing to cancel: {subscription} is already {_state(stripe_sub)}"
        return ActionPlan("none", environment.name, subscription, why, before=before)
    changes = _cancel_changes(before, at_period_end)
    when = "at the end of its period" if at_period_end else "now"
    return ActionPlan(
        action=CANCEL_ACTION,
        environment=environment.name,
        target=subscription,
        summary=f"cancel {subscription} {when}, D1 row and tier brought in line",
        changes=tuple(changes),
        before={**before, "at_period_end": at_period_end},
        undo=_cancel_undo(at_period_end),
        confirm_phrase=cancel_phrase(environment, subscription, at_period_end),
    )


def read_cancel_before(environment: Environment, subscription: str) -> dict[str, Any]:
    """Stripe's subscription (or None), its whole D1 row (or None), the user's tier."""
    reader = StripeReader(environment)
    try:
        found = reader.subscription(subscription)
    finally:
        reader.close()
    keys = ("id", "status", "cancel_at_period_end", "current_period_end", "customer")
    stripe_sub = {k: found.get(k) for k in keys} if found else None
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(ROW_SQL, [subscription])[0]["results"]
        row = dict(rows[0]) if rows else None
        users = client.d1_query(USER_SQL, [row["user_id"]])[0]["results"] if row else []
    finally:
        client.close()
    user = dict(users[0]) if users else None
    others = _other_paid(environment, row) if row else 0
    return {"subscription": stripe_sub, "row": row, "user": user, "other_paid": others}


def _other_paid(environment: Environment, row: dict[str, Any]) -> int:
    """The user's other active paid subscriptions (their tier must stay)."""
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(OTHER_PAID_SQL, [row["user_id"], row["id"]])
    finally:
        client.close()
    return int(rows[0]["results"][0]["n"])


def _cancel_changes(
    before: dict[str, Any], at_period_end: bool
) -> list[dict[str, Any]]:
    sub, row, user = before["subscription"], before["row"], before["user"]
    if at_period_end:
        changes = [
            {"what": f"{sub['id']}.cancel_at_period_end", "from": False, "to": True}
        ]
        if row:
            changes.append(
                {
                    "what": f"subscriptions[{row['id']}].cancel_at_period_end",
                    "from": row["cancel_at_period_end"],
                    "to": 1,
                }
            )
        return changes
    changes = [{"what": f"{sub['id']}.status", "from": sub["status"], "to": "canceled"}]
    if row:
        changes.append(
            {
                "what": f"subscriptions[{row['id']}].status",
                "from": row["status"],
                "to": "canceled",
            }
        )
    if user and not before["other_paid"]:
        changes.append(
            {
                "what": f"users[{user['id']}].subscription_tier",
                "from": user["subscription_tier"],
                "to": "free",
            }
        )
    return changes


def _cancel_undo(at_period_end: bool) -> str:
    d1 = "`runbook undo RECORD_ID` puts the D1 row and the user's tier back"
    if at_period_end:
        return (
            f"{d1}; in Stripe, clear cancel_at_period_end (Dashboard: "
            "'Don't cancel') to resume the subscription, which the undo does not do"
        )
    return (
        f"{d1}; Stripe cannot reactivate a cancelled subscription: the "
        "customer must subscribe again through checkout"
    )


def _state(sub: dict[str, Any]) -> str:
    return (
        "cancelling at period end"
        if sub["cancel_at_period_end"]
        else str(sub["status"])
    )


def _apply_cancel(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    at_period_end = bool(plan.before["at_period_end"])
    live = read_cancel_before(environment, plan.target)
    keys = ("subscription", "row", "user", "other_paid")
    recorded = {k: plan.before.get(k) for k in keys}
    if live != recorded:
        detail = "Stripe's subscription or D1's rows changed since the plan: re-run"
        return ActionResult(plan, "refused", detail, operator)
    logger.info("applying action=%s subscription=%s", CANCEL_ACTION, plan.target)
    reader = StripeReader(environment)
    try:
        if at_period_end:
            reader.cancel_at_period_end(plan.target, True)
        else:
            reader.cancel_subscription(plan.target)
    finally:
        reader.close()
    _align_d1(environment, live, at_period_end)
    after = read_cancel_before(environment, plan.target)
    response = {"after_row": after["row"], "after_user": after["user"]}
    check = _check_cancelled(after, at_period_end, keeps_tier=bool(live["other_paid"]))
    detail = f"{plan.target} cancelled {'at period end' if at_period_end else 'now'}"
    return ActionResult(
        plan, "applied", detail, operator, response=response, after=check
    )


def _align_d1(
    environment: Environment, before: dict[str, Any], at_period_end: bool
) -> None:
    row, user = before["row"], before["user"]
    if row is None:
        return
    now = int(time.time())
    if at_period_end:
        statements = [
            (
                "UPDATE subscriptions SET cancel_at_period_end = 1, updated_at = ? WHERE id = ?",
                [now, row["id"]],
            )
        ]
    else:
        statements = [
            (
                "UPDATE subscriptions SET status = 'canceled', updated_at = ? WHERE id = ?",
                [now, row["id"]],
            ),
        ]
        if user and not before["other_paid"]:
            statements.append(
                (
                    "UPDATE users SET subscription_tier = 'free' WHERE id = ?",
                    [user["id"]],
                )
            )
    client = CloudflareClient(environment)
    try:
        client.d1_batch(statements)
    finally:
        client.close()


def _check_cancelled(
    after: dict[str, Any], at_period_end: bool, *, keeps_tier: bool
) -> Finding:
    sub, row = after["subscription"] or {}, after["row"] or {}
    if at_period_end:
        ok = (
            bool(sub.get("cancel_at_period_end"))
            and row.get("cancel_at_period_end") == 1
        )
    else:
        tier = (after["user"] or {}).get("subscription_tier")
        ok = sub.get("status") == "canceled" and row.get("status") == "canceled"
        ok = ok and (keeps_tier or tier == "free")
    text = (
        f"Stripe: {sub.get('status')}, cancel_at_period_end "
        f"{sub.get('cancel_at_period_end')}; D1 row: {row.get('status')}, "
        f"cancel_at_period_end {row.get('cancel_at_period_end')}"
    )
    return Finding("cancel-after", Status.OK if ok else Status.FAIL, text)


OPERATIONS = ("", "refund", "cancel", "resend")
WEBHOOK_API_VERSION = "2024-10-28.acacia"


def require_stripe_target(params: Any) -> None:
    """Check that the operation names what it changes, before anything runs.

    Raises:
        ParameterError: a refund without ``charge``, or a cancellation without
            ``subscription``.
    """
    needs = {"refund": "charge", "cancel": "subscription"}
    name = needs.get(str(params.get("operation") or ""))
    if name and not params.get(name):
        raise ParameterError(
            [
                f"{name}: {params.get(name)!r} is empty, but operation "
                f"{params['operation']!r} needs one; expected a "
                + (
                    "charge id (ch_...) or PaymentIntent id (pi_...)"
                    if name == "charge"
                    else "subscription id (sub_...)"
                )
            ]
        )


def plan_stripe_change(
    environment: Environment,
    *,
    operation: str = "",
    charge: str = "",
    amount_cents: int = 0,
    subscription: str = "",
    at_period_end: bool = False,
    lookback: str = "24h",
    incident_id: str = "",
) -> ActionPlan:
    """Plan the run's one change: a refund, a cancellation, or resending events.

    ``resend`` plans what the stripe-webhooks runbook plans (the same action,
    gate and applier): the events some endpoint has not acknowledged within
    ``lookback``, less those Stripe would refuse or the platform has recorded.
    """
    if operation == "refund":
        return plan_refund(environment, charge, amount_cents)
    if operation == "cancel":
        return plan_cancellation(environment, subscription, at_period_end=at_period_end)
    if operation == "resend":
        return _plan_resend(environment, lookback, incident_id)
    return ActionPlan("none", environment.name, "stripe", "no change asked for")


def _plan_resend(
    environment: Environment, lookback: str, incident_id: str
) -> ActionPlan:
    from ._webhookaction import plan_webhook_resend
    from ._webhooks import check_pending_events, check_webhook_endpoints
    from ._webhookverdict import diagnose_stripe_webhooks

    findings = [
        check_webhook_endpoints(environment),
        check_pending_events(environment, lookback),
    ]
    verdict = diagnose_stripe_webhooks(
        findings,
        environment=environment,
        api_version=WEBHOOK_API_VERSION,
        incident_id=incident_id,
    )
    step = verdict.gated_step
    if step is not None:
        fix = "run the stripe-webhooks runbook first if the cause may still be there"
        verdict = dataclasses.replace(verdict, gated_step={**step, "fix": fix})
    return plan_webhook_resend(environment, verdict)


def stripe_parameters(params: Any) -> dict[str, object]:
    """The parameters that plan the same change again (for the printed command)."""
    operation = params.get("operation")
    parts = incident_parameter(params)
    if operation:
        parts["operation"] = operation
    if operation == "refund":
        parts["charge"] = params["charge"]
        if params.get("amount_cents"):
            parts["amount_cents"] = params["amount_cents"]
    elif operation == "cancel":
        parts["subscription"] = params["subscription"]
        if params.get("at_period_end"):
            parts["at_period_end"] = True
    elif operation == "resend":
        parts["lookback"] = params.get("lookback", "24h")
    return parts


register_applier(REFUND_ACTION, _apply_refund)
register_applier(CANCEL_ACTION, _apply_cancel)
