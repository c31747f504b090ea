"""The verdict of the "payment successful but subscription not created" runbook.

Each active Stripe subscription without a good D1 row gets one cause, weighed in
this order: its user no longer exists (``user-deleted``: creating a row is
impossible and refunding or cancelling is a person's decision), its checkout
session lacks ``userId``/``planType`` (``metadata-missing-user``: the webhook
threw before writing), it has no row although metadata and user are fine
(``subscription-insert-failed``: the INSERT failed and the 500 was not retried
into success), or its row exists with another status or period than Stripe's
(``events-out-of-order``). The verdict names the cause of the first such
subscription and counts the others; the repair is offered for one subscription
at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ._command import INCIDENT_PLACEHOLDER, runbook_command
from ._config import Environment
from ._finding import Finding, Status
from ._unreached import access_advice, unreached_verdict
from ._verdict import Verdict

RUNBOOK = "payment-without-subscription"
ACTION = "repair-subscription-row"
ORDER = (
    "user-deleted",
    "metadata-missing-user",
    "subscription-insert-failed",
    "events-out-of-order",
)
_SUMMARY = {
    "user-deleted": "A customer pays for a subscription whose user no longer exists.",
    "metadata-missing-user": (
        "The checkout session lacks the userId/planType metadata, so the webhook "
        "failed and no row was written."
    ),
    "subscription-insert-failed": (
        "The webhook could not insert the subscription row although the metadata "
        "and the user are fine."
    ),
    "events-out-of-order": (
        "The subscription row exists but holds another status or period than "
        "Stripe: an update arrived before the checkout event and was lost."
    ),
}
_NEXT = {
    "user-deleted": (
        "Do not create a row: there is no user to attach it to. Refunding or "
        "cancelling the subscription in Stripe is a decision for a person (support "
        "and finance), taken in the Stripe Dashboard."
    ),
    "metadata-missing-user": (
        "Create the row for the user found through the customer, and fix checkout "
        "to set metadata userId and planType (camelCase) on the session."
    ),
    "subscription-insert-failed": (
        "Create the row from Stripe's values, then read the Worker's log for the "
        "D1 error around the checkout time."
    ),
    "events-out-of-order": (
        "Copy Stripe's status and periods into the row; the webhook does not "
        "re-fetch the subscription when events arrive out of order."
    ),
}


def diagnose_payment(
    findings: Iterable[Finding],
    *,
    environment: Environment,
    customer: str = "",
    incident_id: str = "",
) -> Verdict:
    """Work out why a payment has no subscription row, from the runbook's findings.

    Args:
        findings: the findings of the steps.
        environment: the environment diagnosed, named in the gated step.
        customer: the customer parameter of the run, repeated in the command.
        incident_id: repeated in the gated step's command.
    """
    found = {f.name: f for f in findings}
    unreached = unreached_verdict(RUNBOOK, found.values(), systems="Stripe or D1")
    if unreached is not None:
        return unreached
    causes = classify(found)
    evidence = [str(f) for f in found.values() if f.status is not Status.OK]
    if not causes:
        return _quiet_verdict(
            found, evidence, _hidden_step(found, environment, customer, incident_id)
        )
    sub_id, cause = causes[0]
    counts = Counter(c for _, c in causes)
    evidence.append(
        "per subscription: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
    )
    step = None
    if cause != "user-deleted":
        step = repair_step(environment, sub_id, customer, incident_id)
    next_action = _NEXT[cause]
    if step is not None:
        next_action += f" Gated: {step['summary']}."
    return Verdict(
        RUNBOOK,
        Status.FAIL,
        cause,
        f"{_SUMMARY[cause]} (subscription {sub_id})",
        evidence,
        next_action,
        step,
        list(found.values()),
    )


def classify(found: Mapping[str, Finding]) -> list[tuple[str, str]]:
    """(subscription id, cause) for every subscription without a good row."""
    rows = found.get("subscription-rows")
    if rows is None:
        return []
    gone = set(_facts(found, "subscription-users").get("gone") or [])
    bad_metadata = set(_facts(found, "checkout-metadata").get("bad") or [])
    result: list[tuple[str, str]] = []
    for sub in rows.facts.get("missing") or []:
        if sub["id"] in gone:
            result.append((sub["id"], "user-deleted"))
        elif sub["id"] in bad_metadata:
            result.append((sub["id"], "metadata-missing-user"))
        else:
            result.append((sub["id"], "subscription-insert-failed"))
    result += [
        (p["sub"]["id"], "events-out-of-order") for p in rows.facts.get("stale") or []
    ]
    return sorted(result, key=lambda pair: ORDER.index(pair[1]))


def repair_phrase(environment: Environment, sub_id: str) -> str:
    """The confirm phrase that authorises repairing one subscription's row."""
    return f"repair subscription row {sub_id} in {environment.name}"


def repair_step(
    environment: Environment, sub_id: str, customer: str, incident_id: str
) -> dict[str, Any]:
    """The gated step: create or repair the row of ``sub_id`` from Stripe."""
    phrase = repair_phrase(environment, sub_id)
    parameters = {"incident_id": incident_id or INCIDENT_PLACEHOLDER}
    parameters.update({"customer": customer} if customer else {})
    command = runbook_command(RUNBOOK, environment.name, parameters, confirm=phrase)
    return {
        "action": ACTION,
        "environment": environment.name,
        "subscription": sub_id,
        "summary": f"create or repair the D1 row of {sub_id} from Stripe",
        "confirm": phrase,
        "command": command,
    }


def _hidden_step(
    found: Mapping[str, Finding],
    environment: Environment,
    customer: str,
    incident_id: str,
) -> dict[str, Any] | None:
    """The repair for a paid row hidden behind an active free row, if any."""
    hidden = set(_facts(found, "shown-plan").get("hidden") or [])
    rows = _facts(found, "subscription-rows").get("rows") or {}
    for sub_id, row in sorted(rows.items()):
        if row.get("user_id") in hidden:
            step = repair_step(environment, sub_id, customer, incident_id)
            step["summary"] = f"cancel the active free row hiding {sub_id}"
            return step
    return None


def _quiet_verdict(
    found: Mapping[str, Finding], evidence: list[str], step: dict[str, Any] | None
) -> Verdict:
    needed = ("stripe-subscriptions", "subscription-rows")
    unknown = [n for n in needed if n not in found or found[n].status is Status.UNKNOWN]
    if unknown:
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            f"Could not compare Stripe with D1: {', '.join(unknown)} did not answer.",
            evidence,
            access_advice(
                [found[n] for n in unknown if n in found],
                access="STRIPE_API_KEY needs Read on Subscriptions, Customers and "
                "Checkout Sessions",
            ),
            None,
            list(found.values()),
        )
    warned = any(f.status is Status.WARN for f in found.values())
    return Verdict(
        RUNBOOK,
        Status.WARN if warned else Status.OK,
        "healthy",
        "Every active Stripe subscription in scope has a matching row in D1.",
        evidence,
        "Nothing to repair. If the user still sees the free plan, see the shown-plan "
        "step (an active free row can hide the paid one); an unrecorded one-time "
        "$10 payment (one-time-payments step) needs the analysis credited by hand."
        + (f" Gated: {step['summary']}." if step else ""),
        step,
        list(found.values()),
    )


def _facts(found: Mapping[str, Finding], name: str) -> Mapping[str, Any]:
    finding = found.get(name)
    return finding.facts if finding is not None else {}
