"""Scenarios of the slow-responses runbook (RUNBOOK issue 5, PLATFORM.md 10.5).

- ``missing-index``: the indexes that lead with ``manuscripts.user_id``
  (``idx_manuscripts_user`` from schema.sql and the two composite indexes of
  migration 007) are absent from D1, so the manuscript list query of
  ``GET /manuscripts`` scans the whole table. The platform stand-in charges D1
  time by the real plan (``_slowquery``), so signed-in users wait seconds for
  their list while anonymous requests stay fast.

The dropped indexes are a state of D1, injected after the reset.
"""

from __future__ import annotations

import sqlite3

from ._scenarios import Scenario, register_scenario
from ._state import World

RUNBOOK = "slow-responses"
DROPPED_INDEXES = (
    "idx_manuscripts_user_status_date",
    "idx_manuscripts_user_genre_date",
    "idx_manuscripts_user",
)


def _drop_indexes(world: World, now: float) -> None:
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        for name in DROPPED_INDEXES:
            connection.execute(f"DROP INDEX IF EXISTS {name}")
    finally:
        connection.close()
    world.scenario.details = {
        "table": "manuscripts",
        "dropped_indexes": list(DROPPED_INDEXES),
    }


register_scenario(
    Scenario(
        "missing-index",
        RUNBOOK,
        "missing-index",
        "D1 lacks the manuscripts(user_id, ...) indexes: the list query scans.",
    ),
    after_reset=_drop_indexes,
)
