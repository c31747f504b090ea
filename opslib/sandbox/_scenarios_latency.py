"""Scenarios of the slow-responses runbook (RUNBOOK issue 5, PLATFORM.md 10.5).

- ``missing-index``: the indexes that lead with ``manuscripts.user_id``
  (``idx_manuscripts_user`` from schema.sql and the two composite indexes of
  migration 007) are absent from D1, so the manuscript list query of
  ``GET /manuscripts`` scans the whole table. The platform stand-in charges D1
  time by the real plan (``_slowquery``), so signed-in users wait seconds for
  their list while anonymous requests stay fast.
- ``slow-external-api``: Stripe answers in 3.5 to 5.5 s instead of well under a
  second. The billing-portal route, which waits on Stripe, is slow in the
  replayed hour (long wall time, little CPU time); the D1 plans are fine and the
  anonymous probe, which never reaches Stripe, is fast.
- ``cold-start``: version 6, deployed 12 minutes ago, takes 2.3 s to start an
  isolate (version 5 took 11 ms). Every request that starts an isolate pays it
  in CPU and wall time; warm isolates answer as fast as before. The probe's first
  requests start isolates in the operator's data centre, so each route's first
  answer is slow and the rest are fast.

The dropped indexes are a state of D1, injected after the reset; the slow
provider is a switch of the platform stand-in (``_timing``); the start-up time
belongs to the deployed version. Both of the latter replay an hour of traffic
(``_traffic``), so Workers Logs hold the times the routes really took.
"""

from __future__ import annotations

import sqlite3

from . import _analytics  # noqa: F401  registers the analytics routes
from ._scenarios import Scenario, _FaultContext, _new_version, register_scenario
from ._state import World
from ._timing import EXTERNAL_LATENCY
from ._traffic import replay_hour

RUNBOOK = "slow-responses"
DROPPED_INDEXES = (
    "idx_manuscripts_user_status_date",
    "idx_manuscripts_user_genre_date",
    "idx_manuscripts_user",
)
SLOW_SERVICE = "stripe"
SLOW_ROUTE = "POST /payments/create-portal-session"
SLOW_WAIT_MS = (3500.0, 5500.0)
COLD_START_MS = 2300.0


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


def _slow_stripe(world: World, now: float) -> None:
    low, high = SLOW_WAIT_MS
    world.scenario.switches[EXTERNAL_LATENCY] = {
        "service": SLOW_SERVICE,
        "wait_ms": [low, high],
    }
    world.scenario.details = {"service": SLOW_SERVICE, "route": SLOW_ROUTE}
    replay_hour(world, now)


def _deploy_slow_startup(ctx: _FaultContext) -> None:
    previous = ctx.main.versions[-1]
    message = "Render manuscript previews in the API Worker"
    version = _new_version(
        ctx.main, ctx.rng, ctx.now - 12 * 60, "upload", dict(previous.secrets), message
    )
    version.startup_ms = COLD_START_MS
    ctx.state.details = {
        "version": version.id,
        "startup_ms": COLD_START_MS,
        "previous_startup_ms": previous.startup_ms,
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
register_scenario(
    Scenario(
        "slow-external-api",
        RUNBOOK,
        "slow-external-api",
        "Stripe answers in 3.5-5.5 s: the billing-portal route waits on it.",
    ),
    after_reset=_slow_stripe,
)
register_scenario(
    Scenario(
        "cold-start",
        RUNBOOK,
        "cold-start",
        "Version 6, deployed 12 minutes ago, takes 2.3 s to start an isolate.",
    ),
    fault=_deploy_slow_startup,
    after_reset=replay_hour,
)
