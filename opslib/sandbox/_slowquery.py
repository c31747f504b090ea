"""What a query costs on the D1 stand-in, by the plan SQLite really chose.

SQLite answers the sandbox's small tables in microseconds whatever the plan, so
the platform stand-in adds the time D1 would spend on a large table: when the
query plan of a statement is a full ``SCAN`` of a table, the route sleeps
``SCAN_MS_PER_ROW`` for every row of that table (the rows a scan reads). A plan
that searches an index adds nothing. The query itself runs on the real SQLite
file, so dropping an index slows the route and creating it again cures it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

SCAN_MS_PER_ROW = 25.0
MAX_SCAN_DELAY_S = 8.0


def scan_delay_s(
    connection: sqlite3.Connection, sql: str, params: Sequence[Any]
) -> float:
    """Return the delay a statement's plan costs: rows scanned times the row cost."""
    plan = connection.execute(f"EXPLAIN QUERY PLAN {sql}", list(params)).fetchall()
    delay = 0.0
    for row in plan:
        detail = str(row[-1])
        words = detail.split()
        if len(words) >= 2 and words[0] == "SCAN" and "COVERING" not in detail:
            table = words[1]
            rows = connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            delay += int(rows) * SCAN_MS_PER_ROW / 1000
    return min(delay, MAX_SCAN_DELAY_S)


def pay_for_plan(
    connection: sqlite3.Connection, sql: str, params: Sequence[Any]
) -> None:
    """Sleep for the time a statement's plan costs on D1 (see the module doc)."""
    delay = scan_delay_s(connection, sql, params)
    if delay > 0:
        logger.debug("d1 stand-in full scan delay_s=%.2f", delay)
        time.sleep(delay)
