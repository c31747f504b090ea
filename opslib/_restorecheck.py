"""Checks on a restored copy of the D1 database.

They read the scratch SQLite file a restore produced, with the platform's real
column names (``manuscripts.user_id``, not the ``author_id`` of the prose
runbook): orphans along every declared foreign key, NULL primary keys, row counts
against the dump's own INSERT counts and the backup's logged stats, the indexes
and views the platform needs, the backup log inside the copy, and the window of
data a restore of this backup loses.
"""

from __future__ import annotations

import datetime
import io
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._dump import iter_statements, quote_name
from ._finding import Finding, Status
from ._restore import RestoreReport, count_sql, read_views, table_rows, user_tables
from ._time import utcnow

HOUR = 3600.0


def check_restore_counts(
    report: RestoreReport, *, logged_stats: Mapping[str, Any] | None = None
) -> Finding:
    """Compare the restored rows with the dump's INSERTs and the logged stats.

    Fails when the counts differ, and when the dump holds no tables or no rows
    at all (the platform's database never is empty). Only logged counts that
    are numbers are compared; when there are none the finding warns that the
    log has no counts, rather than claiming the counts match it.

    Args:
        report: what the restore read.
        logged_stats: the ``stats`` JSON of the backup's ``backup_logs`` row
            (``{tables: [{name, rows}], totalRows}``), when known.
    """
    rows = table_rows(report.target)
    logged = {
        str(t.get("name")): int(t["rows"])
        for t in (logged_stats or {}).get("tables") or []
        if isinstance(t, Mapping) and isinstance(t.get("rows"), int)
    }
    if not report.tables or not sum(rows.values()):
        what = "no tables" if not report.tables else "no rows"
        return Finding(
            "restore-counts",
            Status.FAIL,
            f"the dump holds {what}: the platform's database always has its tables "
            "and rows (the seeded admin, earlier backup_logs), so this is no backup "
            "of it"
            + (f"; the log counts {sum(logged.values()):,} rows" if logged else ""),
            [{"tables": len(report.tables), "rows": sum(rows.values())}],
            {"mismatched": sorted(logged), "rows": rows, "empty": True},
        )
    evidence = []
    mismatched = []
    for table in sorted(set(rows) | set(report.inserts) | set(logged)):
        row = {
            "table": table,
            "restored": rows.get(table),
            "dump_inserts": report.inserts.get(table, 0),
            "logged": logged.get(table),
        }
        expected = {row["dump_inserts"]} | (
            {logged[table]} if table in logged else set()
        )
        if {row["restored"]} != expected:
            mismatched.append(table)
        evidence.append(row)
    if mismatched:
        return Finding(
            "restore-counts",
            Status.FAIL,
            f"row counts differ in {len(mismatched)} tables: {', '.join(mismatched)}",
            _mismatches_first(evidence, mismatched),
            {"mismatched": mismatched, "rows": rows},
        )
    if not logged:
        return Finding(
            "restore-counts",
            Status.WARN,
            f"{sum(rows.values()):,} rows in {len(rows)} tables, as in the dump's "
            "INSERTs; the backup log has no counts for this backup, so they are "
            "not checked against the log",
            evidence,
            {"mismatched": [], "rows": rows, "logged": False},
        )
    return Finding(
        "restore-counts",
        Status.OK,
        f"{sum(rows.values()):,} rows in {len(rows)} tables, as in the dump's "
        "INSERTs and the logged stats",
        evidence,
        {"mismatched": [], "rows": rows, "logged": True},
    )


def check_integrity(path: str | Path) -> Finding:
    """Count orphans along every foreign key and NULLs in every primary key."""
    connection = _read_only(path)
    try:
        problems = _problems(connection)
    finally:
        connection.close()
    bad = [p for p in problems if p["rows"]]
    if bad:
        return Finding(
            "integrity",
            Status.FAIL,
            f"{sum(p['rows'] for p in bad):,} rows break {len(bad)} rules, first "
            f"{bad[0]['rule']}",
            bad,
            {"problems": bad},
        )
    return Finding(
        "integrity",
        Status.OK,
        f"no orphans along {sum(p['kind'] == 'orphan' for p in problems)} foreign "
        "keys and no NULL primary keys",
        [p for p in problems if p["kind"] == "orphan"],
        {"problems": []},
    )


def integrity_queries(connection: sqlite3.Connection) -> list[dict[str, str]]:
    """The queries :func:`check_integrity` runs, one per rule, for a schema.

    Each item has ``kind`` ("orphan" or "null-key"), ``rule`` (as the finding
    names it), ``table`` and ``sql``: a ``SELECT COUNT(*)`` of the rows that
    break the rule, zero on a sound copy. Orphans are counted along every
    declared foreign key, NULLs in every primary-key column.
    """
    queries = []
    for table in user_tables(connection):
        name = quote_name(table)
        for key in connection.execute(f"PRAGMA foreign_key_list({name})"):
            parent, column, parent_column = key[2], key[3], key[4] or "rowid"
            child = quote_name(column)
            queries.append(
                {
                    "kind": "orphan",
                    "rule": f"{table}.{column} -> {parent}.{parent_column}",
                    "table": table,
                    "sql": f"SELECT COUNT(*) FROM {name} WHERE {child} IS NOT NULL "
                    f"AND {child} NOT IN (SELECT {quote_name(parent_column)} "
                    f"FROM {quote_name(parent)} "
                    # One NULL in the parent would make NOT IN match nothing.
                    f"WHERE {quote_name(parent_column)} IS NOT NULL)",
                }
            )
        info = connection.execute(f"PRAGMA table_info({name})").fetchall()
        for column in [row[1] for row in info if row[5]]:
            queries.append(
                {
                    "kind": "null-key",
                    "rule": f"{table}.{column} IS NULL",
                    "table": table,
                    "sql": f"SELECT COUNT(*) FROM {name} "
                    f"WHERE {quote_name(column)} IS NULL",
                }
            )
    return queries


def _problems(connection: sqlite3.Connection) -> list[dict[str, Any]]:
    """Run every integrity query, orphans first.

    When a foreign key's parent table is missing, every row of the child is an
    orphan.
    """
    problems = []
    queries = integrity_queries(connection)
    for query in sorted(queries, key=lambda q: q["kind"] != "orphan"):
        try:
            count = connection.execute(query["sql"]).fetchone()[0]
        except sqlite3.OperationalError:
            if query["kind"] != "orphan":
                raise
            count = connection.execute(count_sql(query["table"])).fetchone()[0]
        problems.append({"kind": query["kind"], "rule": query["rule"], "rows": count})
    return problems


def check_schema_objects(report: RestoreReport) -> Finding:
    """Check that the dump's indexes and the project's views exist in the copy."""
    connection = _read_only(report.target)
    try:
        present = {
            (kind, name)
            for kind, name in connection.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('index', 'view')"
            )
        }
    finally:
        connection.close()
    wanted = [("index", name) for name in report.indexes]
    wanted += [("view", name) for name in _project_views()]
    missing = [f"{kind} {name}" for kind, name in wanted if (kind, name) not in present]
    evidence = [
        {
            "object": f"{kind} {name}",
            "present": (kind, name) in present,
            "from": "schema (recreated)" if name in report.recreated else "dump",
        }
        for kind, name in wanted
    ]
    if missing:
        return Finding(
            "schema-objects",
            Status.FAIL,
            f"missing after the restore: {', '.join(missing)}",
            [row for row in evidence if not row["present"]],
            {"missing": missing, "recreated": list(report.recreated)},
        )
    note = (
        f"; the dump lacked the views {', '.join(report.recreated)}, recreated "
        "from the project's schema"
        if report.recreated
        else ""
    )
    return Finding(
        "schema-objects",
        Status.OK,
        f"{len(report.indexes)} indexes and {len(_project_views())} views present"
        + note,
        [row for row in evidence if str(row["object"]).startswith("view")],
        {"missing": [], "recreated": list(report.recreated)},
    )


def _project_views() -> list[str]:
    return [
        s.name
        for s in iter_statements(io.StringIO(read_views()))
        if s.kind == "create-view"
    ]


def check_backup_log_copy(report: RestoreReport) -> Finding:
    """Check the ``backup_logs`` rows inside the restored copy.

    Every success row names its ``.sql.gz`` file and has sizes and a duration,
    every failed row has an error, and no row is newer than the dump itself.
    """
    connection = _read_only(report.target)
    try:
        rows = [
            dict(zip(("filename", "status", "size", "duration", "error", "created"), r))
            for r in connection.execute(
                "SELECT filename, status, compressed_size, duration, error, created_at "
                "FROM backup_logs ORDER BY created_at"
            )
        ]
    except sqlite3.OperationalError:
        return Finding(
            "backup-log-copy", Status.WARN, "the copy holds no backup_logs table"
        )
    finally:
        connection.close()
    dumped = parse_time(report.generated_at)
    broken = [r for r in rows if _log_row_problem(r, dumped)]
    for row in broken:
        row["problem"] = _log_row_problem(row, dumped)
    if broken:
        return Finding(
            "backup-log-copy",
            Status.WARN,
            f"{len(broken)} of {len(rows)} backup_logs rows are inconsistent",
            broken,
            {"rows": len(rows), "broken": len(broken)},
        )
    last = _iso(rows[-1]["created"]) if rows else "none"
    return Finding(
        "backup-log-copy",
        Status.OK,
        f"{len(rows)} backup_logs rows, consistent; the newest is from {last}",
        rows[-3:],
        {"rows": len(rows), "broken": 0},
    )


def _log_row_problem(row: Mapping[str, Any], dumped: float | None) -> str:
    if row["status"] == "success":
        if not str(row["filename"] or "").endswith(".sql.gz"):
            return "success without a .sql.gz file name"
        if row["size"] is None or row["duration"] is None:
            return "success without size or duration"
    elif row["status"] == "failed" and not row["error"]:
        return "failed without an error"
    elif row["status"] not in ("success", "failed"):
        return f"unknown status {row['status']!r}"
    if dumped is not None and (row["created"] or 0) > dumped:
        return "newer than the dump"
    return ""


def check_data_loss_window(
    backup_time: str | float, *, incident_time: str | float | None = None
) -> Finding:
    """Say how much would be lost by restoring this backup: backup -> incident.

    Args:
        backup_time: when the backup was taken (ISO 8601 or epoch seconds).
        incident_time: when the data went bad; default now.
    """
    taken = parse_time(backup_time)
    until = parse_time(incident_time) if incident_time is not None else None
    until = until if until is not None else utcnow().timestamp()
    if taken is None:
        return Finding(
            "data-loss-window",
            Status.UNKNOWN,
            f"the backup's time {backup_time!r} cannot be read",
        )
    hours = (until - taken) / HOUR
    status = Status.OK if hours <= 24 else Status.WARN
    return Finding(
        "data-loss-window",
        status,
        f"{hours:.1f} h of changes would be lost: from {_iso(taken)} (backup) to "
        f"{_iso(until)} (incident); RPO target < 24 h",
        [{"backup": _iso(taken), "incident": _iso(until), "hours": round(hours, 1)}],
        {"hours": hours},
    )


def parse_time(value: str | float | None) -> float | None:
    """Read an ISO 8601 time (``Z`` allowed) or epoch seconds; None if unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _mismatches_first(
    evidence: list[dict[str, Any]], mismatched: list[str]
) -> list[dict[str, Any]]:
    return sorted(evidence, key=lambda row: row["table"] not in mismatched)


def _read_only(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)


def logged_stats(text: str | None) -> dict[str, Any] | None:
    """Parse a ``backup_logs.stats`` value; None when absent or unreadable."""
    try:
        parsed = json.loads(text or "")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
