"""After a deploy: smoke checks, a watch of errors and latency, keep or roll back.

The smoke checks are the platform's own CI smoke test: anonymous
``GET /manuscripts`` answers 401 (the API is up and routes), the answer carries
``Strict-Transport-Security`` and, for an allowed origin, its own
``Access-Control-Allow-Origin``. The watch covers the first ``watch_s`` seconds
after the live deployment: it probes ``/manuscripts`` every few seconds until that
window has passed (not at all when it has passed already, as when the procedure
runs an hour after the deploy) and then reads Workers Logs for the live
version's answers over the window's minutes (at least ``MIN_LOG_WINDOW_MIN``, so
a short drill still sees traffic). The verdict is ``roll-back`` when a smoke check
fails or the live version's 5xx rate reaches ``ERROR_RATE``; else ``keep``, with
a warning when the probes' p95 passes ``SLOW_P95_MS``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._actions import ActionPlan
from ._apidown import read_deployments
from ._command import runbook_command
from ._config import Environment
from ._errorrate import recent_event_rows
from ._finding import Finding, Status, check
from ._platform import PlatformClient, Probe
from ._rollbackchoice import plan_version_rollback
from ._time import parse_timestamp
from ._verdict import Verdict

ERROR_RATE = 0.05
SLOW_P95_MS = 3000.0
MIN_LOG_WINDOW_MIN = 5
PROBE_PATH = "/manuscripts"
INTERVAL_S = 5.0


@check("smoke")
def check_smoke(environment: Environment) -> Finding:
    """The CI smoke test: 401 on /manuscripts, HSTS, and CORS for an allowed origin."""
    origin = environment.allowed_origins[0] if environment.allowed_origins else None
    client = PlatformClient(environment)
    try:
        probe = client.probe(PROBE_PATH, origin=origin)
    finally:
        client.close()
    if probe.status_code is None:
        return Finding("smoke", Status.UNKNOWN, f"no answer: {probe.body}")
    return smoke_finding(_smoke_rows(probe, origin))


def smoke_finding(rows: list[dict[str, Any]]) -> Finding:
    """The smoke finding of its rows: each failed check says what it got and wanted."""
    failed = [
        f"{r['check']}: answered {r['seen'] or 'nothing'}, expected {r['expected']}"
        for r in rows
        if not r["ok"]
    ]
    if failed:
        return Finding("smoke", Status.FAIL, "failed: " + "; ".join(failed), rows)
    return Finding("smoke", Status.OK, f"{len(rows)} smoke checks pass", rows)


def _smoke_rows(probe: Probe, origin: str | None) -> list[dict[str, Any]]:
    hsts = probe.headers.get("strict-transport-security", "")
    rows = [
        {
            "check": f"GET {PROBE_PATH} status",
            "ok": probe.status_code == 401,
            "seen": probe.status_code,
            "expected": 401,
        },
        {
            "check": "Strict-Transport-Security",
            "ok": "max-age=" in hsts,
            "seen": hsts,
            "expected": "max-age=...",
        },
    ]
    if origin:
        allow = probe.headers.get("access-control-allow-origin", "")
        rows.append(
            {
                "check": "CORS Access-Control-Allow-Origin",
                "ok": allow == origin,
                "seen": allow,
                "expected": origin,
            }
        )
    return rows


@check("watch")
def watch_deploy(
    environment: Environment,
    watch_s: int,
    *,
    interval_s: float = INTERVAL_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Finding:
    """Probe for ``watch_s`` seconds, then read the live version's answers in Logs.

    Args:
        environment: where the platform runs.
        watch_s: the window after the deploy to watch (the runbook says 15
            minutes); only what is left of it is waited for.
        interval_s: seconds between probes.
        sleep, clock: replaceable for tests.
    """
    live, deployed = _live_deployment(environment)
    left = deployed + watch_s - time.time() if deployed else watch_s
    wait_s = min(max(left, 0.0), float(watch_s))
    probes = _probe_for(environment, wait_s, interval_s, sleep, clock)
    window = max(MIN_LOG_WINDOW_MIN, math.ceil(watch_s / 60))
    events = [e for e in recent_event_rows(environment, window) if e["version"] == live]
    failed = sum(e["status"] >= 500 for e in events)
    rate = failed / len(events) if events else 0.0
    p95 = _p95([p.elapsed_ms for p in probes if p.status_code is not None])
    facts = {
        "live_version": live,
        "requests": len(events),
        "5xx": failed,
        "error_rate": round(rate, 4),
        "probes": len(probes),
        "probe_5xx": sum(p.is_server_error for p in probes),
        "p95_ms": round(p95, 1),
        "window_min": window,
        "waited_s": round(wait_s, 1),
    }
    return Finding("watch", _watch_status(facts), _watch_summary(facts), [facts], facts)


def _probe_for(
    environment: Environment,
    watch_s: float,
    interval_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> list[Probe]:
    deadline = clock() + watch_s
    probes: list[Probe] = []
    client = PlatformClient(environment)
    try:
        while True:
            probes.append(client.probe(PROBE_PATH))
            if clock() + interval_s > deadline:
                return probes
            sleep(interval_s)
    finally:
        client.close()


def _live_deployment(environment: Environment) -> tuple[str | None, float | None]:
    """The live version (when one serves 100 %) and when it was deployed."""
    deployments, _ = read_deployments(environment)
    if not deployments:
        return None, None
    versions = deployments[0].get("versions") or []
    version = str(versions[0]["version_id"]) if len(versions) == 1 else None
    created = deployments[0].get("created_on")
    at = parse_timestamp(str(created)).timestamp() if created else None
    return version, at


def _p95(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _watch_status(facts: dict[str, Any]) -> Status:
    if facts["probes"] and not facts["p95_ms"]:
        return Status.UNKNOWN  # no probe was answered
    if facts["error_rate"] >= ERROR_RATE or facts["probe_5xx"]:
        return Status.FAIL
    return Status.WARN if facts["p95_ms"] > SLOW_P95_MS else Status.OK


def _watch_summary(facts: dict[str, Any]) -> str:
    return (
        f"live version {facts['live_version']}: {facts['5xx']} of "
        f"{facts['requests']} answers 5xx ({facts['error_rate']:.1%}) in the last "
        f"{facts['window_min']} min; {facts['probes']} probes, "
        f"{facts['probe_5xx']} 5xx, p95 {facts['p95_ms']:.0f} ms; waited "
        f"{facts['waited_s']:.0f} s for the window after the deploy to pass"
    )


def decide_deploy(
    environment: Environment, findings: Sequence[Finding], choice: Finding
) -> Verdict:
    """Keep the deploy, or roll back to the version ``choice`` picked.

    Args:
        environment: where the platform runs.
        findings: the smoke, CORS and watch findings.
        choice: ``choose_rollback_version``'s finding, for the gated step.
    """
    found = [*findings, choice]
    evidence = [str(f) for f in found]
    failed = [f for f in findings if f.status is Status.FAIL]
    if failed:
        step = _rollback_step(environment, choice)
        next_action = (
            f"roll back: {step['command']}"
            if step
            else f"roll back by hand: {choice.summary}"
        )
        summary = "the deploy fails: " + "; ".join(f.summary for f in failed)
        return Verdict(
            "deploy-verify",
            Status.FAIL,
            "roll-back",
            summary,
            evidence,
            next_action,
            step,
            tuple(found),
        )
    if any(f.status is Status.UNKNOWN for f in findings):
        return Verdict(
            "deploy-verify",
            Status.UNKNOWN,
            "inconclusive",
            "a check could not look; watch again",
            evidence,
            "re-run",
            None,
            tuple(found),
        )
    slow = any(f.status is Status.WARN for f in findings)
    summary = "the deploy holds" + (" but responses are slow" if slow else "")
    return Verdict(
        "deploy-verify",
        Status.WARN if slow else Status.OK,
        "keep",
        summary,
        evidence,
        "keep the deploy",
        None,
        tuple(found),
    )


def _rollback_step(environment: Environment, choice: Finding) -> dict[str, Any] | None:
    plan = plan_version_rollback(environment, choice)
    if plan.is_noop:
        return None
    command = runbook_command(
        "rollback",
        environment.name,
        {"version": choice.facts["chosen_version"]},
        confirm=plan.confirm_phrase,
    )
    return {
        "action": "rollback",
        "to_version": choice.facts["chosen_version"],
        "from_version": choice.facts["live_version"],
        "confirm": plan.confirm_phrase,
        "command": command,
    }


def plan_deploy_rollback(
    environment: Environment, verdict: Verdict, choice: Finding
) -> ActionPlan:
    """The gated rollback the verdict offers; a no-op plan when it says keep."""
    if verdict.cause != "roll-back":
        return ActionPlan(
            "none",
            environment.name,
            environment.worker_name,
            f"no rollback: the verdict is {verdict.cause!r}",
        )
    return plan_version_rollback(environment, choice)
