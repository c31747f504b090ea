"""Loading a checked copy into an environment's D1, behind the gate.

Only a copy whose checks all passed is offered, only when asked, and never into
the environment named ``production`` from here. Applying first re-reads the
target's row counts (a plan whose target changed is refused), then takes a fresh
backup of the target in the worker's format (``backupType`` "pre-restore": that
backup is the before-image and the way back), and only then loads the copy
through D1's query API as D1 allows it: no explicit transactions, foreign keys
deferred within each call; tables dropped children first, created, filled parents
first in batches, then the indexes and views. ``backup_logs`` is left as it is,
since it describes the backups that really exist in the bucket.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._backupaction import take_backup
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._dump import insert_line, insert_prefix, quote_name
from ._finding import Finding
from ._restore import RestoreReport, table_rows, user_tables
from ._time import utcnow
from ._verdict import Verdict

logger = logging.getLogger(__name__)

ACTION = "restore-d1"
KEPT_TABLES = frozenset({"backup_logs"})
BATCH_ROWS = 200
_DEFER: tuple[str, list[Any]] = ("PRAGMA defer_foreign_keys = true", [])


def restore_phrase(environment: Environment, key: str) -> str:
    """The confirm phrase that authorises loading a backup into D1."""
    return f"restore {key} into D1 {environment.d1_database_name} in {environment.name}"


def plan_restore_into(
    environment: Environment, restored: Finding, verdict: Verdict, *, wanted: bool
) -> ActionPlan:
    """Plan loading the checked copy into the environment's D1.

    Args:
        environment: the target; never production.
        restored: the finding of the restore step (holds the copy).
        verdict: the restore verdict; only a healthy copy is offered.
        wanted: the run asked for it (parameter ``load``).
    """
    target = environment.d1_database_name
    report = restored.facts.get("report")
    reason = _refusal(environment, report, verdict, wanted)
    if reason or not isinstance(report, RestoreReport):
        return ActionPlan(
            "none", environment.name, target, f"no load into D1: {reason}"
        )
    key = str(restored.facts["key"])
    copy_rows = {
        t: n for t, n in table_rows(report.target).items() if t not in KEPT_TABLES
    }
    live = _live_counts(environment, copy_rows)
    return ActionPlan(
        action=ACTION,
        environment=environment.name,
        target=target,
        summary=f"replace {len(copy_rows)} tables of {target} with {key}",
        changes=tuple(
            {"what": f"table {t}", "from": f"{live.get(t)} rows", "to": f"{n} rows"}
            for t, n in copy_rows.items()
        ),
        before={"counts": live, "copy": str(report.target), "key": key},
        undo=(
            "a backup of the target is taken first (its key is in the result); "
            "restore that backup the same way"
        ),
        confirm_phrase=restore_phrase(environment, key),
    )


def _refusal(
    environment: Environment, report: Any, verdict: Verdict, wanted: bool
) -> str:
    if not wanted:
        return "not asked (set load = True to plan it)"
    if environment.name == "production":
        return (
            "never into production from here: load the checked copy with wrangler "
            "after a manual backup, with a second person"
        )
    if verdict.cause != "healthy" or not isinstance(report, RestoreReport):
        return f"the copy did not pass its checks (verdict {verdict.cause!r})"
    return ""


def _live_counts(
    environment: Environment, tables: dict[str, int]
) -> dict[str, int | None]:
    client = CloudflareClient(environment)
    try:
        tables_now = {
            r["name"]
            for r in client.d1_query(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )[0]["results"]
        }
        return {
            t: client.d1_query(f"SELECT COUNT(*) AS n FROM {quote_name(t)}")[0][
                "results"
            ][0]["n"]
            if t in tables_now
            else None
            for t in tables
        }
    finally:
        client.close()


def _apply_restore(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    before = plan.before
    live = _live_counts(environment, dict.fromkeys(before["counts"], 0))
    if live != before["counts"]:
        return ActionResult(
            plan,
            "refused",
            "the target's rows changed since the plan: re-run",
            operator,
        )
    backup = take_backup(environment, int(utcnow().timestamp() * 1000), "pre-restore")
    logger.info("pre-restore backup key=%s", backup["key"])
    client = CloudflareClient(environment)
    try:
        calls = 0
        for batch in _load_batches(Path(before["copy"])):
            client.d1_batch(batch)
            calls += 1
    finally:
        client.close()
    after = _live_counts(environment, dict.fromkeys(before["counts"], 0))
    expected = {
        t: n for t, n in table_rows(before["copy"]).items() if t not in KEPT_TABLES
    }
    outcome = "applied" if after == expected else "failed"
    detail = (
        f"{before['key']} loaded in {calls} D1 calls; backup taken first: {backup['key']}"
        if outcome == "applied"
        else f"row counts after the load differ: {after} against {expected}"
    )
    return ActionResult(
        plan,
        outcome,
        detail,
        operator,
        response={"pre_restore_backup": backup, "counts": after, "calls": calls},
    )


def _load_batches(copy: Path) -> Iterator[list[tuple[str, list[Any]]]]:
    """The D1 calls that replace the target's tables with the copy's."""
    connection = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        order = _parents_first(connection)
        schema = dict(
            connection.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
            ).fetchall()
        )
        views = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'view'"
        ).fetchall()
        yield (
            [_DEFER]
            + [(f"DROP VIEW IF EXISTS {quote_name(n)}", []) for n, _ in views]
            + [(f"DROP TABLE IF EXISTS {quote_name(t)}", []) for t in reversed(order)]
        )
        yield [(schema[t], []) for t in order]
        for table in order:
            yield from _insert_batches(connection, table)
        yield [
            (sql, [])
            for (sql,) in connection.execute(
                "SELECT sql FROM sqlite_master WHERE type IN ('index', 'view') "
                "AND sql IS NOT NULL ORDER BY type, name"
            )
        ]
    finally:
        connection.close()


def _insert_batches(
    connection: sqlite3.Connection, table: str
) -> Iterator[list[tuple[str, list[Any]]]]:
    cursor = connection.execute(f"SELECT * FROM {quote_name(table)}")
    prefix = insert_prefix(table, [d[0] for d in cursor.description])
    while rows := cursor.fetchmany(BATCH_ROWS):
        yield [_DEFER] + [(insert_line(prefix, row).rstrip(), []) for row in rows]


def _parents_first(connection: sqlite3.Connection) -> list[str]:
    """The copy's tables (kept ones left out), each after the tables it references."""
    tables = [t for t in user_tables(connection) if t not in KEPT_TABLES]
    parents = {
        t: {
            row[2]
            for row in connection.execute(f"PRAGMA foreign_key_list({quote_name(t)})")
            if row[2] != t and row[2] in tables
        }
        for t in tables
    }
    order: list[str] = []
    while len(order) < len(tables):
        ready = [t for t in tables if t not in order and parents[t] <= set(order)]
        order += ready or [t for t in tables if t not in order]
    return order


register_applier(ACTION, _apply_restore)
