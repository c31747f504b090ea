"""Scenarios of the high-error-rate runbook (RUNBOOK issue 4, PLATFORM.md 10.4).

Each replays an hour of user traffic against the platform stand-in (``_traffic``),
so the analytics the runbook reads come from requests really served:

- ``endpoint-broken-after-deploy``: version 6, deployed 30 minutes ago, throws on
  ``GET /payments/subscription``; the other routes still work.
- ``missing-table``: ``usage_tracking`` is absent from D1 (its migration never
  ran here), so ``/payments/subscription`` (through the view
  ``user_subscriptions_with_usage``) and ``/admin/revenue`` answer 500.
- ``d1-timeouts``: a quarter of the D1-backed requests fail with D1's overload
  error.
- ``r2-throttling``: most uploads fail with R2's "reduce your request rate".
- ``free-tier-429s``: six FREE users call the same paths past their 10 per path
  per day and get 429; nothing fails for real.

The healthy scenario gets the same hour of normal traffic (with nearly no errors),
through a hook chained onto its own.

The deployment and the dropped table are states; the thrown errors, overload and
throttling are switches of the platform stand-in (``_errorroutes``).
"""

from __future__ import annotations

import sqlite3

from . import _analytics  # noqa: F401  registers the analytics routes
from ._errorroutes import BROKEN_ROUTE, D1_OVERLOADED, R2_THROTTLED
from ._scenarios import (
    _AFTER_RESET,
    AfterReset,
    Scenario,
    _FaultContext,
    _new_version,
    register_scenario,
)
from ._state import World
from ._traffic import replay_hour

RUNBOOK = "high-error-rate"
BROKEN_PATH = "/payments/subscription"
BROKEN_MESSAGE = (
    "TypeError: Cannot read properties of undefined (reading 'current_period_end')"
)
MISSING_TABLE = "usage_tracking"
FREE_USERS = 6


def _deploy_broken_route(ctx: _FaultContext) -> None:
    good = ctx.main.versions[-1]
    message = "Show the renewal date on the subscription page"
    version = _new_version(
        ctx.main, ctx.rng, ctx.now - 30 * 60, "upload", dict(good.secrets), message
    )
    ctx.state.details = {
        "bad_version": version.id,
        "good_version": good.id,
        "route": BROKEN_PATH,
    }


def _broken_route_traffic(world: World, now: float) -> None:
    world.scenario.switches[BROKEN_ROUTE] = {
        "version": world.scenario.details["bad_version"],
        "path": BROKEN_PATH,
        "message": BROKEN_MESSAGE,
    }
    replay_hour(world, now)


def _drop_table(world: World, now: float) -> None:
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        connection.execute(f"DROP TABLE IF EXISTS {MISSING_TABLE}")
    finally:
        connection.close()
    world.scenario.details = {
        "table": MISSING_TABLE,
        "routes": ["/payments/subscription", "/admin/revenue"],
    }
    replay_hour(world, now)


def _overload_d1(world: World, now: float) -> None:
    world.scenario.switches[D1_OVERLOADED] = 0.25
    world.scenario.details = {"share": 0.25}
    replay_hour(world, now)


def _throttle_r2(world: World, now: float) -> None:
    world.scenario.switches[R2_THROTTLED] = 0.7
    world.scenario.details = {"share": 0.7, "route": "/upload/manuscript"}
    replay_hour(world, now)


def _free_tier_traffic(world: World, now: float) -> None:
    world.scenario.details = {"free_users": FREE_USERS}
    replay_hour(world, now, free_users=FREE_USERS)


def _chain(first: AfterReset | None, then: AfterReset) -> AfterReset:
    def hook(world: World, now: float) -> None:
        if first is not None:
            first(world, now)
        then(world, now)

    return hook


_AFTER_RESET["healthy"] = _chain(_AFTER_RESET.get("healthy"), replay_hour)

register_scenario(
    Scenario(
        "endpoint-broken-after-deploy",
        RUNBOOK,
        "endpoint-broken-after-deploy",
        "Version 6, deployed 30 minutes ago, answers 500 on GET "
        "/payments/subscription; other routes work.",
    ),
    fault=_deploy_broken_route,
    after_reset=_broken_route_traffic,
)
register_scenario(
    Scenario(
        "missing-table",
        RUNBOOK,
        "missing-table",
        "D1 lacks usage_tracking: /payments/subscription and /admin/revenue answer 500.",
    ),
    after_reset=_drop_table,
)
register_scenario(
    Scenario(
        "d1-timeouts",
        RUNBOOK,
        "d1-timeouts",
        "A quarter of D1-backed requests fail with D1's overload error.",
    ),
    after_reset=_overload_d1,
)
register_scenario(
    Scenario(
        "r2-throttling",
        RUNBOOK,
        "r2-throttling",
        "Most uploads fail: R2 asks to reduce the request rate (10058).",
    ),
    after_reset=_throttle_r2,
)
register_scenario(
    Scenario(
        "free-tier-429s",
        RUNBOOK,
        "free-tier-429s",
        "FREE users get 429 past 10 calls per path per day; nothing fails for real.",
    ),
    after_reset=_free_tier_traffic,
)
