"""The verdict of the "Stripe webhooks failing" runbook.

Causes are weighed in this order, each from what the systems show:

1. ``endpoint-disabled``: Stripe's endpoint for the platform has status
   disabled; nothing is delivered and retries already scheduled are cancelled.
2. ``wrong-webhook-secret``: the Worker has no ``STRIPE_WEBHOOK_SECRET``, or the
   log shows signature mismatches, or a probe signed with the endpoint's secret
   gets 400 "Invalid signature" while the log shows no synchronous-crypto error.
3. ``signature-check-broken-in-handler``: the log shows "SubtleCryptoProvider
   cannot be used in a synchronous context": the secret may be right, but the
   synchronous ``constructEvent`` fails on Workers for every delivery.
4. ``api-version-mismatch``: the endpoint sends a newer API version than the
   handler is written for.
5. ``handler-timeout``: events are pending and the handler answers slower than
   Stripe waits (the probe or the logged wall times).

Pending events with none of these is ``inconclusive``; the resend is still
offered then, for a cause fixed before the run (a re-enabled endpoint, a
replaced secret), since Stripe does not redeliver what failed meanwhile. A
disabled endpoint's gated step is its re-enabling; the resend follows in the
next run. Where the prose runbook
is wrong for this platform the remedy says so: the secret is not always the
culprit behind "Invalid signature", and ``echo whsec_... | wrangler secret put``
leaves the secret in the shell history.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._command import INCIDENT_PLACEHOLDER, runbook_command
from ._config import Environment
from ._finding import Finding, Status
from ._unreached import access_advice, unreached_verdict
from ._verdict import Verdict, not_ok

RUNBOOK = "stripe-webhooks"
RESEND_ACTION = "resend-webhook-events"
ENABLE_ACTION = "enable-webhook-endpoint"
_SUMMARY = {
    "endpoint-disabled": "Stripe's webhook endpoint for the platform is disabled.",
    "wrong-webhook-secret": (
        "The Worker's STRIPE_WEBHOOK_SECRET is not the endpoint's signing secret: "
        "every delivery gets 400 Invalid signature."
    ),
    "signature-check-broken-in-handler": (
        "The handler's synchronous constructEvent throws on Workers "
        "(SubtleCryptoProvider): every delivery gets 400 Invalid signature."
    ),
    "api-version-mismatch": (
        "The endpoint sends payloads in a newer API version than the handler reads: "
        "it binds undefined fields and answers 500."
    ),
    "handler-timeout": (
        "The handler answers slower than Stripe waits: deliveries time out and "
        "stay pending (the work may still have been done)."
    ),
}


def _fix(cause: str, environment: Environment, endpoint: str, expected: str) -> str:
    worker = environment.worker_name
    fixes = {
        "endpoint-disabled": (
            f"Find out why Stripe disabled {endpoint} (days without a 2xx), fix that, "
            "then re-enable it: Stripe Dashboard, Developers, Webhooks, the endpoint, "
            f"Enable (or `stripe webhook_endpoints update {endpoint} --disabled=false`)."
        ),
        "wrong-webhook-secret": (
            f"Copy the signing secret of {endpoint} from the Stripe Dashboard and run "
            f"`npx wrangler secret put STRIPE_WEBHOOK_SECRET --name {worker}`, pasting "
            "it at the prompt (the prose runbook's `echo whsec_... |` leaves it in the "
            "shell history). Use the live endpoint's secret, not a test-mode one."
        ),
        "signature-check-broken-in-handler": (
            "Replacing the secret will not help (the prose runbook's first step): "
            "change the handler to `await stripe.webhooks.constructEventAsync(...)` "
            f"and deploy {worker}."
        ),
        "api-version-mismatch": (
            "An endpoint's API version is fixed when it is made: create a new endpoint "
            f"on the same URL with api_version {expected} and the 6 handled events, put "
            "its signing secret into STRIPE_WEBHOOK_SECRET, then disable the old one "
            "(or make the handler read items[].current_period_* and "
            "invoice.parent.subscription_details.subscription)."
        ),
        "handler-timeout": (
            "Make the handler answer 2xx before its slow work (ctx.waitUntil or a "
            "queue) and deploy; the work of timed-out deliveries may already be done."
        ),
    }
    return fixes[cause]


def diagnose_stripe_webhooks(
    findings: Iterable[Finding],
    *,
    environment: Environment,
    api_version: str,
    incident_id: str = "",
) -> Verdict:
    """Work out why Stripe's webhook deliveries fail, from the runbook's findings.

    Args:
        findings: the findings of the steps.
        environment: the environment diagnosed, named in the gated step.
        api_version: the API version the handler is written for.
        incident_id: repeated in the gated step's command.
    """
    found = {f.name: f for f in findings}
    unreached = unreached_verdict(
        RUNBOOK, found.values(), systems="Stripe, the Cloudflare API or the platform"
    )
    if unreached is not None:
        return unreached
    evidence = [str(f) for f in found.values() if f.status is not Status.OK]
    cause = classify(found)
    pending = list(_facts(found, "pending-events").get("pending") or [])
    endpoint = _endpoint_id(found, api_version)
    if cause == "endpoint-disabled":
        endpoint = _disabled_that_matter(found, api_version)[0]
    if cause in _SUMMARY:
        fix = _fix(cause, environment, endpoint or "the endpoint", api_version)
        step = _gated_step(cause, environment, endpoint, incident_id, pending)
        next_action = fix + _gated_text(cause, pending, step)
        if step is not None:
            step = {**step, "fix": fix}
        return Verdict(
            RUNBOOK,
            Status.FAIL,
            cause,
            _SUMMARY[cause],
            evidence,
            next_action,
            step,
            list(found.values()),
        )
    step = (
        resend_step(environment, endpoint, incident_id, _event_ids(pending))
        if endpoint
        else None
    )
    return _quiet_verdict(found, evidence, pending, step)


def classify(found: Mapping[str, Finding]) -> str:
    """The cause the findings point at, or "" when none of the five fits."""
    logs = _facts(found, "webhook-logs")
    probe = _facts(found, "webhook-probe")
    invalid = probe.get("status_code") == 400 and "Invalid signature" in str(
        probe.get("body")
    )
    pending = bool(_facts(found, "pending-events").get("pending"))
    slow = bool(logs.get("slow")) or _status(found, "webhook-probe") is Status.WARN
    expected = str(_facts(found, "api-version").get("expected") or "")
    if _disabled_that_matter(found, expected):
        return "endpoint-disabled"
    if _status(found, "webhook-secret") is Status.FAIL:
        return "wrong-webhook-secret"
    if logs.get("sync_crypto"):
        return "signature-check-broken-in-handler"
    if logs.get("signature_failed") or invalid:
        return "wrong-webhook-secret"
    if _facts(found, "api-version").get("newer"):
        return "api-version-mismatch"
    if pending and slow:
        return "handler-timeout"
    return ""


def _gated_step(
    cause: str,
    environment: Environment,
    endpoint: str,
    incident_id: str,
    pending: Sequence[Mapping[str, Any]],
) -> dict[str, Any] | None:
    if not endpoint:
        return None
    if cause == "endpoint-disabled":
        return enable_step(environment, endpoint, incident_id)
    return resend_step(environment, endpoint, incident_id, _event_ids(pending))


def _event_ids(pending: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(p["id"]) for p in pending if p.get("id")]


def enable_phrase(environment: Environment, endpoint: str) -> str:
    """The confirm phrase that authorises re-enabling ``endpoint``."""
    return f"enable webhook endpoint {endpoint} in {environment.name}"


def resend_phrase(
    environment: Environment, endpoint: str, event_ids: Sequence[str] = ()
) -> str:
    """The confirm phrase that authorises resending pending events to ``endpoint``.

    Given the ids of the events pending when the run looked, it names how many
    and eight hex digits of sha256 over the sorted ids, so a phrase kept from an
    earlier run does not resend events nobody has seen.
    """
    if not event_ids:
        return f"resend pending webhook events to {endpoint} in {environment.name}"
    ids = sorted(event_ids)
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:8]
    events = "event" if len(ids) == 1 else "events"
    return (
        f"resend {len(ids)} pending webhook {events} [{digest}] to {endpoint} "
        f"in {environment.name}"
    )


def enable_step(
    environment: Environment, endpoint: str, incident_id: str
) -> dict[str, Any]:
    """The gated step: re-enable the platform's disabled endpoint."""
    summary = f"re-enable {endpoint} (once the reason it was disabled is fixed)"
    phrase = enable_phrase(environment, endpoint)
    return _step(ENABLE_ACTION, environment, endpoint, incident_id, phrase, summary)


def resend_step(
    environment: Environment,
    endpoint: str,
    incident_id: str,
    event_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """The gated step: resend the pending events to the platform's endpoint."""
    summary = f"resend the pending events to {endpoint} (after the fix)"
    phrase = resend_phrase(environment, endpoint, event_ids)
    return _step(RESEND_ACTION, environment, endpoint, incident_id, phrase, summary)


def _step(
    action: str,
    environment: Environment,
    endpoint: str,
    incident_id: str,
    phrase: str,
    summary: str,
) -> dict[str, Any]:
    command = runbook_command(
        RUNBOOK,
        environment.name,
        {"incident_id": incident_id or INCIDENT_PLACEHOLDER},
        confirm=phrase,
    )
    return {
        "action": action,
        "environment": environment.name,
        "endpoint": endpoint,
        "summary": summary,
        "confirm": phrase,
        "command": command,
    }


def _gated_text(cause: str, pending: list[Any], step: Mapping[str, Any] | None) -> str:
    if step is None:
        return ""
    if cause == "endpoint-disabled":
        return (
            f" Gated, here: {step['command']}. Events created while it was disabled "
            f"are not redelivered: run the runbook again afterwards to resend the "
            f"{len(pending)} pending event(s)."
        )
    if not pending:
        return ""
    if cause == "api-version-mismatch":
        return (
            f" Once the new endpoint exists, run this runbook again: it offers to "
            f"resend the {len(pending)} pending event(s) to the enabled endpoint on "
            f"the handler's version, not to {step['endpoint']}."
        )
    return (
        f" Then, gated, resend the {len(pending)} pending event(s): "
        f"{step['command']} (only after the fix; invoice events already recorded in "
        "D1 are left out, the handler would record them twice)."
    )


def _quiet_verdict(
    found: Mapping[str, Finding],
    evidence: list[str],
    pending: list[Any],
    step: dict[str, Any] | None,
) -> Verdict:
    needed = ("webhook-endpoints", "pending-events")
    blind = [n for n in needed if _status(found, n) in (None, Status.UNKNOWN)]
    if _status(found, "webhook-endpoints") is Status.FAIL and step is None:
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            "No Stripe webhook endpoint points at the platform: nothing is delivered.",
            evidence,
            "In the Stripe Dashboard, check whether the endpoint was deleted or points "
            "elsewhere; create one on the platform's /webhooks/stripe with the 6 "
            "handled events, then put its signing secret into STRIPE_WEBHOOK_SECRET.",
            None,
            list(found.values()),
        )
    if pending and not blind and step is not None:
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            f"{len(pending)} event(s) are pending, but nothing fails now.",
            evidence,
            "The cause may be fixed already (an endpoint re-enabled, a secret "
            "replaced): Stripe does not redeliver what failed meanwhile. If so, "
            f"resend them, gated: {step['command']}. Otherwise read the endpoint's "
            "deliveries in the Stripe Dashboard.",
            step,
            list(found.values()),
        )
    if pending or blind:
        what = (
            f"{len(pending)} event(s) pending but no known cause shows"
            if pending
            else f"could not read {', '.join(blind)}"
        )
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            f"Stripe webhooks: {what}.",
            evidence,
            _pending_or_blind_advice(found, blind),
            None,
            list(found.values()),
        )
    _, unknowns, unchecked = not_ok(found)
    # A check that could not look is no pass: the verdict says so and is no ok.
    warned = unknowns or any(f.status is Status.WARN for f in found.values())
    return Verdict(
        RUNBOOK,
        Status.WARN if warned else Status.OK,
        "healthy",
        "Stripe delivers to the platform and the handler accepts signed events."
        + unchecked,
        evidence,
        "Nothing to resend. Keep the endpoint on /webhooks/stripe (the "
        "/payments/webhook alias is rate-limited).",
        None,
        list(found.values()),
    )


def _endpoint_id(found: Mapping[str, Finding], expected: str) -> str:
    """The endpoint resends go to: enabled at the handler's version, else enabled,
    else the first of the platform's."""
    facts = _facts(found, "webhook-endpoints")
    disabled = set(facts.get("disabled") or [])
    ranked = sorted(
        facts.get("endpoints") or [],
        key=lambda e: (e["id"] in disabled, e.get("api_version") != expected),
    )
    return str(ranked[0]["id"]) if ranked else ""


def _disabled_that_matter(found: Mapping[str, Finding], expected: str) -> list[str]:
    """The disabled endpoints worth re-enabling: all of them, except those on
    another API version than the handler's when an enabled one is on it (an old
    endpoint retired after a version change)."""
    facts = _facts(found, "webhook-endpoints")
    disabled = [str(i) for i in facts.get("disabled") or []]
    versions = {e["id"]: e.get("api_version") for e in facts.get("endpoints") or []}
    replaced = bool(expected) and any(
        i not in disabled and v == expected for i, v in versions.items()
    )
    return [i for i in disabled if not (replaced and versions.get(i) != expected)]


def _status(found: Mapping[str, Finding], name: str) -> Status | None:
    finding = found.get(name)
    return finding.status if finding is not None else None


def _facts(found: Mapping[str, Finding], name: str) -> Mapping[str, Any]:
    finding = found.get(name)
    return finding.facts if finding is not None else {}


def _pending_or_blind_advice(found: Mapping[str, Finding], blind: list[str]) -> str:
    """What to do when events wait with no cause seen, or some checks were blind."""
    deliveries = "read the endpoint's deliveries in the Stripe Dashboard"
    if not blind:
        return (
            "Check STRIPE_WEBHOOK_SECRET in the secrets file against the endpoint's "
            f"signing secret, then {deliveries}."
        )
    advice = access_advice(
        [found[name] for name in blind if name in found],
        access="STRIPE_API_KEY needs Read on Events and Webhook Endpoints, the "
        "Cloudflare token Workers Observability",
    )
    return f"{advice} Meanwhile, {deliveries}."
