"""How D1 runs the platform's hot queries, and which indexes it has for them.

The hot queries are those of ``GET /manuscripts`` (PLATFORM.md sections 1 and 3):
a user's manuscripts, optionally of one status, newest first, and their count.
The column is ``user_id``; the prose runbook's ``author_id`` and ``created_at`` do
not exist on this table, so its EXPLAIN would fail.

:func:`check_query_plans` runs ``EXPLAIN QUERY PLAN`` on each through the D1 API
and fails on a full ``SCAN manuscripts`` (a scan through an unrelated index, such
as ``SCAN manuscripts USING INDEX idx_manuscripts_created``, reads every row too).
:func:`check_indexes` lists the table's indexes (``PRAGMA index_list``) and names
the expected ones that are missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check

logger = logging.getLogger(__name__)

TABLE = "manuscripts"
# The composite index of migration 007 that serves every hot query.
HOT_INDEX = "idx_manuscripts_user_status_date"
HOT_INDEX_SQL = (
    f"CREATE INDEX IF NOT EXISTS {HOT_INDEX} "
    "ON manuscripts(user_id, status, uploaded_at DESC)"
)
EXPECTED_INDEXES = (
    "idx_manuscripts_user",
    "idx_manuscripts_hash",
    "idx_manuscripts_status",
    "idx_manuscripts_created",
    HOT_INDEX,
    "idx_manuscripts_user_genre_date",
)
# Bind values only shape the plan; no row needs to match.
HOT_QUERIES: Mapping[str, tuple[str, tuple[Any, ...]]] = {
    "list": (
        (
            "SELECT id, title, status, uploaded_at FROM manuscripts "
            "WHERE user_id = ? ORDER BY uploaded_at DESC LIMIT 20"
        ),
        ("plan-probe-user",),
    ),
    "list-by-status": (
        (
            "SELECT id, title, status, uploaded_at FROM manuscripts "
            "WHERE user_id = ? AND status = ? ORDER BY uploaded_at DESC LIMIT 20"
        ),
        ("plan-probe-user", "complete"),
    ),
    "count": (
        "SELECT COUNT(*) FROM manuscripts WHERE user_id = ?",
        ("plan-probe-user",),
    ),
}


def is_full_scan(detail: str, table: str = TABLE) -> bool:
    """True when a plan line reads every row of ``table``.

    ``SCAN t`` and ``SCAN t USING INDEX i`` read the whole table; a covering-index
    scan reads the whole index, which is as many rows. ``SEARCH`` lines use an
    index to find the rows.
    """
    words = detail.split()
    return len(words) >= 2 and words[0] == "SCAN" and words[1] == table


def plan_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``detail`` column of an EXPLAIN QUERY PLAN answer, in order."""
    rows = results[0].get("results") or [] if results else []
    return [str(row.get("detail", "")) for row in rows if isinstance(row, Mapping)]


@check("query_plans")
def check_query_plans(environment: Environment) -> Finding:
    """EXPLAIN QUERY PLAN of each hot query; fail on a full scan of manuscripts."""
    client = CloudflareClient(environment)
    rows: list[dict[str, Any]] = []
    try:
        for name, (sql, params) in HOT_QUERIES.items():
            lines = plan_lines(client.d1_query(f"EXPLAIN QUERY PLAN {sql}", params))
            scans = [line for line in lines if is_full_scan(line)]
            rows.append(
                {"query": name, "plan": " | ".join(lines), "full_scan": bool(scans)}
            )
    finally:
        client.close()
    scanning = [r["query"] for r in rows if r["full_scan"]]
    facts = {"plans": rows, "scanning": scanning}
    if scanning:
        summary = (
            f"{len(scanning)} of {len(rows)} hot queries scan the whole "
            f"manuscripts table: {', '.join(scanning)}"
        )
        return Finding("query_plans", Status.FAIL, summary, rows, facts)
    summary = f"all {len(rows)} hot queries search manuscripts through an index"
    return Finding("query_plans", Status.OK, summary, rows, facts)


def read_indexes(client: CloudflareClient, table: str = TABLE) -> list[str]:
    """The names of ``table``'s indexes, sorted (``PRAGMA index_list``)."""
    results = client.d1_query(f"PRAGMA index_list({table})")
    rows = results[0].get("results") or [] if results else []
    return sorted(str(r["name"]) for r in rows if isinstance(r, Mapping))


@check("indexes")
def check_indexes(environment: Environment) -> Finding:
    """List the manuscripts indexes and name the expected ones that are missing."""
    client = CloudflareClient(environment)
    try:
        present = read_indexes(client)
    finally:
        client.close()
    missing = [name for name in EXPECTED_INDEXES if name not in present]
    rows = [{"index": name, "present": name in present} for name in EXPECTED_INDEXES]
    rows += [
        {"index": name, "present": True}
        for name in present
        if name not in EXPECTED_INDEXES
    ]
    facts = {"present": present, "missing": missing}
    if missing:
        summary = f"{len(missing)} expected index(es) missing: {', '.join(missing)}"
        return Finding("indexes", Status.WARN, summary, rows, facts)
    summary = f"all {len(EXPECTED_INDEXES)} expected manuscripts indexes present"
    return Finding("indexes", Status.OK, summary, rows, facts)
