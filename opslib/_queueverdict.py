"""The verdict of the "queue processing delays" runbook.

Causes, in the order they are weighed: a platform queue without a consumer, D1
behind R2 under the separate analysis consumer, dead letters failing with the AI
provider's 429, other dead letters, a big backlog that is draining by itself
(nothing to repair: wait), healthy, inconclusive. Dead letters can be put back on
their queue behind the gate, a few at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._command import INCIDENT_PLACEHOLDER, runbook_command
from ._config import Environment
from ._finding import Finding, Status
from ._unreached import blind_advice, unreached_verdict
from ._verdict import Verdict, not_ok

RUNBOOK = "queue-delays"
REQUEUE_ACTION = "requeue-dead-letters"
_SUMMARY = {
    "consumer-missing": "A platform queue has no consumer, so its backlog only grows.",
    "status-drift": (
        "Analyses finish (R2 says complete) but D1 still says queued: the analysis "
        "queue is consumed by the separate consumer, which never updates D1."
    ),
    "ai-rate-limited": (
        "Analysis jobs fail with the AI provider's 429 and end in the dead-letter "
        "queue after their retries."
    ),
    "jobs-failing-to-dlq": (
        "Jobs fail on every attempt and end in the dead-letter queue."
    ),
    "high-volume-draining": (
        "A large backlog after a burst of uploads, draining at a steady rate."
    ),
}
_NEXT = {
    "consumer-missing": (
        "Attach a consumer: add a [[queues.consumers]] block for the queue (with "
        "its dead_letter_queue) to the Worker that handles it and `wrangler "
        "deploy`. The waiting messages are kept for 4 days, then dropped."
    ),
    "status-drift": (
        "Move the analysis consumer back to the main Worker (consumer A, which "
        "updates D1 and enqueues assets) or give manuscript-analysis-consumer a D1 "
        "binding and status updates. The drifted rows (report ids in step 5) then "
        "need manuscripts.status set from their R2 status objects; this runbook "
        "does not offer that UPDATE."
    ),
    "ai-rate-limited": (
        "Wait for the provider's per-minute limits to recover (every retry reruns "
        "all three agents and spends tokens), add a retry_delay to the consumer, "
        "then put the dead letters back a few at a time."
    ),
    "jobs-failing-to-dlq": (
        "Fix the error the groups show and deploy; then put the dead letters back "
        "a few at a time and watch they do not return."
    ),
    "high-volume-draining": (
        "Nothing to repair: wait for the backlog to drain (see the estimate) and "
        "re-run this runbook if it stops falling."
    ),
}


def diagnose_queue_delays(
    findings: Iterable[Finding],
    *,
    environment: Environment,
    incident_id: str = "",
    max_messages: int = 5,
) -> Verdict:
    """Work out why queue processing is delayed from the runbook's findings.

    Args:
        findings: the findings of the steps (missing ones count as unknown).
        environment: the environment diagnosed, named in the gated step.
        incident_id: repeated in the gated step's command.
        max_messages: how many dead letters the gated re-enqueue may move.

    Returns:
        The verdict; for dead letters, with the gated re-enqueue.
    """
    found = {f.name: f for f in findings}
    unreached = unreached_verdict(
        RUNBOOK, found.values(), systems="the Cloudflare API (queues, D1) or R2"
    )
    if unreached is not None:
        return unreached
    cause = _cause(found)
    evidence, unknowns, blind = not_ok(found)
    everything = list(found.values())
    if cause == "healthy":
        status = Status.WARN if unknowns else Status.OK
        text = "Every queue has its consumer, nothing is dead-lettered, D1 agrees "
        text += "with R2 and no backlog is building." + blind
        return Verdict(
            RUNBOOK,
            status,
            cause,
            text,
            evidence,
            "No repair needed.",
            None,
            everything,
        )
    if cause == "inconclusive":
        text = "No checked cause explains the reported delays." + blind
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            cause,
            text,
            evidence,
            "Watch `wrangler tail manuscript-upload-api` for queue() errors."
            + blind_advice(everything),
            None,
            everything,
        )
    step = _requeue_step(environment, found, incident_id, max_messages)
    status = Status.WARN if cause == "high-volume-draining" else Status.FAIL
    return Verdict(
        RUNBOOK,
        status,
        cause,
        _SUMMARY[cause],
        evidence,
        _NEXT[cause],
        step,
        everything,
    )


def requeue_phrase(environment: Environment, count: int, dlq: str, queue: str) -> str:
    """The confirm phrase that authorises putting dead letters back on a queue."""
    return f"re-enqueue {count} messages from {dlq} to {queue} in {environment.name}"


def _cause(found: Mapping[str, Finding]) -> str:
    def status(name: str) -> Status:
        return found[name].status if name in found else Status.UNKNOWN

    def fact(name: str, key: str) -> Any:
        return found[name].facts.get(key) if name in found else None

    if status("queue-consumers") is Status.FAIL:
        return "consumer-missing"
    if status("status-drift") is Status.FAIL:
        return "status-drift"
    if status("dead-letters") is Status.FAIL:
        read = int(fact("dead-letters", "read") or 0)
        limited = int(fact("dead-letters", "rate_limited") or 0)
        return (
            "ai-rate-limited" if read and limited * 2 >= read else "jobs-failing-to-dlq"
        )
    behind = set(fact("queue-backlog", "behind") or ())
    draining = set(fact("backlog-trend", "draining") or ())
    if behind and behind <= draining and status("queue-consumers") is Status.OK:
        return "high-volume-draining"
    needed = ("queue-backlog", "queue-consumers", "dead-letters", "status-drift")
    if all(status(n) is Status.OK for n in needed):
        return "healthy"
    return "inconclusive"


def _requeue_step(
    environment: Environment,
    found: Mapping[str, Finding],
    incident_id: str,
    max_messages: int,
) -> dict[str, Any] | None:
    letters = found.get("dead-letters")
    if letters is None or letters.status is not Status.FAIL:
        return None
    by_queue = {k: int(v) for k, v in (letters.facts.get("by_queue") or {}).items()}
    dlq = max(by_queue, key=lambda name: by_queue[name])
    queue = _source_queue(found, dlq)
    if not queue or not by_queue[dlq]:
        return None
    count = min(max_messages, by_queue[dlq])
    phrase = requeue_phrase(environment, count, dlq, queue)
    command = runbook_command(
        RUNBOOK,
        environment.name,
        {"incident_id": incident_id or INCIDENT_PLACEHOLDER, "max_messages": count},
        confirm=phrase,
    )
    return {
        "action": REQUEUE_ACTION,
        "environment": environment.name,
        "dead_letter_queue": dlq,
        "queue": queue,
        "count": count,
        "summary": f"put {count} of {by_queue[dlq]} dead letters back on {queue}",
        "confirm": phrase,
        "command": command,
    }


def _source_queue(found: Mapping[str, Finding], dlq: str) -> str:
    consumers = found.get("queue-consumers")
    pairs = (consumers.facts.get("dead_letter_queues") or {}) if consumers else {}
    for queue, letters in pairs.items():
        if letters == dlq:
            return str(queue)
    return dlq.removesuffix("-dlq") + "-queue" if dlq.endswith("-dlq") else ""
