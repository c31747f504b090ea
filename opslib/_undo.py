"""Undo an applied action from its record: put the before-image back, behind the gate.

``plan_undo`` reads the last applied action of a record and builds a plan of the
``restore`` action: the statements that put the touched rows back as they were,
and the state the rows must be in now for that to be safe (as the action left
them). Applying re-reads that state and refuses when someone changed the rows
since, runs the statements as one D1 batch (all or nothing), and reads the rows
again: they must equal the before-image value for value.

What each action's undo does:

- ``d1-write``: an UPDATE's rows get every column back; deleted rows (and the
  rows a foreign-key cascade took with them) are inserted again, with foreign
  keys checked at the end of the batch, and columns a cascade set to NULL get
  their values back; inserted rows are deleted; a created index is dropped.
  The rows come from the before-image file the write saved (see
  ``_beforeimage``), since the record's copy is scrubbed.
- ``create-index`` (slow-responses): the index is dropped.
- ``verify-account`` (auth-broken): ``email_verified`` goes back to its old value.
- ``rollback``: the rollback action again, to the version it replaced (its own
  phrase, and the live version is checked first, as for any rollback).
- ``cancel-subscription`` (stripe): the D1 ``subscriptions`` row gets every column
  back and the user its ``subscription_tier``; Stripe's side stays as it is (a
  cancelled subscription cannot be reactivated).
- ``repair-subscription-row`` (payment-without-subscription): the inserted row
  goes, an updated row gets its columns back (``updated_at`` keeps the repair's
  time: the repair's before-image lacks it), the user's tier and the free rows
  it cancelled come back. Stripe is not touched either way.

Not undone from a record: cleared rate-limit counters (they start again at zero),
a password set by the reset runbook (the record holds no hash; the old one is
saved only in the before-images folder, for an administrator), re-enqueued
messages (they were delivered) and refunds (Stripe offers no reversal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._apidown import rollback_phrase
from ._beforeimage import load_before_image, redact_groups
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._dbwrite import (
    quote_name,
    read_index_names,
    read_rows_by_key,
    sort_rows,
)
from ._errorrate import check_live_version
from ._errors import ActionError
from ._finding import Finding, Status, check

logger = logging.getLogger(__name__)

RESTORE_ACTION = "restore"
DEFER_FOREIGN_KEYS = "PRAGMA defer_foreign_keys = true"


def undo_phrase(environment: Environment, action: str, record_id: str) -> str:
    """The confirm phrase that authorises undoing one record's action."""
    return f"undo {action} of record {record_id} in {environment.name}"


def find_applied_action(sidecar: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the last action result of a record whose outcome is ``applied``."""
    applied = [
        a
        for a in sidecar.get("actions") or []
        if isinstance(a, Mapping)
        and a.get("kind") == "result"
        and a.get("outcome") == "applied"
    ]
    return applied[-1] if applied else None


def plan_undo(environment: Environment, sidecar: Mapping[str, Any]) -> ActionPlan:
    """Plan the undo of the action a record applied (or a no-op plan saying why).

    Args:
        environment: where to undo; must be the record's environment.
        sidecar: the record's sidecar, as ``load_record`` returns it.
    """
    record_id = str(sidecar.get("id") or "")
    target = f"record {record_id}"
    if sidecar.get("missing"):
        return ActionPlan("none", environment.name, target, str(sidecar["missing"]))
    if sidecar.get("environment") != environment.name:
        why = f"the record is for {sidecar.get('environment')!r}, not {environment.name!r}"
        return ActionPlan("none", environment.name, target, why)
    result = find_applied_action(sidecar)
    if result is None:
        why = "the record holds no applied action, so there is nothing to undo"
        return ActionPlan("none", environment.name, target, why)
    if sidecar.get("undone_by"):
        why = f"already undone by record {sidecar['undone_by']}; nothing to undo"
        return ActionPlan("none", environment.name, target, why)
    action = str(result.get("action"))
    if action == "rollback":
        return _plan_rollback_back(environment, result, record_id)
    builder = _BUILDERS.get(action)
    if builder is None:
        why = f"{action} cannot be undone from a record ({result.get('undo')})"
        return ActionPlan("none", environment.name, target, why)
    try:
        steps = builder(result)
    except ActionError as error:
        return ActionPlan("none", environment.name, target, f"cannot undo: {error}")
    return ActionPlan(
        action=RESTORE_ACTION,
        environment=environment.name,
        target=target,
        summary=f"undo {action} of {record_id}{_by(result)}: {steps['summary']}",
        changes=tuple(
            {
                "what": s["what"],
                "from": "as the action left it",
                "to": "before-image",
                "sql": s["sql"],
            }
            for s in steps["statements"]
        )[:20],
        before={"record_id": record_id, "undone_action": action, **_recorded(steps)},
        undo="apply the recorded action again (re-run its runbook)",
        confirm_phrase=undo_phrase(environment, action, record_id),
        private={"record_id": record_id, **steps},
    )


def _by(result: Mapping[str, Any]) -> str:
    """Who applied the action being undone, as the plan names them."""
    operator = result.get("operator")
    return f" (applied by {operator})" if operator else ""


def undo_records_of(sidecars: Iterable[Mapping[str, Any]], record_id: str) -> list[str]:
    """The ids of the records that applied an undo of ``record_id``."""
    return [
        str(s.get("id"))
        for s in sidecars
        if s.get("runbook") == "undo"
        and ((find_applied_action(s) or {}).get("plan") or {})
        .get("before", {})
        .get("record_id")
        == record_id
    ]


def _recorded(steps: Steps) -> dict[str, Any]:
    """The steps as the record shows them: SQL without values, rows redacted."""
    return {
        **steps,
        "statements": [
            {"what": s["what"], "sql": s["sql"]} for s in steps["statements"]
        ],
        "expect": redact_groups(steps.get("expect") or []),
        "restored": redact_groups(steps.get("restored") or []),
    }


Steps = dict[str, Any]


def _plan_rollback_back(
    environment: Environment, result: Mapping[str, Any], record_id: str
) -> ActionPlan:
    """Undo a rollback: the rollback action again, to the version it replaced."""
    change = result["plan"]["changes"][0]
    replaced, restored = str(change["from"]), str(change["to"])
    return ActionPlan(
        action="rollback",
        environment=environment.name,
        target=environment.worker_name,
        summary=f"undo the rollback of {record_id}{_by(result)}: deploy version "
        f"{replaced} at 100 % again",
        changes=({"what": "live version", "from": restored, "to": replaced},),
        before={"live_version": restored, "percentage": 100, "record_id": record_id},
        undo=f"deploy version {restored} at 100 % again",
        confirm_phrase=rollback_phrase(environment, replaced),
    )


def _steps_for_write(result: Mapping[str, Any]) -> Steps:
    plan_before = result["plan"]["before"]
    image = load_before_image(str(plan_before["digest"]))
    verb = str(plan_before["verb"])
    if verb == "create-index":
        return _drop_index_steps(image["table"], image["index"], image["indexes"])
    after_digest = (result.get("response") or {}).get("after_digest")
    after = load_before_image(str(after_digest))["after_rows"] if after_digest else []
    table, key, rows = image["table"], image["key"], image["rows"]
    if verb == "update":
        statements = [_update_back(table, key, row) for row in rows]
        expect = [{"table": table, "key": key, "rows": after}]
    elif verb == "insert":
        statements = [_delete_by_key(table, key, row) for row in after]
        expect = [{"table": table, "key": key, "rows": after}]
    else:
        statements, expect = _reinsert(image)
    return {
        "summary": f"{len(rows) or len(after)} rows of {table} back as before",
        "statements": statements,
        "expect": expect,
        "restored": _restored(image, verb, after),
    }


def _reinsert(image: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    groups = [
        {
            "table": image["table"],
            "key": image["key"],
            "rows": image["rows"],
            "effect": "deleted",
        },
        *(image.get("cascade") or []),
    ]
    statements = [{"what": "foreign keys", "sql": DEFER_FOREIGN_KEYS, "params": []}]
    expect = []
    for group in groups:
        if group["effect"] == "deleted":
            statements += [_insert_row(group["table"], row) for row in group["rows"]]
            keys = [[row[k] for k in group["key"]] for row in group["rows"]]
            expect.append(
                {"table": group["table"], "key": group["key"], "rows": [], "keys": keys}
            )
        else:
            statements += [
                _update_back(group["table"], group["key"], row) for row in group["rows"]
            ]
    return statements, expect


def _restored(image: Mapping[str, Any], verb: str, after: list[Any]) -> list[Any]:
    """What the touched rows must read after the undo."""
    if verb == "insert":
        return [
            {
                "table": image["table"],
                "key": image["key"],
                "rows": [],
                "keys": [[r[k] for k in image["key"]] for r in after],
            }
        ]
    groups = [{"table": image["table"], "key": image["key"], "rows": image["rows"]}]
    groups += [
        {"table": g["table"], "key": g["key"], "rows": g["rows"]}
        for g in image.get("cascade") or []
    ]
    return groups


def _steps_for_index(result: Mapping[str, Any]) -> Steps:
    plan = result["plan"]
    index = str(plan["changes"][0]["to"])
    table = str(plan["target"]).rsplit(" ", 1)[-1]
    return _drop_index_steps(table, index, list(plan["before"].get("indexes") or []))


def _drop_index_steps(table: str, index: str, indexes: list[str]) -> Steps:
    return {
        "summary": f"drop index {index} of {table}",
        "statements": [
            {
                "what": f"index {index}",
                "sql": f"DROP INDEX IF EXISTS {quote_name(index)}",
                "params": [],
            }
        ],
        "expect": [],
        "index": {"table": table, "name": index, "before": sorted(indexes)},
    }


def _steps_for_verify_account(result: Mapping[str, Any]) -> Steps:
    row = result["plan"]["before"].get("row") or {}
    if "id" not in row or "email_verified" not in row:
        raise ActionError("the record's before-image has no users row", action="undo")
    after = {**row, "email_verified": 1}
    return {
        "summary": f"email_verified of user {row['id']} back to {row['email_verified']}",
        "statements": [
            {
                "what": f"users[{row['id']}].email_verified",
                "sql": "UPDATE users SET email_verified = ? WHERE id = ?",
                "params": [row["email_verified"], row["id"]],
            }
        ],
        "expect": [
            {
                "table": "users",
                "key": ["id"],
                "rows": [after],
                "columns": ["id", "email_verified"],
            }
        ],
        "restored": [
            {
                "table": "users",
                "key": ["id"],
                "rows": [row],
                "columns": ["id", "email_verified"],
            }
        ],
    }


def _steps_for_subscription_repair(result: Mapping[str, Any]) -> Steps:
    """Undo a subscription-row repair: the row, the user's tier, the free rows.

    The row the repair inserted is deleted (found by its Stripe id); a row it
    updated gets its columns back, except ``updated_at``, which the repair's
    before-image does not hold and which keeps the repair's time.
    """
    plan = result["plan"]
    sub_id, before = str(plan["target"]), plan["before"]
    user, row, free = before["user"], before["row"], before.get("free_rows") or []
    new = {str(c["what"]): c["to"] for c in plan["changes"]}
    statements, expect, restored = _subscription_row_steps(sub_id, row, new)
    statements.append(
        _update_back(
            "users",
            ["id"],
            {"subscription_tier": user["subscription_tier"], "id": user["id"]},
        )
    )
    expect.append(
        _group(
            "users",
            ["id"],
            [{"id": user["id"], "subscription_tier": new["users.subscription_tier"]}],
        )
    )
    restored.append(
        _group(
            "users",
            ["id"],
            [{"id": user["id"], "subscription_tier": user["subscription_tier"]}],
        )
    )
    statements += [_update_back("subscriptions", ["id"], r) for r in free]
    expect.append(
        _group(
            "subscriptions",
            ["id"],
            [{"id": r["id"], "status": "canceled"} for r in free],
        )
    )
    restored.append(_group("subscriptions", ["id"], [dict(r) for r in free]))
    return {
        "summary": f"the row of {sub_id}, the tier of user {user['id']} and "
        f"{len(free)} free rows back as before",
        "statements": statements,
        "expect": [g for g in expect if g["rows"] or g.get("keys")],
        "restored": [g for g in restored if g["rows"] or g.get("keys")],
    }


def _subscription_row_steps(
    sub_id: str, row: Any, new: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    key = ["stripe_subscription_id"]
    if row == "no row":
        delete = _delete_by_key(
            "subscriptions", key, {"stripe_subscription_id": sub_id}
        )
        present = _group("subscriptions", key, [{"stripe_subscription_id": sub_id}])
        gone = {**_group("subscriptions", key, []), "keys": [[sub_id]]}
        return [delete], [present], [gone]
    prefix = f"subscriptions[{sub_id}]."
    left = {k[len(prefix) :]: v for k, v in new.items() if k.startswith(prefix)}
    columns = [c for c in row if c != "id"]
    back = _update_back(
        "subscriptions", ["id"], {**{c: row[c] for c in columns}, "id": row["id"]}
    )
    expect = _group("subscriptions", key, [{**{k: row[k] for k in key}, **left}])
    restored = _group("subscriptions", key, [dict(row)])
    return [back], [expect], [restored]


def _group(table: str, key: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of a table to compare, on the columns the rows name."""
    columns = list(rows[0]) if rows else list(key)
    return {"table": table, "key": key, "rows": rows, "columns": columns}


def _steps_for_cancel(result: Mapping[str, Any]) -> Steps:
    """Undo a cancellation in D1: the subscription row and the user's tier.

    Stripe's side stays as the cancellation left it.
    """
    before = result["plan"]["before"]
    response = result.get("response") or {}
    row, user = before.get("row"), before.get("user")
    if not row:
        raise ActionError("the cancellation changed no D1 row", action="undo")
    statements = [_update_back("subscriptions", ["id"], row)]
    expect = [_group("subscriptions", ["id"], [response["after_row"]])]
    restored = [_group("subscriptions", ["id"], [row])]
    if user:
        statements.append(_update_back("users", ["id"], user))
        expect.append(_group("users", ["id"], [response["after_user"]]))
        restored.append(_group("users", ["id"], [user]))
    return {
        "summary": f"D1 row of {row['stripe_subscription_id']} and the user's tier "
        "back as before (Stripe's subscription stays as it is)",
        "statements": statements,
        "expect": expect,
        "restored": restored,
    }


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Steps]] = {
    "cancel-subscription": _steps_for_cancel,
    "repair-subscription-row": _steps_for_subscription_repair,
    "d1-write": _steps_for_write,
    "create-index": _steps_for_index,
    "verify-account": _steps_for_verify_account,
}


def _update_back(table: str, key: list[str], row: Mapping[str, Any]) -> dict[str, Any]:
    columns = [c for c in row if c not in key]
    sets = ", ".join(f"{quote_name(c)} = ?" for c in columns)
    where = " AND ".join(f"{quote_name(k)} = ?" for k in key)
    return {
        "what": f"{table}[{', '.join(str(row[k]) for k in key)}]",
        "sql": f"UPDATE {quote_name(table)} SET {sets} WHERE {where}",
        "params": [row[c] for c in columns] + [row[k] for k in key],
    }


def _insert_row(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    names = ", ".join(quote_name(c) for c in row)
    marks = ", ".join("?" * len(row))
    return {
        "what": f"{table} row",
        "sql": f"INSERT INTO {quote_name(table)} ({names}) VALUES ({marks})",
        "params": list(row.values()),
    }


def _delete_by_key(
    table: str, key: list[str], row: Mapping[str, Any]
) -> dict[str, Any]:
    where = " AND ".join(f"{quote_name(k)} = ?" for k in key)
    return {
        "what": f"{table}[{', '.join(str(row[k]) for k in key)}]",
        "sql": f"DELETE FROM {quote_name(table)} WHERE {where}",
        "params": [row[k] for k in key],
    }


def _read_group(client: CloudflareClient, group: Mapping[str, Any]) -> list[Any]:
    keys = group.get("keys") or [[r[k] for k in group["key"]] for r in group["rows"]]
    rows = read_rows_by_key(client, group["table"], group["key"], keys)
    wanted = group.get("columns")
    if wanted:
        rows = [{c: r[c] for c in wanted} for r in rows]
    return sort_rows(rows, group["key"])


def _expected(group: Mapping[str, Any]) -> list[Any]:
    rows = group["rows"]
    if group.get("columns"):
        rows = [{c: r[c] for c in group["columns"]} for r in rows]
    return sort_rows(rows, group["key"])


def _apply_restore(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    before = plan.private
    if not before.get("statements"):
        detail = "the plan carries no statements (it was not made here): plan again"
        return ActionResult(plan, "refused", detail, operator)
    client = CloudflareClient(environment)
    try:
        stale = _stale_groups(client, before)
        if stale:
            detail = (
                f"the rows of {', '.join(stale)} are no longer as the action left "
                "them: restoring would overwrite a later change; nothing changed"
            )
            return ActionResult(plan, "refused", detail, operator)
        logger.info("applying action=restore record=%s", before["record_id"])
        batch = [(s["sql"], s["params"]) for s in before["statements"]]
        client.d1_batch(batch)
    finally:
        client.close()
    detail = f"{len(batch)} statements ran as one batch"
    return ActionResult(plan, "applied", detail, operator)


def _stale_groups(client: CloudflareClient, before: Mapping[str, Any]) -> list[str]:
    if "index" in before:
        present = before["index"]["name"] in read_index_names(
            client, before["index"]["table"]
        )
        return [] if present else [f"index {before['index']['name']} (gone)"]
    return [
        group["table"]
        for group in before["expect"]
        if _read_group(client, group) != _expected(group)
    ]


@check("restore")
def check_restore(environment: Environment, plan: ActionPlan) -> Finding:
    """Read the restored rows and compare them, value for value, with the before-image."""
    if plan.action == "rollback":
        return check_live_version(environment, str(plan.changes[0]["to"]))
    before = plan.private
    client = CloudflareClient(environment)
    try:
        if "index" in before:
            now = read_index_names(client, before["index"]["table"])
            same = now == before["index"]["before"]
            status = Status.OK if same else Status.FAIL
            return Finding("restore", status, f"indexes are {now}")
        differ = [
            group["table"]
            for group in before["restored"]
            if _read_group(client, group) != _expected(group)
        ]
        total = sum(len(g["rows"]) for g in before["restored"])
    finally:
        client.close()
    if differ:
        return Finding(
            "restore",
            Status.FAIL,
            f"rows of {', '.join(differ)} differ from the before-image",
        )
    return Finding("restore", Status.OK, f"all {total} rows equal the before-image")


register_applier(RESTORE_ACTION, _apply_restore)
