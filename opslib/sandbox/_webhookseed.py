"""The Stripe webhook endpoint and recent events seeded at every reset.

One endpoint points at the platform stand-in's ``/webhooks/stripe``, pinned to
the API version the handler is written for, subscribed to the six event types
the platform handles, with the signing secret whose copy the operator keeps in
the secrets file. Five recent events concern the three paid subscriptions with
the highest ids (the payment scenarios pick theirs from the lowest): a
``customer.subscription.updated`` for each and an ``invoice.payment_succeeded``
for two of them, between 50 and 10 minutes old. The localstripe child renders
them from its subscriptions and delivers them at once, so on a healthy platform
none stays pending and two ``payment_history`` rows are written.

A scenario changes the endpoint through the switch ``stripe_webhook_endpoint``
(for example its ``status`` or ``api_version``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from ._state import World
from ._webhooks import HANDLED

ENDPOINT_SWITCH = "stripe_webhook_endpoint"
HANDLER_API_VERSION = "2024-10-28.acacia"
BASIL = "2025-03-31.basil"
# Stripe's own delivery timeout is longer; the sandbox's is scaled down so that
# a slow-handler drill takes seconds.
DELIVERY_TIMEOUT_S = 1.0
_SUBS_SQL = (
    "SELECT stripe_subscription_id FROM subscriptions "
    "WHERE plan_type != 'free' AND status = 'active' "
    "AND stripe_subscription_id IS NOT NULL "
    "ORDER BY stripe_subscription_id DESC LIMIT 3"
)
# (minutes ago, event type, which of the three subscriptions)
_EVENTS = (
    (50, "customer.subscription.updated", 0),
    (45, "invoice.payment_succeeded", 0),
    (30, "customer.subscription.updated", 1),
    (20, "invoice.payment_succeeded", 1),
    (10, "customer.subscription.updated", 2),
)


def endpoint_id(world: World) -> str:
    """The seeded endpoint's id (stable for one environment)."""
    digest = hashlib.sha256(world.environment.name.encode()).hexdigest()
    return "we_" + digest[:24]


def webhook_seed(world: World, url: str, secret: str) -> dict[str, Any]:
    """The endpoint and the events the localstripe child creates and delivers."""
    endpoint = {
        "id": endpoint_id(world),
        "url": url,
        "api_version": HANDLER_API_VERSION,
        "status": "enabled",
        "enabled_events": list(HANDLED),
        "description": "manuscript platform",
        "created": int(world.started_at) - 40 * 86_400,
        "secret": secret,
    }
    endpoint.update(world.scenario.switches.get(ENDPOINT_SWITCH) or {})
    subs = _paid_subscriptions(world)
    events = [
        {
            "type": kind,
            "subscription": subs[index],
            "created": int(world.started_at) - minutes * 60,
        }
        for minutes, kind, index in _EVENTS
        if index < len(subs)
    ]
    return {"endpoint": endpoint, "events": events}


def _paid_subscriptions(world: World) -> list[str]:
    connection = sqlite3.connect(world.database)
    try:
        rows = connection.execute(_SUBS_SQL).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()
    return [str(row[0]) for row in rows]
