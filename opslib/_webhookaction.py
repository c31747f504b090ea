"""The gated steps of the stripe-webhooks runbook: resend, and re-enable.

A disabled endpoint is re-enabled first (one run), and the events it missed are
resent in the next run, once nothing fails any more.

Resending only helps once the cause is fixed; the plan says so. It lists each
pending event with its type, age and pending count as the before-image, and
leaves out what must not be resent: events older than 30 days (Stripe refuses
them) and invoice events whose invoice already has a ``payment_history`` row
(the handler keeps no event ids, so a second delivery would insert a second
row). At the gate the events and the endpoint are read again; a changed pending
count or a disabled endpoint refuses the plan. Each event goes through ``POST
/v1/events/{id}/retry`` with ``webhook_endpoint``, and the follow-up re-reads
every resent event's ``pending_webhooks``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._config import Environment
from ._finding import Finding, Status
from ._payments import recorded_payments
from ._stripe import StripeReader
from ._verdict import Verdict
from ._webhooks import RETENTION_DAYS
from ._webhookverdict import ENABLE_ACTION, RESEND_ACTION

logger = logging.getLogger(__name__)

MAX_EVENTS = 100


def plan_webhook_repair(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan the gated step the verdict offers: re-enable the endpoint, or resend.

    Args:
        environment: where Stripe and D1 are.
        verdict: the stripe-webhooks verdict.
    """
    step = verdict.gated_step or {}
    if step.get("action") == ENABLE_ACTION:
        return plan_endpoint_enable(environment, verdict)
    return plan_webhook_resend(environment, verdict)


def plan_endpoint_enable(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan re-enabling the disabled endpoint the verdict names.

    The before-image is the endpoint as Stripe shows it (status, URL, API
    version); at the gate it is read again and a status that is no longer
    disabled refuses the plan.
    """
    step = verdict.gated_step or {}
    endpoint = str(step.get("endpoint") or "")
    rows = [e for e in _endpoints(verdict) if e["id"] == endpoint]
    if step.get("action") != ENABLE_ACTION or not rows:
        reason = f"no endpoint to re-enable (cause {verdict.cause!r})"
        return ActionPlan("none", environment.name, endpoint, reason)
    before = {k: rows[0].get(k) for k in ("id", "path", "status", "api_version")}
    return ActionPlan(
        action=ENABLE_ACTION,
        environment=environment.name,
        target=endpoint,
        summary=(
            f"re-enable {endpoint}; only useful once the reason Stripe disabled it "
            "is fixed; events created meanwhile then need a resend (run again)"
        ),
        changes=(
            {"what": f"{endpoint}.status", "from": before["status"], "to": "enabled"},
        ),
        before=before,
        undo=(
            f"disable it again: Stripe Dashboard, or "
            f"`stripe webhook_endpoints update {endpoint} --disabled=true`"
        ),
        confirm_phrase=str(step["confirm"]),
    )


def plan_webhook_resend(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan resending the verdict's pending events (or no action).

    Args:
        environment: where Stripe and D1 are.
        verdict: the stripe-webhooks verdict.
    """
    step = verdict.gated_step or {}
    pending = _pending(verdict)
    if step.get("action") != RESEND_ACTION or not pending:
        reason = f"nothing to resend (cause {verdict.cause!r}, {len(pending)} pending)"
        return ActionPlan("none", environment.name, "", reason)
    endpoint = str(step["endpoint"])
    recorded = recorded_payments(
        environment,
        "stripe_invoice_id",
        [str(p["invoice"]) for p in pending if p["invoice"]],
    )
    chosen, excluded = split_events(pending, recorded)
    if not chosen:
        return ActionPlan(
            "none",
            environment.name,
            endpoint,
            "every pending event is left out",
            before={"excluded": excluded},
        )
    changes = tuple(
        {
            "what": f"event {e['id']} ({e['type']}, {_age(e['age_s'])})",
            "from": f"pending {e['pending_webhooks']}",
            "to": f"resent to {endpoint}",
        }
        for e in chosen
    ) + tuple(
        {
            "what": f"event {e['id']} ({e['type']}, {_age(e['age_s'])})",
            "from": f"pending {e['pending_webhooks']}",
            "to": f"left out: {e['reason']}",
        }
        for e in excluded
    )
    return ActionPlan(
        action=RESEND_ACTION,
        environment=environment.name,
        target=endpoint,
        summary=(
            f"resend {len(chosen)} pending event(s) to {endpoint}, "
            f"{len(excluded)} left out; only useful once the cause is fixed "
            f"({step.get('fix') or verdict.next_action})"
        ),
        changes=changes,
        before={"endpoint": endpoint, "events": chosen, "excluded": excluded},
        undo=(
            "a delivered event cannot be taken back; the handler's writes "
            "(subscription status, payment_history rows) are corrected in D1 by hand"
        ),
        confirm_phrase=str(step["confirm"]),
    )


def split_events(
    pending: Sequence[dict[str, Any]], recorded: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Separate the events to resend from those left out, with the reason."""
    chosen: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    for event in pending:
        reason = ""
        if event["age_s"] > RETENTION_DAYS * 86_400:
            reason = "older than 30 days: Stripe refuses to resend it"
        elif event["invoice"] and event["invoice"] in recorded:
            reason = (
                f"invoice {event['invoice']} already has a payment_history row: "
                "a resend would record the payment twice"
            )
        elif len(chosen) >= MAX_EVENTS:
            reason = f"over {MAX_EVENTS} events per run: run again for the rest"
        if reason:
            excluded.append({**event, "reason": reason})
        else:
            chosen.append(dict(event))
    return chosen, excluded


def _apply_resend(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    events: list[dict[str, Any]] = list(plan.before["events"])
    reader = StripeReader(environment)
    try:
        refusal = _refusal(reader, plan, events)
        if refusal:
            return ActionResult(plan, "refused", refusal, operator)
        logger.info(
            "applying action=%s endpoint=%s events=%s",
            RESEND_ACTION,
            plan.target,
            len(events),
        )
        answers = [_resend(reader, e["id"], plan.target) for e in events]
        after = verify_pending(reader, [e["id"] for e in events])
    finally:
        reader.close()
    return ActionResult(
        plan,
        "applied",
        f"{len(events)} event(s) resent to {plan.target}",
        operator,
        response={"resent": answers},
        after=after,
    )


def _refusal(
    reader: StripeReader, plan: ActionPlan, events: list[dict[str, Any]]
) -> str:
    endpoints = {e["id"]: e for e in reader.webhook_endpoints()}
    endpoint = endpoints.get(plan.target)
    if endpoint is None or endpoint.get("status") != "enabled":
        return f"endpoint {plan.target} is not enabled: re-enable it first; nothing was resent"
    for event in events:
        live = int(reader.event(event["id"]).get("pending_webhooks") or 0)
        if live != event["pending_webhooks"]:
            return (
                f"event {event['id']} now has {live} pending delivery(ies), not "
                f"{event['pending_webhooks']}: the plan is stale, re-run the runbook"
            )
    return ""


def _resend(reader: StripeReader, event_id: str, endpoint: str) -> dict[str, Any]:
    answer = reader.retry_event(event_id, endpoint)
    return {"event": event_id, "pending_webhooks": answer.get("pending_webhooks")}


def verify_pending(reader: StripeReader, event_ids: Sequence[str]) -> Finding:
    """Follow-up: re-read ``pending_webhooks`` of the resent events."""
    rows = [
        {
            "event": i,
            "pending_webhooks": int(reader.event(i).get("pending_webhooks") or 0),
        }
        for i in event_ids
    ]
    still = [r["event"] for r in rows if r["pending_webhooks"]]
    if still:
        text = f"{len(still)} of {len(rows)} resent event(s) are still pending"
        return Finding("pending-after", Status.FAIL, text, rows, {"still": still})
    text = f"all {len(rows)} resent event(s) were acknowledged"
    return Finding("pending-after", Status.OK, text, rows, {"still": []})


def _apply_enable(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    reader = StripeReader(environment)
    try:
        live = _live_status(reader, plan.target)
        if live != plan.before.get("status"):
            detail = (
                f"endpoint {plan.target} is now {live!r}, not "
                f"{plan.before.get('status')!r}: the plan is stale, re-run the runbook"
            )
            return ActionResult(plan, "refused", detail, operator)
        logger.info("applying action=%s endpoint=%s", ENABLE_ACTION, plan.target)
        answer = reader.enable_endpoint(plan.target)
        after = _live_status(reader, plan.target)
    finally:
        reader.close()
    status = Status.OK if after == "enabled" else Status.FAIL
    check = Finding("endpoint-after", status, f"{plan.target} is {after}")
    return ActionResult(
        plan,
        "applied",
        f"{plan.target} re-enabled",
        operator,
        response={"status": answer.get("status")},
        after=check,
    )


def _live_status(reader: StripeReader, endpoint: str) -> str:
    found = [e for e in reader.webhook_endpoints() if e["id"] == endpoint]
    return str(found[0].get("status")) if found else "deleted"


def _endpoints(verdict: Verdict) -> list[dict[str, Any]]:
    for finding in verdict.findings:
        if finding.name == "webhook-endpoints":
            return [dict(e) for e in finding.facts.get("endpoints") or []]
    return []


def _pending(verdict: Verdict) -> list[dict[str, Any]]:
    for finding in verdict.findings:
        if finding.name == "pending-events":
            return [dict(p) for p in finding.facts.get("pending") or []]
    return []


def _age(seconds: int) -> str:
    return (
        f"{seconds // 60} min old" if seconds < 7200 else f"{seconds / 3600:.1f} h old"
    )


register_applier(RESEND_ACTION, _apply_resend)
register_applier(ENABLE_ACTION, _apply_enable)
