"""Scenarios of the payment-without-subscription runbook (PLATFORM.md 5, 10.8).

Every one is a state of Stripe and D1 after a checkout went wrong; the sandbox's
Stripe (localstripe) is rebuilt from D1 after each reset, and these hooks add
what Stripe holds that D1 does not (switch ``stripe_extra``) or what Stripe says
about a row D1 got wrong (switch ``stripe_truth``):

- ``metadata-missing-user``: the checkout session carried ``user_id`` (snake
  case, as the prose runbook has it) instead of ``userId``; the webhook threw
  and answered 500, so Stripe has an active subscription and D1 no row.
- ``subscription-insert-failed``: the session's metadata is right and the user
  exists, but the webhook's INSERT failed (500); D1 has no row.
- ``user-deleted``: the user behind an active subscription was deleted from
  ``users`` (its rows went with it, ON DELETE CASCADE); Stripe still bills.
- ``events-out-of-order``: ``customer.subscription.updated`` (now active)
  arrived before ``checkout.session.completed`` and changed nothing; the row
  was then written from an older snapshot: status ``incomplete`` and the
  previous period.
"""

from __future__ import annotations

import random
import sqlite3
import string
from collections.abc import Iterator
from contextlib import contextmanager

from ._scenarios import Scenario, register_scenario
from ._state import World
from ._stripe import EXTRA_SWITCH, TRUTH_SWITCH, session_for

RUNBOOK = "payment-without-subscription"
DAY = 86_400
_FREE_USER_SQL = (
    "SELECT id, email FROM users WHERE email LIKE 'author%' AND email_verified = 1 "
    "AND subscription_tier = 'FREE' ORDER BY email LIMIT 1 OFFSET ?"
)
_PAID_ROW_SQL = (
    "SELECT s.stripe_subscription_id, s.stripe_customer_id, s.plan_type, "
    "s.current_period_start, s.created_at, s.user_id, u.email "
    "FROM subscriptions s JOIN users u ON u.id = s.user_id "
    "WHERE s.plan_type != 'free' AND s.status = 'active' "
    "ORDER BY s.stripe_subscription_id LIMIT 1 OFFSET ?"
)


@contextmanager
def _database(world: World) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(world.database)
    connection.execute("PRAGMA foreign_keys = ON")
    try:
        with connection:
            yield connection
    finally:
        connection.close()


def _stripe_id(rng: random.Random, prefix: str, length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


def _unrecorded_checkout(world: World, now: float, *, offset: int, key: str) -> None:
    """Put in Stripe a paid checkout of a free user that D1 never recorded.

    Args:
        world: the sandbox state (locked).
        now: the scenario's start.
        offset: which free author pays (by email order).
        key: the metadata key the session carries the user id under.
    """
    rng = random.Random(f"payment:{world.scenario.name}")
    with _database(world) as db:
        user_id, email = db.execute(_FREE_USER_SQL, (offset,)).fetchone()
    created = int(now) - 2 * 3600
    metadata = {key: user_id, "planType": "pro"}
    sub = {
        "id": _stripe_id(rng, "sub_", 24),
        "customer": _stripe_id(rng, "cus_", 14),
        "plan": "pro",
        "status": "active",
        "start": created,
        "cancel_at_period_end": False,
        "created": created,
        "metadata": metadata,
    }
    customer = {
        "id": sub["customer"],
        "email": email,
        "metadata": {"userId": user_id},
        "created": created - 60,
    }
    world.scenario.switches[EXTRA_SWITCH] = {
        "customers": [customer],
        "subscriptions": [sub],
        "sessions": [session_for(sub, metadata)],
    }
    world.scenario.details = {
        "subscription": sub["id"],
        "customer": sub["customer"],
        "user_id": user_id,
        "webhook_status": 500,
    }


def _metadata_missing_user(world: World, now: float) -> None:
    _unrecorded_checkout(world, now, offset=3, key="user_id")


def _subscription_insert_failed(world: World, now: float) -> None:
    _unrecorded_checkout(world, now, offset=5, key="userId")


def _user_deleted(world: World, now: float) -> None:
    with _database(world) as db:
        row = db.execute(_PAID_ROW_SQL, (2,)).fetchone()
        sub_id, cus_id, plan, start, created, user_id, email = row
        db.execute("DELETE FROM users WHERE id = ?", (user_id,))
    metadata = {"userId": user_id, "planType": plan}
    sub = {
        "id": sub_id,
        "customer": cus_id,
        "plan": plan,
        "status": "active",
        "start": start,
        "cancel_at_period_end": False,
        "created": created,
        "metadata": metadata,
    }
    world.scenario.switches[EXTRA_SWITCH] = {
        "customers": [{"id": cus_id, "email": email, "metadata": {"userId": user_id}}],
        "subscriptions": [sub],
        "sessions": [session_for(sub, metadata)],
    }
    world.scenario.details = {"subscription": sub_id, "user_id": user_id}


def _events_out_of_order(world: World, now: float) -> None:
    with _database(world) as db:
        row = db.execute(_PAID_ROW_SQL, (4,)).fetchone()
        sub_id, _cus, _plan, start, _created, user_id, _email = row
        db.execute(
            "UPDATE subscriptions SET status = 'incomplete', current_period_start = ?, "
            "current_period_end = ? WHERE stripe_subscription_id = ?",
            (start - 30 * DAY, start, sub_id),
        )
    world.scenario.switches[TRUTH_SWITCH] = {
        sub_id: {"status": "active", "start": start}
    }
    world.scenario.details = {
        "subscription": sub_id,
        "user_id": user_id,
        "d1_status": "incomplete",
    }


register_scenario(
    Scenario(
        "metadata-missing-user",
        RUNBOOK,
        "metadata-missing-user",
        "A paid checkout's session has user_id, not userId; the webhook failed, no row.",
    ),
    after_reset=_metadata_missing_user,
)
register_scenario(
    Scenario(
        "subscription-insert-failed",
        RUNBOOK,
        "subscription-insert-failed",
        "A paid checkout with good metadata; the webhook's INSERT failed (500), no row.",
    ),
    after_reset=_subscription_insert_failed,
)
register_scenario(
    Scenario(
        "user-deleted",
        RUNBOOK,
        "user-deleted",
        "The user behind an active Stripe subscription was deleted from D1.",
    ),
    after_reset=_user_deleted,
)
register_scenario(
    Scenario(
        "events-out-of-order",
        RUNBOOK,
        "events-out-of-order",
        "A subscription row holds status incomplete and last period; Stripe says active.",
    ),
    after_reset=_events_out_of_order,
)
