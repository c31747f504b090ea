"""Which version to roll back to, and the gated rollback to it.

The rollback procedure (and deploy-verify, when it advises rolling back) picks the
version the way ``wrangler rollback`` does, the newest earlier deployment with one
version at 100 %, but skips a version that Workers Logs show failing: one whose
answers in the window were 5xx at ``BAD_VERSION_RATE`` or more. A version with no
traffic in the window has no evidence against it and stays eligible (the evidence
table says so). A version made before the last secret edit (a deployment the
API marks ``workers/triggered_by: secret``) is skipped with the reason: Cloudflare
refuses to deploy it (10220). An operator may name the version instead; it must be
one of the Worker's versions, not the live one, and not older than that edit.

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
    secret_change = last_secret_change(deployments, numbers)
    for row in rows:
        row["before_secret_change"] = _predates(row.get("number"), secret_change)
    chosen, why = _choose(rows, version, live, numbers, secret_change)
    facts = {
        "live_version": live,
        "chosen_version": chosen,
        "window_min": window_min,
        "secret_change": secret_change,
    }
    for row in rows:
        row["chosen"] = row["version"] == chosen
    status = Status.OK if chosen else Status.FAIL
    return Finding("rollback-target", status, why, rows, facts)


def last_secret_change(
    deployments: Sequence[Mapping[str, Any]], numbers: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The newest deployment a secret edit made (a secret put or delete deploys).

    Cloudflare refuses (code 10220, "secrets have changed") to deploy a version
    made before it without ``?force=true``: that version carries the old secrets.

    Returns:
        ``{"version", "number", "at"}`` of that deployment's version, or None when
        the deployments show no secret edit.
    """
    for deployment in deployments:
        annotations = deployment.get("annotations") or {}
        version = _single_version(deployment)
        if annotations.get("workers/triggered_by") == "secret" and version:
            return {
                "version": version,
                "number": numbers.get(version),
                "at": deployment.get("created_on"),
            }
    return None


def _predates(number: Any, secret_change: Mapping[str, Any] | None) -> bool:
    """True when a version number is older than the last secret edit's version."""
    if secret_change is None or secret_change.get("number") is None:
        return False
    return isinstance(number, int) and number < int(secret_change["number"])


def _secret_note(secret_change: Mapping[str, Any]) -> str:
    return (
        f"made before the secret change of {secret_change.get('at')} (version "
        f"{secret_change.get('number')}): Cloudflare refuses to deploy such a version "
        "(10220, secrets have changed); deploy a new version with the current "
        "secrets instead"
    )


def secrets_changed_advice(detail: str) -> str:
    """The next action after Cloudflare refused a rollback with 10220, else "".

    Repeating the same rollback is refused again; forcing it would put the old
    secrets back (undoing a rotation), so the advice is a new deploy.
    """
    if "10220" not in detail:
        return ""
    return (
        "do not repeat this rollback: Cloudflare refused it because the Worker's "
        "secrets changed since that version (10220); deploy a new version (the "
        "fixed code, with the current secrets), then run deploy-verify"
    )


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
    secret_change: Mapping[str, Any] | None = None,
) -> tuple[str | None, str]:
    if version:
        if version == live:
            return None, f"version {version} is the live version already"
        if version not in numbers:
            return None, f"version {version} is not one of the Worker's versions"
        if secret_change and _predates(numbers.get(version), secret_change):
            return None, f"version {version} was " + _secret_note(secret_change)
        return version, f"version {version} as named (live: {live})"
    skipped = [r for r in rows if r["before_secret_change"]]
    for row in rows:
        if row["before_secret_change"]:
            continue
        rate = row["5xx_rate"]
        if rate is None or rate < BAD_VERSION_RATE:
            seen = (
                "no traffic in the window" if rate is None else f"5xx rate {rate:.1%}"
            )
            return row["version"], (
                f"last healthy version {row['number']} ({row['version']}, {seen}); "
                f"live: {live}"
            )
    if skipped and secret_change:
        return None, (
            f"no earlier version to roll back to: the {len(skipped)} earlier ones "
            "were " + _secret_note(secret_change)
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
