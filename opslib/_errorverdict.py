"""The verdict of the "high error rate" runbook.

Real failures (5xx) are weighed first, by what the failing requests threw: a
missing D1 table, D1 overload or timeouts, R2 throttling; failures of the code
itself count as a broken endpoint only when they began with a deployment in the
window, and then the verdict offers the gated rollback to the version before it.
Without real failures, many 429s with FREE users at their 10 calls per path per
day are the free-tier limit working as designed: a warning, never an outage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._apidown import rollback_step as shared_rollback_step
from ._config import Environment
from ._finding import Finding, Status
from ._unreached import blind_advice, unreached_verdict
from ._verdict import Verdict, not_ok

RUNBOOK = "high-error-rate"
_CLASS_CAUSE = {
    "missing-table": "missing-table",
    "d1": "d1-timeouts",
    "r2": "r2-throttling",
}
_SUMMARY = {
    "missing-table": "Requests fail because a D1 table their route needs is missing.",
    "d1-timeouts": "A share of D1-backed requests fail with D1 overload or timeout errors.",
    "r2-throttling": "R2-backed requests fail: R2 asks to reduce the request rate.",
    "endpoint-broken-after-deploy": "One endpoint fails since a deployment in the window.",
    "free-tier-429s": (
        "The 429s are FREE users at their 10 calls per path per day; no real failures."
    ),
}
_NEXT = {
    "missing-table": (
        "Apply the migration that creates the missing table(s) (`wrangler d1 "
        "migrations apply` or `wrangler d1 execute --file` with the CREATE TABLE), "
        "after a Time Travel bookmark; until then the listed routes answer 500."
    ),
    "d1-timeouts": (
        "Find the heavy queries (`d1QueriesAdaptiveGroups`, `wrangler d1 insights`), "
        "add indexes or cache reads in CACHE_KV, and retry idempotent reads with "
        "backoff; check the D1 size and the queries per invocation."
    ),
    "r2-throttling": (
        "Spread writes to the same key (unique upload keys), back off and retry on "
        "10058, and check the R2 request rate (`r2OperationsAdaptiveGroups`)."
    ),
    "free-tier-429s": (
        "No repair: the per-user limit works as designed. Tell the users, or raise "
        "their tier; read 429 apart from 5xx when judging the error rate."
    ),
}


def diagnose_high_error_rate(
    findings: Iterable[Finding], *, environment: Environment, incident_id: str = ""
) -> Verdict:
    """Work out why the error rate is high from the runbook's findings.

    Args:
        findings: the findings of the steps (missing ones count as unknown).
        environment: the environment diagnosed, named in the gated step.
        incident_id: repeated in the gated step's command.

    Returns:
        The verdict; for a broken endpoint after a deployment, with the gated
        rollback to the version live before it.
    """
    found = {f.name: f for f in findings}
    unreached = unreached_verdict(
        RUNBOOK,
        found.values(),
        systems="the Cloudflare API (Workers Logs, analytics, deployments) or the platform",
    )
    if unreached is not None:
        return unreached
    cause = _cause(found)
    evidence, unknowns, blind = not_ok(found)
    every = list(found.values())
    if cause == "healthy":
        return Verdict(
            RUNBOOK,
            Status.WARN if unknowns else Status.OK,
            cause,
            "The error rate is low: no route fails and few requests are refused."
            + blind,
            evidence,
            "No repair needed; if users still report errors, name the route and widen "
            "the window (-p window_min 180).",
            None,
            every,
        )
    if cause == "inconclusive":
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            cause,
            "No checked cause explains the reported errors." + blind,
            evidence,
            "Read the failing routes' errors in Workers Logs (`wrangler tail --format "
            "pretty --status error`) and compare with the deployment times."
            + blind_advice(every),
            None,
            every,
        )
    if cause == "endpoint-broken-after-deploy":
        return _broken_endpoint(found, environment, incident_id, evidence, every)
    status = Status.WARN if cause == "free-tier-429s" else Status.FAIL
    summary = _SUMMARY[cause] + _routes_text(found)
    return Verdict(RUNBOOK, status, cause, summary, evidence, _NEXT[cause], None, every)


def _cause(found: Mapping[str, Finding]) -> str:
    routes = found.get("route-errors")
    if (
        routes is None
        or routes.status is Status.UNKNOWN
        or not routes.facts.get("events")
    ):
        return "inconclusive"
    if routes.status is Status.FAIL:
        classes = dict(routes.facts.get("error_classes") or {})
        if not classes:
            return "inconclusive"
        dominant = max(classes, key=lambda name: classes[name])
        if dominant in _CLASS_CAUSE:
            return _CLASS_CAUSE[dominant]
        deployments = found.get("deployments-in-window")
        if deployments is not None and deployments.facts.get("onsets"):
            return "endpoint-broken-after-deploy"
        return "inconclusive"
    limits = found.get("user-rate-limits")
    if routes.status is Status.WARN:
        if limits is not None and limits.facts.get("free_at_limit"):
            return "free-tier-429s"
        return "inconclusive"
    return "healthy"


def _routes_text(found: Mapping[str, Finding]) -> str:
    routes = found["route-errors"].facts.get("problem_routes") or []
    return f" Failing routes: {', '.join(routes)}." if routes else ""


def _broken_endpoint(
    found: Mapping[str, Finding],
    environment: Environment,
    incident_id: str,
    evidence: list[str],
    every: list[Finding],
) -> Verdict:
    facts = found["deployments-in-window"].facts
    onset = facts["onsets"][0]
    previous = _version_before(facts, onset["version"])
    summary = (
        f"{onset['route']} fails since version {onset['version']} was deployed at "
        f"{onset['at']}; before it the route answered."
    )
    if not previous:
        next_action = "No earlier version to roll back to: fix the route and deploy."
        return Verdict(
            RUNBOOK,
            Status.FAIL,
            "endpoint-broken-after-deploy",
            summary,
            evidence,
            next_action,
            None,
            every,
        )
    step = rollback_step(environment, onset["version"], previous, incident_id)
    next_action = (
        f"Roll {environment.worker_name} back to {previous} (the version before), "
        "then fix the route and deploy again."
    )
    return Verdict(
        RUNBOOK,
        Status.FAIL,
        "endpoint-broken-after-deploy",
        summary,
        evidence,
        next_action,
        step,
        every,
    )


def rollback_step(
    environment: Environment, bad: str, good: str, incident_id: str
) -> dict[str, Any]:
    """The gated rollback this runbook offers (its command re-runs this runbook)."""
    return shared_rollback_step(
        environment,
        bad,
        good,
        runbook=RUNBOOK,
        parameters={"incident_id": incident_id or "INC-..."},
    )


def _version_before(facts: Mapping[str, Any], bad: str) -> str:
    """The version live before the deployment that brought ``bad``."""
    deployments = list(facts.get("deployments") or [])
    older = [d for d in deployments if d["version"] != bad]
    index = next((i for i, d in enumerate(deployments) if d["version"] == bad), None)
    if index is not None and index + 1 < len(deployments):
        return str(deployments[index + 1]["version"])
    previous = facts.get("previous")
    if previous:
        return str(previous["version"])
    return str(older[0]["version"]) if older else ""
