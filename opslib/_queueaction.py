"""Put dead letters back on their queue, behind the gate, a few at a time.

The plan peeks at the first N messages of the dead-letter queue (peek leases
nothing) and keeps their ids and bodies as the before-image. Applying pulls N
messages from the DLQ under a lease, refuses the plan when they are not the
planned ones (someone moved or added dead letters since), sends the bodies to the
source queue in one batch, and only then acks the leased copies, which deletes
them from the DLQ. If the send fails, the leases are released and the DLQ is as
it was. The follow-up check reads both backlogs again.

A re-sent message is a new message with a new id; there is no undo once a
consumer has taken it. Before that, its body is in the plan.
"""

from __future__ import annotations

import logging
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errors import ServiceError
from ._finding import Finding, Status
from ._queues import decode_body
from ._queueverdict import REQUEUE_ACTION
from ._verdict import Verdict

logger = logging.getLogger(__name__)

MAX_BATCH = 100
LEASE_MS = 120_000


def plan_requeue(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan the re-enqueue a queue-delays verdict offers (or no action).

    The dead letters are read now; their ids and bodies, and both backlogs, are
    the before-image.
    """
    step = verdict.gated_step or {}
    if step.get("action") != REQUEUE_ACTION:
        reason = f"no re-enqueue: the verdict's cause is {verdict.cause!r}"
        return ActionPlan("none", environment.name, "", reason)
    dlq, queue = str(step["dead_letter_queue"]), str(step["queue"])
    count = min(int(step["count"]), MAX_BATCH)
    client = CloudflareClient(environment)
    try:
        ids = _queue_ids(client, dlq, queue)
        letters = client.peek_messages(ids[dlq], batch_size=count)
        before = _backlogs(client, ids)
    except ServiceError as error:
        return ActionPlan("none", environment.name, dlq, f"cannot plan: {error}")
    finally:
        client.close()
    messages = [{"id": m.get("id"), "body": decode_body(m)} for m in letters]
    if not messages:
        return ActionPlan("none", environment.name, dlq, f"{dlq} is empty now")
    return ActionPlan(
        action=REQUEUE_ACTION,
        environment=environment.name,
        target=dlq,
        summary=f"move {len(messages)} dead letter(s) from {dlq} back to {queue}",
        changes=tuple(
            {"what": f"message {m['id']}", "from": dlq, "to": queue} for m in messages
        ),
        before={
            "dead_letter_queue": dlq,
            "queue": queue,
            "messages": messages,
            "backlog": before,
        },
        undo=(
            f"Re-sent messages get new ids in {queue} and are processed at once; "
            "before a consumer takes them they can be pulled and acked from "
            f"{queue}. Their bodies are in this plan's before-image."
        ),
        confirm_phrase=str(step["confirm"]),
    )


def _apply_requeue(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    dlq, queue = str(plan.before["dead_letter_queue"]), str(plan.before["queue"])
    planned = [str(m["id"]) for m in plan.before["messages"]]
    client = CloudflareClient(environment)
    try:
        ids = _queue_ids(client, dlq, queue)
        leased = client.pull_messages(
            ids[dlq], batch_size=len(planned), visibility_timeout_ms=LEASE_MS
        )
        leases = [str(m.get("lease_id")) for m in leased]
        if sorted(str(m.get("id")) for m in leased) != sorted(planned):
            client.ack_messages(ids[dlq], acks=(), retries=leases)
            return ActionResult(
                plan,
                "refused",
                f"the first {len(planned)} dead letters in {dlq} are not the planned "
                "ones any more: the plan is stale, re-run the runbook",
                operator,
            )
        logger.info(
            "applying action=%s dlq=%s count=%s", REQUEUE_ACTION, dlq, len(leased)
        )
        _send_or_release(client, ids, leased, leases)
        try:
            acked = client.ack_messages(ids[dlq], acks=leases)
        except ServiceError as error:
            logger.error("requeue sent but not acked dlq=%s error=%s", dlq, error)
            return ActionResult(
                plan,
                "failed",
                f"{len(leased)} message(s) were sent to {queue} but could not be "
                f"deleted from {dlq} ({error}); they reappear there when the lease "
                "ends in 2 minutes: delete them (ids in the plan) before re-running",
                operator,
                response={"sent": len(leased), "acked": 0},
            )
    finally:
        client.close()
    after = verify_requeue(environment, plan)
    return ActionResult(
        plan,
        "applied",
        f"{len(leased)} message(s) sent to {queue} and removed from {dlq}",
        operator,
        response={"sent": len(leased), "acked": acked.get("ackCount")},
        after=after,
    )


def verify_requeue(environment: Environment, plan: ActionPlan) -> Finding:
    """Follow-up check: the DLQ shrank and the queue grew by the messages moved."""
    dlq, queue = str(plan.before["dead_letter_queue"]), str(plan.before["queue"])
    moved = len(plan.before["messages"])
    was = plan.before["backlog"]
    client = CloudflareClient(environment)
    try:
        now = _backlogs(client, _queue_ids(client, dlq, queue))
    finally:
        client.close()
    rows = [
        {"queue": name, "before": was[name], "after": now[name]}
        for name in (dlq, queue)
    ]
    shrank, grew = was[dlq] - now[dlq], now[queue] - was[queue]
    if shrank == moved and grew == moved:
        text = f"{dlq} shrank by {moved} and {queue} grew by {moved}"
        return Finding("requeue-verify", Status.OK, text, rows)
    text = (
        f"{dlq} shrank by {shrank} and {queue} grew by {grew}, expected {moved} "
        "each; a consumer may already have taken some, or others moved messages"
    )
    return Finding("requeue-verify", Status.WARN, text, rows)


def _send_or_release(
    client: CloudflareClient,
    ids: dict[str, str],
    leased: list[dict[str, Any]],
    leases: list[str],
) -> None:
    dlq, queue = list(ids)
    try:
        client.send_messages(ids[queue], [decode_body(m) for m in leased])
    except ServiceError:
        client.ack_messages(ids[dlq], acks=(), retries=leases)
        raise


def _queue_ids(client: CloudflareClient, dlq: str, queue: str) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name in (dlq, queue):
        found = client.find_queue(name)
        if found is None:
            raise ServiceError(
                f"cloudflare: queue {name!r} not found in the account",
                system="cloudflare",
            )
        ids[name] = str(found["queue_id"])
    return ids


def _backlogs(client: CloudflareClient, ids: dict[str, str]) -> dict[str, int]:
    return {
        name: int(client.queue_metrics(queue_id).get("backlog_count") or 0)
        for name, queue_id in ids.items()
    }


register_applier(REQUEUE_ACTION, _apply_requeue)
