"""Gated writes to D1: preview the rows, keep their before-image, write atomically.

``plan_d1_write`` takes one statement that ``classify_sql`` allows as a write and
reads, before anything changes, the rows it will touch: for ``UPDATE`` and
``DELETE`` a ``SELECT *`` of the same table with the same ``WHERE``; for
``INSERT`` the rows that already hold the new primary keys (there must be none).
Those rows, whole and with their primary keys, are the before-image, and their
number is the expected row count. The plan is refused (a no-op plan saying why)
when nothing matches, when more than ``max_rows`` rows match, when the table has
no primary key, when an ``UPDATE`` would change a primary key, or when a
``DELETE`` would take rows that other tables still reference (D1 enforces foreign
keys, so ``ON DELETE CASCADE`` would remove rows nobody previewed).

The statement that runs is the operator's, with one more condition: its
``WHERE`` also requires that exactly the previewed number of rows matches
(``AND (SELECT COUNT(*) FROM t WHERE ...) = n``). It is one statement, so D1 runs
it atomically: either all ``n`` rows change or none does. The plan shows that
guarded statement word for word. Applying re-reads the preview and refuses a
stale plan, saves the before-image (see ``_beforeimage``), runs the statement,
and reads the touched rows again as the after-image.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from ._actions import ActionPlan, ActionResult, register_applier
from ._beforeimage import (
    image_digest,
    redact_groups,
    redact_rows,
    save_before_image,
)
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errors import ServiceError
from ._finding import Finding, Status, check
from ._sqlguard import DIALECT, Statement, classify_sql

logger = logging.getLogger(__name__)

WRITE_ACTION = "d1-write"
DEFAULT_MAX_ROWS = 100
MAX_BIND_PARAMS = 100
_SYSTEM_TABLES = (
    "name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%'"
)


def write_phrase(
    environment: Environment,
    verb: str,
    count: int,
    table: str,
    index: str = "",
    *,
    digest: str = "",
    cascade: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The confirm phrase that authorises one gated write to D1.

    It names the verb, the rows, the table, every row a foreign key takes or
    nulls with a delete, and ``digest`` (``plan_digest``: the statement and the
    keys of the rows previewed) in brackets, so the phrase of one write never
    authorises another write of as many rows of the same table.
    """
    if verb == "create-index":
        return f"create index {index} on {table} in {environment.name}"
    words = [f"{verb} {_rows(count)} of {table}", cascade_words(cascade)]
    words.append(f"[{digest}]" if digest else "")
    words.append(f"in {environment.name}")
    return " ".join(word for word in words if word)


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def cascade_words(cascade: Sequence[Mapping[str, Any]]) -> str:
    """The rows a delete's foreign keys also change, such as ``and 3 cascaded
    rows (manuscripts 2, reviews 1 set null)``; empty without any."""
    if not cascade:
        return ""
    total = sum(len(group["rows"]) for group in cascade)
    parts = [
        f"{group['table']} {len(group['rows'])}"
        + (" set null" if group.get("effect") == "nulled" else "")
        for group in cascade
    ]
    return (
        f"and {total} cascaded {'row' if total == 1 else 'rows'} ({', '.join(parts)})"
    )


def plan_digest(
    sql: str,
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    cascade: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Eight hex digits of sha256 over the statement that runs, the primary keys
    of the rows it touches and of every row its cascade touches."""
    keyed = [[row[k] for k in key] for row in rows]
    groups = [
        [g["table"], g["effect"], [[r[k] for k in g["key"]] for r in g["rows"]]]
        for g in cascade
    ]
    text = json.dumps([sql, keyed, groups], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def quote_name(name: str) -> str:
    """Quote an identifier for SQLite (``"users"``)."""
    return exp.to_identifier(name, quoted=True).sql(DIALECT)


def plan_d1_write(
    environment: Environment,
    sql: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    reason: str = "",
) -> ActionPlan:
    """Plan one write to D1 with a preview and a before-image of the rows.

    Args:
        environment: where the database is.
        sql: one statement ``classify_sql`` allows as a write.
        max_rows: the most rows the write may touch.
        reason: why the write is made, for the record.

    Returns:
        The plan, or a no-op plan saying why no write can be planned.

    Raises:
        SQLRefusedError: for SQL that is not an allowed write.
    """
    statement = classify_sql(sql)
    if statement.is_read:
        return _none(environment, statement.table, "a read changes nothing")
    client = CloudflareClient(environment)
    try:
        return _Planner(environment, client, statement, max_rows, reason).plan()
    except ServiceError as error:
        return _none(environment, statement.table, f"cannot plan: {error}")
    finally:
        client.close()


def _none(environment: Environment, table: str, why: str) -> ActionPlan:
    return ActionPlan("none", environment.name, f"D1 table {table}", why)


class _Planner:
    """Reads what one write would touch and turns it into a plan."""

    def __init__(
        self,
        environment: Environment,
        client: CloudflareClient,
        statement: Statement,
        max_rows: int,
        reason: str,
    ) -> None:
        self.environment = environment
        self.client = client
        self.statement = statement
        self.max_rows = max_rows
        self.reason = reason
        self.table = statement.table

    def plan(self) -> ActionPlan:
        columns, key = read_table_shape(self.client, self.table)
        if not columns:
            return self._refuse(f"table {self.table} does not exist")
        if self.statement.verb == "create-index":
            return self._index_plan()
        if not key:
            return self._refuse(f"table {self.table} has no primary key to restore by")
        problem, select, params = self._preview(key)
        if problem:
            return self._refuse(problem)
        rows = run_select(self.client, select, params)
        problem = self._check_rows(rows, key)
        if problem:
            return self._refuse(problem)
        image = {"table": self.table, "key": key, "columns": columns, "rows": rows}
        if getattr(self, "cascade", None):
            image["cascade"] = self.cascade
        return self._write_plan(image, select, params)

    def _refuse(self, why: str) -> ActionPlan:
        return _none(self.environment, self.table, f"no write: {why}")

    def _preview(self, key: list[str]) -> tuple[str, str, list[Any]]:
        tree = self.statement.tree
        if isinstance(tree, exp.Insert):
            return self._insert_preview(tree, key)
        assert isinstance(tree, (exp.Update, exp.Delete))
        if isinstance(tree, exp.Update):
            assigned = {e.this.name for e in tree.expressions if isinstance(e, exp.EQ)}
            if assigned & set(key):
                return (
                    f"the UPDATE changes the primary key {sorted(assigned & set(key))}",
                    "",
                    [],
                )
        where = tree.args["where"].this
        select = exp.select("*").from_(tree.this.copy()).where(where.copy())
        return "", select.sql(DIALECT), []

    def _insert_preview(
        self, tree: exp.Insert, key: list[str]
    ) -> tuple[str, str, list[Any]]:
        names = [c.name for c in tree.this.expressions]
        if len(key) != 1 or key[0] not in names:
            problem = (
                f"the INSERT must give the single primary key column {key} of "
                f"{self.table}, so the undo can find the rows again"
            )
            return problem, "", []
        position = names.index(key[0])
        values = []
        for row in tree.expression.expressions:
            cell = row.expressions[position] if isinstance(row, exp.Tuple) else None
            if not isinstance(cell, exp.Literal):
                return (
                    f"the primary key {key[0]} must be a literal in every row",
                    "",
                    [],
                )
            values.append(cell.this if cell.is_string else cell.to_py())
        self.inserted_keys = values
        marks = ", ".join("?" * len(values))
        select = f"SELECT * FROM {quote_name(self.table)} WHERE {quote_name(key[0])} IN ({marks})"
        return "", select, values

    def _check_rows(self, rows: list[dict[str, Any]], key: list[str]) -> str:
        verb = self.statement.verb
        if verb == "insert":
            if rows:
                return f"{len(rows)} rows with these primary keys exist already"
            if len(self.inserted_keys) > self.max_rows:
                return f"it inserts {len(self.inserted_keys)} rows, more than max_rows={self.max_rows}"
            return ""
        if not rows:
            return f"no row of {self.table} matches the WHERE"
        if len(rows) > self.max_rows:
            return f"{len(rows)} rows match, more than max_rows={self.max_rows}"
        if verb == "delete":
            problem, self.cascade = self._cascade(rows)
            total = len(rows) + sum(len(c["rows"]) for c in self.cascade)
            if not problem and total > self.max_rows:
                problem = (
                    f"{total} rows would go with the cascade of foreign keys, more "
                    f"than max_rows={self.max_rows}"
                )
            return problem
        return ""

    def _cascade(self, rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
        """Follow the foreign keys to every row the delete also removes or nulls."""
        effects: dict[tuple[str, str], dict[str, Any]] = {}
        queue = [(self.table, rows)]
        while queue:
            parent, parent_rows = queue.pop(0)
            for ref in read_references(self.client, parent):
                values = [row[ref.parent_column] for row in parent_rows]
                found = _rows_where_in(self.client, ref.child, ref.column, values)
                if not found or ref.on_delete not in ("CASCADE", "SET NULL"):
                    continue
                _, key = read_table_shape(self.client, ref.child)
                if not key:
                    return f"{ref.child} references {parent} but has no primary key", []
                effect = "deleted" if ref.on_delete == "CASCADE" else "nulled"
                entry = effects.setdefault(
                    (ref.child, effect),
                    {"table": ref.child, "key": key, "effect": effect, "rows": {}},
                )
                new = [r for r in found if _key_of(r, key) not in entry["rows"]]
                entry["rows"].update({_key_of(r, key): r for r in new})
                if effect == "deleted" and new:
                    queue.append((ref.child, new))
        return "", _settle(effects)

    def _write_plan(
        self, image: dict[str, Any], select: str, params: list[Any]
    ) -> ActionPlan:
        verb = self.statement.verb
        count = len(image["rows"]) if verb != "insert" else len(self.inserted_keys)
        guarded = guarded_sql(self.statement, count)
        extra = {
            "expected_rows": count,
            "preview_sql": select,
            "preview_params": params,
            "inserted_keys": getattr(self, "inserted_keys", []),
        }
        change = {
            "what": f"rows of {self.table}",
            "from": f"{count} rows as previewed",
            "to": verb,
            "sql": guarded,
        }
        summary = f"{verb} {_rows(count)} of {self.table}" + _cascade_text(image)
        cascade = image.get("cascade") or []
        touched = (
            image["rows"]
            if verb != "insert"
            else [{image["key"][0]: value} for value in self.inserted_keys]
        )
        digest = plan_digest(guarded, touched, image["key"], cascade)
        phrase = write_phrase(
            self.environment, verb, count, self.table, digest=digest, cascade=cascade
        )
        return self._make_plan(image, extra, summary, change, phrase)

    def _make_plan(
        self,
        image: dict[str, Any],
        extra: dict[str, Any],
        summary: str,
        change: dict[str, Any],
        phrase: str,
    ) -> ActionPlan:
        recorded = {**image, "rows": redact_rows(image.get("rows") or [])}
        if image.get("cascade"):
            recorded["cascade"] = redact_groups(image["cascade"])
        before = {
            **recorded,
            **extra,
            "verb": self.statement.verb,
            "digest": image_digest(image),
            "reason": self.reason,
            "sql": self.statement.sql,
            "max_rows": self.max_rows,
        }
        return ActionPlan(
            action=WRITE_ACTION,
            environment=self.environment.name,
            target=f"D1 {self.environment.d1_database_name} table {self.table}",
            summary=summary,
            changes=(change,),
            before=before,
            undo=_undo_text(self.statement.verb),
            confirm_phrase=phrase,
            private={"image": image},
        )

    def _index_plan(self) -> ActionPlan:
        tree = self.statement.tree
        assert tree is not None
        name = tree.this.name
        indexes = read_index_names(self.client, self.table)
        if name in indexes:
            return self._refuse(f"index {name} exists already")
        image = {"table": self.table, "index": name, "indexes": indexes}
        change = {
            "what": "index",
            "from": "absent",
            "to": name,
            "sql": self.statement.sql.strip().rstrip(";"),
        }
        summary = f"create index {name} on {self.table}"
        phrase = write_phrase(self.environment, "create-index", 0, self.table, name)
        return self._make_plan(image, {}, summary, change, phrase)


def _cascade_text(image: Mapping[str, Any]) -> str:
    parts = [
        f"{len(c['rows'])} {c['effect']} in {c['table']}"
        for c in image.get("cascade") or []
    ]
    return f" (foreign keys also: {', '.join(parts)})" if parts else ""


def _undo_text(verb: str) -> str:
    how = {
        "update": "set every column of the rows back to the before-image",
        "delete": "insert the deleted rows again from the before-image",
        "insert": "delete the inserted rows by primary key",
        "create-index": "drop the index",
    }[verb]
    return f"runbook undo RECORD_ID: {how} (gated like this write)"


def guarded_sql(statement: Statement, count: int) -> str:
    """The statement with the row-count guard added to its WHERE.

    ``UPDATE``/``DELETE`` get ``AND (SELECT COUNT(*) FROM t WHERE ...) = count``,
    so they change all ``count`` rows or none; an ``INSERT`` is all or nothing
    already and is returned as parsed.
    """
    tree = statement.tree
    assert tree is not None
    if not isinstance(tree, (exp.Update, exp.Delete)):
        return tree.sql(DIALECT)
    guarded = tree.copy()
    where = guarded.args["where"].this
    counter = (
        exp.select("COUNT(*)")
        .from_(exp.to_table(quote_name(statement.table)))
        .where(where.copy())
    )
    condition = exp.and_(
        exp.paren(where.copy()),
        exp.EQ(this=exp.paren(counter), expression=exp.Literal.number(count)),
    )
    guarded.set("where", exp.Where(this=condition))
    return guarded.sql(DIALECT)


def read_table_shape(
    client: CloudflareClient, table: str
) -> tuple[list[str], list[str]]:
    """Return a table's columns in order and its primary key columns (by position)."""
    rows = run_select(client, f"PRAGMA table_info({quote_name(table)})", [])
    columns = [str(r["name"]) for r in rows]
    key = [str(r["name"]) for r in sorted(rows, key=lambda r: r["pk"]) if r["pk"]]
    return columns, key


@dataclass(frozen=True)
class Reference:
    """One foreign key: ``child.column`` references ``parent_column`` of a table."""

    child: str
    column: str
    parent_column: str
    on_delete: str


def read_references(client: CloudflareClient, table: str) -> list[Reference]:
    """Return every foreign key that references ``table``."""
    tables = run_select(
        client,
        f"SELECT name FROM sqlite_master WHERE type = 'table' AND {_SYSTEM_TABLES}",
        [],
    )
    found = []
    for row in tables:
        child = str(row["name"])
        for fk in run_select(
            client, f"PRAGMA foreign_key_list({quote_name(child)})", []
        ):
            if str(fk["table"]).lower() == table.lower():
                on_delete = str(fk.get("on_delete") or "NO ACTION").upper()
                found.append(
                    Reference(child, str(fk["from"]), str(fk["to"]), on_delete)
                )
    return found


def _rows_where_in(
    client: CloudflareClient, table: str, column: str, values: Sequence[Any]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(values), MAX_BIND_PARAMS):
        chunk = list(values[start : start + MAX_BIND_PARAMS])
        marks = ", ".join("?" * len(chunk))
        sql = (
            f"SELECT * FROM {quote_name(table)} WHERE {quote_name(column)} IN ({marks})"
        )
        found += run_select(client, sql, chunk)
    return found


def _key_of(row: Mapping[str, Any], key: list[str]) -> str:
    return json.dumps([row[k] for k in key])


def _settle(effects: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows both nulled and deleted count as deleted; rows in key order."""
    settled = []
    for (table, effect), entry in sorted(effects.items()):
        rows = entry["rows"]
        if effect == "nulled" and (table, "deleted") in effects:
            gone = effects[(table, "deleted")]["rows"]
            rows = {k: v for k, v in rows.items() if k not in gone}
        if rows:
            ordered = sort_rows(list(rows.values()), entry["key"])
            settled.append({**entry, "rows": ordered})
    return settled


def read_index_names(client: CloudflareClient, table: str) -> list[str]:
    """Return the names of a table's indexes, sorted."""
    rows = run_select(client, f"PRAGMA index_list({quote_name(table)})", [])
    return sorted(str(r["name"]) for r in rows)


def run_select(
    client: CloudflareClient, sql: str, params: Sequence[Any]
) -> list[dict[str, Any]]:
    """Run one read and return its rows."""
    results = client.d1_query(sql, list(params))
    return [dict(row) for row in (results[0].get("results") or [])] if results else []


def read_rows_by_key(
    client: CloudflareClient,
    table: str,
    key: list[str],
    values: Sequence[Sequence[Any]],
) -> list[dict[str, Any]]:
    """Read the rows whose primary key is among ``values`` (chunked to D1's limits)."""
    per_call = max(1, MAX_BIND_PARAMS // len(key))
    found: list[dict[str, Any]] = []
    for start in range(0, len(values), per_call):
        chunk = values[start : start + per_call]
        one = "(" + " AND ".join(f"{quote_name(k)} = ?" for k in key) + ")"
        sql = f"SELECT * FROM {quote_name(table)} WHERE " + " OR ".join(
            [one] * len(chunk)
        )
        found += run_select(client, sql, [v for row in chunk for v in row])
    return sorted(found, key=lambda row: [str(row[k]) for k in key])


def key_values(rows: Sequence[Mapping[str, Any]], key: list[str]) -> list[list[Any]]:
    """The primary key values of each row, in key order."""
    return [[row[k] for k in key] for row in rows]


def sort_rows(
    rows: Sequence[Mapping[str, Any]], key: list[str]
) -> list[dict[str, Any]]:
    """Rows in primary key order, as plain dicts (so two reads compare equal)."""
    return sorted((dict(r) for r in rows), key=lambda row: [str(row[k]) for k in key])


def _apply_d1_write(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    before = plan.before
    fresh = plan_d1_write(
        environment, before["sql"], max_rows=before["max_rows"], reason=before["reason"]
    )
    if fresh.before.get("digest") != before["digest"]:
        return ActionResult(
            plan,
            "refused",
            "the rows the write would touch changed since the plan "
            f"(now: {fresh.summary}): re-run to plan again",
            operator,
        )
    image = plan.private.get("image")
    if not image:
        detail = "the plan carries no before-image (it was not made here): plan again"
        return ActionResult(plan, "refused", detail, operator)
    save_before_image(image)
    client = CloudflareClient(environment)
    try:
        if before["verb"] == "create-index":
            return _apply_index(plan, client, operator)
        logger.info(
            "applying action=d1-write table=%s verb=%s", before["table"], before["verb"]
        )
        results = client.d1_query(str(plan.changes[0]["sql"]), read_only=False)
        after = read_rows_by_key(
            client, before["table"], before["key"], _touched_keys(before)
        )
    finally:
        client.close()
    return _write_result(plan, operator, results, after)


def _write_result(
    plan: ActionPlan,
    operator: str,
    results: list[dict[str, Any]],
    after: list[dict[str, Any]],
) -> ActionResult:
    before = plan.before
    meta = (results[0].get("meta") or {}) if results else {}
    changed = int(meta.get("changes") or 0)
    expected = before["expected_rows"]
    after_digest = image_digest({"after_rows": after})
    save_before_image({"after_rows": after})
    response = {
        "changes": changed,
        "after_rows": redact_rows(after),
        "after_digest": after_digest,
    }
    if before["verb"] != "delete" and changed != expected:
        # D1 counts the rows a cascade removes as changes too, so only deletes
        # may report more; the guard keeps any other count at 0 or exactly n.
        outcome, detail = (
            "refused",
            (
                f"{changed} rows changed, {expected} expected: the rows matching the "
                "WHERE changed between the check and the write; nothing was kept"
            ),
        )
        return ActionResult(plan, outcome, detail, operator, response=response)
    if before["verb"] == "delete" and changed < expected:
        detail = (
            f"{changed} rows changed, {expected} expected: the rows matching the "
            "WHERE changed between the check and the write; nothing was kept"
        )
        return ActionResult(plan, "refused", detail, operator, response=response)
    detail = f"{before['verb']} of {expected} rows of {before['table']} done"
    return ActionResult(plan, "applied", detail, operator, response=response)


def _apply_index(
    plan: ActionPlan, client: CloudflareClient, operator: str
) -> ActionResult:
    before = plan.before
    client.d1_query(str(plan.changes[0]["sql"]), read_only=False)
    after = read_index_names(client, before["table"])
    response = {"indexes": after, "digest": before["digest"]}
    if before["index"] not in after:
        return ActionResult(
            plan,
            "failed",
            f"{before['index']} is still absent",
            operator,
            response=response,
        )
    return ActionResult(
        plan, "applied", f"{before['index']} exists", operator, response=response
    )


def _touched_keys(before: Mapping[str, Any]) -> list[list[Any]]:
    if before["verb"] == "insert":
        return [[v] for v in before["inserted_keys"]]
    return key_values(before["rows"], before["key"])


@check("d1-write")
def check_d1_write(environment: Environment, plan: ActionPlan) -> Finding:
    """Read the rows a write touched again and say whether they are as it left them.

    After a delete none of the keys may remain; after an insert every key must be
    there; after an update every row must still be there and differ from its
    before-image. A create-index needs the index to exist.
    """
    before = plan.before
    client = CloudflareClient(environment)
    try:
        if before.get("verb") == "create-index":
            indexes = read_index_names(client, before["table"])
            there = before["index"] in indexes
            status = Status.OK if there else Status.FAIL
            return Finding(
                "d1-write",
                status,
                f"index {before['index']} {'exists' if there else 'is absent'}",
                facts={"indexes": indexes},
            )
        rows = read_rows_by_key(
            client, before["table"], before["key"], _touched_keys(before)
        )
    finally:
        client.close()
    return _judge_after(before, plan.private.get("image") or before, rows)


def _judge_after(
    before: Mapping[str, Any], image: Mapping[str, Any], rows: list[dict[str, Any]]
) -> Finding:
    verb, expected = before["verb"], before["expected_rows"]
    if verb == "delete":
        good, what = not rows, f"{len(rows)} of the {expected} deleted rows remain"
    elif verb == "insert":
        good, what = (
            len(rows) == expected,
            f"{len(rows)} of the {expected} inserted rows are there",
        )
    else:
        old = sort_rows(image["rows"], before["key"])
        changed = sum(1 for a, b in zip(old, rows) if a != b)
        good = len(rows) == expected and changed == expected
        what = f"{len(rows)} of {expected} rows are there, {changed} differ from the before-image"
    status = Status.OK if good else Status.FAIL
    return Finding(
        "d1-write",
        status,
        what,
        evidence=redact_rows(rows[:10]),
        facts={"rows": len(rows)},
    )


register_applier(WRITE_ACTION, _apply_d1_write)
