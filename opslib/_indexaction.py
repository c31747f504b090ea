"""Create the missing manuscripts index, behind the gate.

The plan keeps the table's index list as the before-image. Applying re-reads the
list and refuses the plan when it changed since (someone created or dropped an
index), then runs the one ``CREATE INDEX IF NOT EXISTS`` statement. The follow-up
check is the query-plan step again: the hot queries must now search the index.

Creating an index reads the whole table once and holds D1's single writer while it
runs; on a large table, do it in a quiet hour. Undo: ``DROP INDEX`` of the same name.
"""

from __future__ import annotations

import logging

from ._actions import ActionPlan, ActionResult, register_applier
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errors import ServiceError
from ._latencyverdict import CREATE_INDEX_ACTION
from ._queryplan import TABLE, read_indexes
from ._verdict import Verdict

logger = logging.getLogger(__name__)


def plan_create_index(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan the index creation a missing-index verdict offers (or no action)."""
    step = verdict.gated_step or {}
    if step.get("action") != CREATE_INDEX_ACTION:
        reason = f"no index to create: the verdict's cause is {verdict.cause!r}"
        return ActionPlan("none", environment.name, TABLE, reason)
    client = CloudflareClient(environment)
    try:
        present = read_indexes(client)
    except ServiceError as error:
        return ActionPlan("none", environment.name, TABLE, f"cannot plan: {error}")
    finally:
        client.close()
    index = str(step["index"])
    if index in present:
        return ActionPlan("none", environment.name, TABLE, f"{index} exists already")
    return ActionPlan(
        action=CREATE_INDEX_ACTION,
        environment=environment.name,
        target=f"D1 {environment.d1_database_id} table {TABLE}",
        summary=f"create {index} on {TABLE}",
        changes=({"what": "index", "from": "absent", "to": index, "sql": step["sql"]},),
        before={"indexes": present},
        undo=f"DROP INDEX IF EXISTS {index}",
        confirm_phrase=str(step["confirm"]),
    )


def _apply_create_index(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    change = plan.changes[0]
    client = CloudflareClient(environment)
    try:
        live = read_indexes(client)
        if live != list(plan.before.get("indexes") or []):
            return ActionResult(
                plan,
                "refused",
                f"the indexes of {TABLE} are now {live}, not as planned: the plan "
                "is stale, re-run the runbook",
                operator,
            )
        logger.info("applying action=create-index index=%s", change["to"])
        results = client.d1_query(str(change["sql"]), read_only=False)
        after = read_indexes(client)
    finally:
        client.close()
    meta = results[0].get("meta") or {} if results else {}
    response = {"indexes": after, "duration_ms": meta.get("duration")}
    if change["to"] not in after:
        return ActionResult(
            plan,
            "failed",
            f"{change['to']} is still absent",
            operator,
            response=response,
        )
    return ActionResult(
        plan, "applied", f"{change['to']} exists", operator, response=response
    )


register_applier(CREATE_INDEX_ACTION, _apply_create_index)
