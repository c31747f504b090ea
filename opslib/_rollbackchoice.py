"""Which version to roll back to, and the gated rollback to it.

The rollback procedure (and deploy-verify, when it advises rolling back) picks the
version the way ``wrangler rollback`` does, the newest earlier deployment with one
version at 100 %, but skips a version that Workers Logs show failing: one whose
answers in the window were 5xx at ``BAD_VERSION_RATE`` or more. A version with no
traffic in the window has no evidence against it and stays eligible (the evidence
table says so). An operator may name the version instead; it must be one of the
Worker's versions and not the live one.

The rollback itself is the api-down runbook's gated action (``plan_rollback``),
so its phrase, staleness check and record are the same.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ._actions import ActionPlan, plan_rollback
from ._apidown import probe_api, read_deployments, rollback_step
from ._config import Environment
from ._errorrate import check_live_version, recent_event_rows
from ._finding import Finding, Status, check
from ._verdict import Verdict

logger = logging.getLogger(__name__)

BAD_VERSION_RATE = 0.05
WINDOW_MIN = 60


@check("rollback-target")
def choose_rollback_version(
    environment: Environment, version: str = "", *, window_min: int = WINDOW_MIN
) -> Finding:
    """Pick the version to roll back to: ``version``, else the last healthy one.

    Returns:
        A finding whose facts hold ``live_version`` and ``chosen_version`` (None
        when there is nothing to roll back to), with one evidence row per
        earlier deployment: its version, number, time, traffic and 5xx rate.
    """
    deployments, numbers = read_deployments(environment)
    if not deployments:
        return Finding(
            "rollback-target", Status.UNKNOWN, "the Worker has no deployments"
        )
    health = version_health(recent_event_rows(environment, window_min))
    live = _single_version(deployments[0])
    rows = _candidate_rows(deployments, numbers, health, live)
    chosen, why = _choose(rows, version, live, numbers)
    facts = {"live_version": live, "chosen_version": chosen, "window_min": window_min}
    for row in rows:
        row["chosen"] = row["version"] == chosen
    status = Status.OK if chosen else Status.FAIL
    return Finding("rollback-target", status, why, rows, facts)


def version_health(events: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Requests and 5xx answers per version id, from slimmed Workers Logs events."""
    requests: Counter[str] = Counter(e["version"] for e in events)
    failed: Counter[str] = Counter(e["version"] for e in events if e["status"] >= 500)
    return {
        v: {"requests": n, "5xx_rate": round(failed[v] / n, 3)}
        for v, n in requests.items()
    }


def _single_version(deployment: Mapping[str, Any]) -> str | None:
    versions = deployment.get("versions") or []
    if len(versions) == 1 and versions[0].get("percentage") == 100:
        return str(versions[0]["version_id"])
    return None


def _candidate_rows(
    deployments: Sequence[Mapping[str, Any]],
    numbers: Mapping[str, Any],
    health: Mapping[str, Mapping[str, Any]],
    live: str | None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for deployment in deployments[1:]:
        version = _single_version(deployment)
        if not version or version == live or version in {r["version"] for r in rows}:
            continue
        seen = health.get(version)
        rows.append(
            {
                "version": version,
                "number": numbers.get(version),
                "deployed": deployment.get("created_on"),
                "requests": seen["requests"] if seen else 0,
                "5xx_rate": seen["5xx_rate"] if seen else None,
            }
        )
    return rows


def _choose(
    rows: list[dict[str, Any]],
    version: str,
    live: str | None,
    numbers: Mapping[str, Any],
) -> tuple[str | None, str]:
    if version:
        if version == live:
            return None, f"version {version} is the live version already"
        if version not in numbers:
            return None, f"version {version} is not one of the Worker's versions"
        return version, f"version {version} as named (live: {live})"
    for row in rows:
        rate = row["5xx_rate"]
        if rate is None or rate < BAD_VERSION_RATE:
            seen = (
                "no traffic in the window" if rate is None else f"5xx rate {rate:.1%}"
            )
            return row["version"], (
                f"last healthy version {row['number']} ({row['version']}, {seen}); "
                f"live: {live}"
            )
    return None, "no earlier version at 100 % without a failing record to roll back to"


def plan_version_rollback(environment: Environment, choice: Finding) -> ActionPlan:
    """Plan the gated rollback to the chosen version (a no-op plan if none)."""
    live = choice.facts.get("live_version")
    chosen = choice.facts.get("chosen_version")
    if not chosen or not live:
        return ActionPlan(
            "none", environment.name, environment.worker_name, choice.summary
        )
    step = rollback_step(
        environment,
        str(live),
        str(chosen),
        runbook="rollback",
        parameters={"version": str(chosen)},
    )
    verdict = Verdict(
        "rollback", Status.WARN, "rollback-planned", choice.summary, gated_step=step
    )
    return plan_rollback(environment, verdict)


@check("rollback-check")
def verify_rollback(environment: Environment, version: str) -> Finding:
    """After a rollback: the version must be live and the API must answer as healthy."""
    live = check_live_version(environment, version)
    probe = probe_api(environment)
    status = Status.OK if live.is_ok and probe.is_ok else Status.FAIL
    return Finding(
        "rollback-check",
        status,
        f"{live.summary}; probe: {probe.summary}",
        [*live.evidence, *probe.evidence],
    )
