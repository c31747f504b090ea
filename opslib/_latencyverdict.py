"""The verdict of the "slow responses" runbook.

A hot query that scans the whole manuscripts table is the cause D1 itself can
show: the verdict is ``missing-index`` and offers the gated creation of the
composite index of migration 007. A slow anonymous probe with every plan using
an index is not explained by the checks this runbook has (external APIs and cold
starts need the platform's own timings), so it is inconclusive; fast probes and
indexed plans are healthy.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from ._config import Environment
from ._finding import Finding, Status
from ._queryplan import HOT_INDEX, HOT_INDEX_SQL
from ._verdict import Verdict

RUNBOOK = "slow-responses"
CREATE_INDEX_ACTION = "create-index"


def create_index_phrase(environment: Environment, index: str = HOT_INDEX) -> str:
    """The confirm phrase that authorises creating ``index`` in the environment."""
    return f"create index {index} in {environment.name}"


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
    blind = [n for n, f in found.items() if f.status is Status.UNKNOWN]
    if blind or plans is None or latency is None:
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            "Some checks could not look: " + (", ".join(blind) or "missing steps"),
            evidence,
            "Fix access to the platform and D1, then re-run this runbook.",
            None,
            every,
        )
    if latency.status is Status.FAIL:
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            "Responses are slow but the hot queries use their indexes.",
            evidence,
            "Compare the Worker's wall time with its CPU time (Workers Metrics): "
            "a large gap is waiting on Stripe or the AI Gateway; slow first "
            "requests only after a deploy are cold starts.",
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


def _index_step(environment: Environment, incident_id: str) -> Mapping[str, Any]:
    phrase = create_index_phrase(environment)
    command = (
        f"runbook run {RUNBOOK} --env {environment.name} -p incident_id "
        f"{shlex.quote(incident_id or 'INC-...')} -p apply true "
        f"-p confirm {shlex.quote(phrase)}"
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
