"""The verdict of the "slow responses" runbook.

In this order:

- ``missing-index``: a hot query scans the whole manuscripts table; the verdict
  offers the gated creation of the composite index of migration 007.
- ``slow-external-api``: Workers Logs show a route over the 3 s wall-time p95
  whose slow requests spent little CPU time, and the route calls an outside
  service: the verdict names the service and the route. The remedy is a code or
  provider matter (timeouts, answering before the call), so there is no gated
  step.
- ``cold-start``: first requests on new isolates are slow and the rest fast
  (the probe's first answer per route, or slow requests that were nearly all
  CPU in the logs); the live version's start-up time and deployment age back
  it up. No gated step: a rollback is the api-down runbook's.
- ``inconclusive``: a check could not look, or something is slow that none of
  the above explains (for instance a route waiting on D1, KV or R2), or only
  GraphQL Analytics show the Worker slow, without Workers Logs to name a route.
- ``healthy`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._command import INCIDENT_PLACEHOLDER, runbook_command
from ._config import Environment
from ._finding import Finding, Status
from ._queryplan import HOT_INDEX, HOT_INDEX_SQL, TABLE
from ._unreached import access_advice
from ._verdict import Verdict

RUNBOOK = "slow-responses"
CREATE_INDEX_ACTION = "create-index"
# Slow CPU-bound requests in the logs that count as start-up without the probe.
COLD_LOGGED_MIN = 2


def create_index_phrase(environment: Environment, index: str = HOT_INDEX) -> str:
    """The confirm phrase that authorises creating ``index`` in the environment."""
    return f"create index {index} on {TABLE} in {environment.name}"


def diagnose_slow_responses(
    findings: Iterable[Finding], *, environment: Environment, incident_id: str = ""
) -> Verdict:
    """Work out why responses are slow from the runbook's findings.

    Args:
        findings: the latency, query-plan and index findings.
        environment: the environment diagnosed, named in the gated step.
        incident_id: repeated in the gated step's command.

    Returns:
        The verdict; for a missing index, with the gated index creation.
    """
    found = {f.name: f for f in findings}
    every = list(found.values())
    evidence = [str(f) for f in every if f.status is not Status.OK]
    plans, latency = found.get("query_plans"), found.get("latency")
    timings, startup = found.get("route-timings"), found.get("startup")
    if plans is not None and plans.status is Status.FAIL:
        return Verdict(
            RUNBOOK,
            Status.FAIL,
            "missing-index",
            "The manuscript list queries scan the whole table: the user_id index "
            "is missing, so every signed-in list request reads every row.",
            evidence,
            f"Create {HOT_INDEX} ({HOT_INDEX_SQL}); it serves the list, the "
            "status filter and the count. Then re-run this runbook.",
            _index_step(environment, incident_id),
            every,
        )
    waits = external_waits(timings)
    if waits:
        return _external_verdict(waits, evidence, every)
    cold = cold_signs(latency, timings)
    if cold:
        return _cold_verdict(cold, startup, evidence, every)
    worker = found.get("worker-times")
    if worker is not None and worker.status is Status.WARN and not _has_times(timings):
        return _unnamed_verdict(worker, evidence, every)
    blind = [n for n, f in found.items() if f.status is Status.UNKNOWN]
    if blind or plans is None or latency is None:
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            "Some checks could not look: " + (", ".join(blind) or "missing steps"),
            evidence,
            access_advice([found[name] for name in blind])
            if blind
            else "Re-run this runbook: some of its steps did not run.",
            None,
            every,
        )
    if latency.status is Status.FAIL or (
        timings is not None and timings.status is Status.FAIL
    ):
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            "Responses are slow but the hot queries use their indexes and no slow "
            "route waits on an outside service.",
            evidence,
            "Read the slow routes' wall and CPU times above: high CPU is work in "
            "the Worker (profile it); low CPU on a route without outside calls is "
            "waiting on D1, KV or R2 (see their metrics on the dashboard).",
            None,
            every,
        )
    return Verdict(
        RUNBOOK,
        Status.OK,
        "healthy",
        "Responses are fast and the hot queries use their indexes.",
        evidence,
        "No repair needed; if users still report slowness, name the route and "
        "probe it signed in, or read its wall time in Workers Metrics.",
        None,
        every,
    )


def external_waits(timings: Finding | None) -> list[dict[str, Any]]:
    """Slow routes that waited on an outside service, from the route timings."""
    if timings is None or timings.status is not Status.FAIL:
        return []
    return [w for w in timings.facts.get("waiting") or () if w.get("service")]


def cold_signs(latency: Finding | None, timings: Finding | None) -> list[str]:
    """Lines of evidence that isolates starting made requests slow."""
    probe = latency.facts if latency is not None else {}
    cold = set(probe.get("cold_routes") or ())
    signs = [
        f"probe {row['route']}: first answer {row['first_ms']:.0f} ms, "
        f"p50 {row['p50_ms']:.0f} ms"
        for row in probe.get("routes") or ()
        if row["route"] in cold
    ]
    computing = (timings.facts.get("computing") or []) if timings is not None else []
    if len(computing) >= COLD_LOGGED_MIN:
        routes = sorted({c["route"] for c in computing})
        signs.append(
            f"Workers Logs: {len(computing)} slow request(s) nearly all CPU "
            f"(start-up) on {', '.join(routes)}"
        )
    return signs


def _has_times(timings: Finding | None) -> bool:
    return timings is not None and bool(timings.facts.get("requests"))


def _unnamed_verdict(
    worker: Finding, evidence: list[str], every: list[Finding]
) -> Verdict:
    facts = worker.facts
    waiting = facts["cpuTimeP99"] < 0.25 * facts["wallTimeP99"]
    kind = "waits (little CPU)" if waiting else "computes (CPU close to wall time)"
    return Verdict(
        RUNBOOK,
        Status.UNKNOWN,
        "inconclusive",
        f"The Worker {kind}: wall p99 {facts['wallTimeP99']:.0f} ms, CPU p99 "
        f"{facts['cpuTimeP99']:.0f} ms (GraphQL Analytics), but Workers Logs hold "
        "no timed requests to name the route.",
        evidence,
        "Enable Workers Logs (`[observability] enabled = true` in wrangler.toml, "
        "then deploy) and re-run this runbook after some traffic: it names the "
        "slow route and whether it waits on Stripe or MailChannels. Meanwhile "
        "probe the suspects signed in (billing portal, checkout, reset request).",
        None,
        every,
    )


def _external_verdict(
    waits: list[dict[str, Any]], evidence: list[str], every: list[Finding]
) -> Verdict:
    worst = waits[0]
    service = worst["service"]
    routes = ", ".join(f"{w['route']} ({w['service']})" for w in waits)
    return Verdict(
        RUNBOOK,
        Status.FAIL,
        "slow-external-api",
        f"{worst['route']} waits on {service}: wall p95 {worst['wall_p95_ms']} ms "
        f"with CPU p95 {worst['cpu_p95_ms']} ms; slow routes waiting on an outside "
        f"service: {routes}.",
        evidence,
        _EXTERNAL_REMEDIES.get(service, _EXTERNAL_REMEDIES[""]),
        None,
        every,
    )


def _cold_verdict(
    signs: list[str], startup: Finding | None, evidence: list[str], every: list[Finding]
) -> Verdict:
    facts = startup.facts if startup is not None else {}
    summary = "First requests on new isolates are slow (start-up), later ones fast"
    if facts.get("live_startup_ms") is not None:
        summary += f"; the live version starts in {facts['live_startup_ms']} ms" + (
            f" (the one before: {facts['previous_startup_ms']} ms)"
            if facts.get("previous_startup_ms") is not None
            else ""
        )
    if facts.get("deployed"):
        summary += f", deployed {facts['deployed']}"
    return Verdict(
        RUNBOOK,
        Status.FAIL,
        "cold-start",
        summary + ".",
        [*signs, *evidence],
        _COLD_REMEDY,
        None,
        every,
    )


_EXTERNAL_REMEDIES = {
    "Stripe": (
        "Check Stripe's status page and the request log in the Stripe dashboard. "
        "In the Worker, give the Stripe client a timeout (stripe-node's `timeout` "
        "option) and few network retries, so a slow Stripe fails fast with a clear "
        "error instead of holding the page; the subscription page reads D1 and "
        "does not wait on Stripe. Re-run this runbook once Stripe is fast again."
    ),
    "MailChannels": (
        "The reset request waits for the MailChannels send before it answers: send "
        "within ctx.waitUntil after answering, or bound the fetch with "
        "AbortSignal.timeout; check MailChannels' status. Re-run this runbook after."
    ),
    "": (
        "Bound the outside call with a timeout and answer with a clear error when "
        "it expires; check the provider's status. Re-run this runbook after."
    ),
}
_COLD_REMEDY = (
    "Every new isolate runs the script's start-up before its first request: after "
    "a deploy, after idle, and when traffic needs more isolates. What is in your "
    "hands is that start-up work: move heavy work out of the script's top level "
    "into the handlers (or do it on first use) and drop large dependencies from "
    "the bundle (`wrangler deploy --dry-run --outdir dist` shows its size). If the "
    "last deployment made start-up slow, rolling back to the version before "
    "(api-down runbook, gated rollback) restores it while the fix is made. The "
    'prose runbook\'s "normal" holds for start-up times of tens of milliseconds.'
)


def _index_step(environment: Environment, incident_id: str) -> Mapping[str, Any]:
    phrase = create_index_phrase(environment)
    command = runbook_command(
        RUNBOOK,
        environment.name,
        {"incident_id": incident_id or INCIDENT_PLACEHOLDER},
        confirm=phrase,
    )
    return {
        "action": CREATE_INDEX_ACTION,
        "environment": environment.name,
        "index": HOT_INDEX,
        "sql": HOT_INDEX_SQL,
        "summary": f"create {HOT_INDEX} on manuscripts",
        "confirm": phrase,
        "command": command,
    }
