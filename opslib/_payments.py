"""Checks of the "payment successful but subscription not created" runbook.

What the platform does (PLATFORM.md sections 1 and 5): checkout puts the
metadata ``userId`` and ``planType`` (camelCase; the prose runbook's ``user_id``
is wrong) on the session and the subscription; on ``checkout.session.completed``
the webhook INSERTs a ``subscriptions`` row (column ``plan_type``, Stripe's ids,
status and periods in seconds) and sets ``users.subscription_tier``. Any
exception answers 500 and Stripe retries; ``customer.subscription.updated`` only
UPDATEs an existing row, so an early one changes nothing. The free row made at
registration is never cancelled, and the view ``user_subscriptions_with_usage``
then has two active rows for the user; the platform takes the first one, which
may be the free one.

The checks compare Stripe (the truth about money) with D1, for one customer or
for every active subscription: rows missing or stale, the checkout session's
metadata, whether the user still exists, and which plan the platform shows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check, unknown
from ._stripe import StripeReader

logger = logging.getLogger(__name__)

PAID_PLANS = ("pro", "enterprise")
ONE_TIME_AMOUNT = 1000
INSPECTED = 20
_CHUNK = 80
_ROW_COLUMNS = (
    "id, user_id, stripe_subscription_id, stripe_customer_id, plan_type, status, "
    "current_period_start, current_period_end, cancel_at_period_end"
)


@check("stripe-subscriptions")
def check_stripe_subscriptions(environment: Environment, customer: str = "") -> Finding:
    """List Stripe's active subscriptions, for one customer (id or email) or all.

    Args:
        environment: where Stripe and D1 are.
        customer: "" for every active subscription, a ``cus_`` id, or an email.
    """
    reader = StripeReader(environment)
    try:
        ids = _customer_ids(reader, customer)
        if customer and not ids:
            text = "Stripe has no customer with that id or email"
            facts: dict[str, Any] = {"subs": [], "customers": []}
            return Finding("stripe-subscriptions", Status.WARN, text, (), facts)
        subs = [
            _compact(s)
            for cus in ids or [""]
            for s in reader.active_subscriptions(customer=cus)
        ]
    finally:
        reader.close()
    text = f"{len(subs)} active subscription(s) in Stripe"
    rows = [{k: s[k] for k in ("id", "customer", "plan", "start", "end")} for s in subs]
    facts = {"subs": subs, "customers": ids}
    return Finding("stripe-subscriptions", Status.OK, text, rows, facts)


@check("subscription-rows")
def check_subscription_rows(environment: Environment, stripe_subs: Finding) -> Finding:
    """Find the D1 row of every active Stripe subscription; flag missing or stale."""
    subs: list[dict[str, Any]] = list(stripe_subs.facts.get("subs") or [])
    if stripe_subs.status is Status.UNKNOWN:
        return Finding("subscription-rows", Status.UNKNOWN, "Stripe could not be read")
    rows = read_rows(environment, [s["id"] for s in subs])
    missing = [s for s in subs if s["id"] not in rows]
    stale = [
        {"sub": s, "row": rows[s["id"]]}
        for s in subs
        if s["id"] in rows and differences(s, rows[s["id"]])
    ]
    evidence = [
        {
            "subscription": s["id"],
            "problem": "no row",
            "stripe": s["status"],
            "d1": None,
        }
        for s in missing
    ]
    evidence += [
        {
            "subscription": p["sub"]["id"],
            "problem": "stale: " + ", ".join(differences(p["sub"], p["row"])),
            "stripe": p["sub"]["status"],
            "d1": p["row"]["status"],
        }
        for p in stale
    ]
    facts = {"missing": missing, "stale": stale, "rows": rows}
    if not missing and not stale:
        text = f"all {len(subs)} active Stripe subscription(s) have a matching row"
        return Finding("subscription-rows", Status.OK, text, evidence, facts)
    text = (
        f"{len(missing)} without a row, {len(stale)} with a stale row (of {len(subs)})"
    )
    return Finding("subscription-rows", Status.FAIL, text, evidence, facts)


_NOT_COMPARED = "skipped: Stripe's subscriptions were not compared with D1"


@check("checkout-metadata")
def check_checkout_metadata(environment: Environment, rows: Finding) -> Finding:
    """Read the checkout session of each subscription without a good row.

    A session lacking ``userId`` or ``planType`` (or carrying the snake_case
    ``user_id`` instead) makes the webhook fail before it writes anything.
    """
    if rows.status is Status.UNKNOWN:
        return unknown("checkout-metadata", _NOT_COMPARED)
    problems = _problem_subs(rows)
    if not problems:
        return Finding("checkout-metadata", Status.OK, "no subscription to inspect")
    reader = StripeReader(environment)
    try:
        found = [_session_row(reader, sub) for sub in problems[:INSPECTED]]
    finally:
        reader.close()
    bad = [r for r in found if not (r["has_userId"] and r["has_planType"])]
    facts = {"sessions": found, "bad": [r["subscription"] for r in bad]}
    if bad:
        text = f"{len(bad)} checkout session(s) lack userId or planType in metadata"
        return Finding("checkout-metadata", Status.FAIL, text, found, facts)
    text = f"{len(found)} checkout session(s) carry userId and planType"
    return Finding("checkout-metadata", Status.OK, text, found, facts)


@check("subscription-users")
def check_subscription_users(
    environment: Environment, metadata: Finding, rows: Finding
) -> Finding:
    """Does the user each problem subscription belongs to still exist in D1?

    The user comes from the session's ``userId``, else the customer's metadata
    ``userId``, else the user whose email is the customer's.
    """
    if rows.status is Status.UNKNOWN:
        return unknown("subscription-users", _NOT_COMPARED)
    sessions = {s["subscription"]: s for s in metadata.facts.get("sessions") or []}
    problems = _problem_subs(rows)[:INSPECTED]
    if not problems:
        return Finding("subscription-users", Status.OK, "no subscription to inspect")
    found = [
        _resolve_user(environment, sub, sessions.get(sub["id"], {})) for sub in problems
    ]
    gone = [r for r in found if not r["exists"]]
    facts = {"users": found, "gone": [r["subscription"] for r in gone]}
    if gone:
        text = f"{len(gone)} paying customer(s) have no user in D1 any more"
        return Finding("subscription-users", Status.FAIL, text, found, facts)
    text = f"the user of each of {len(found)} subscription(s) exists"
    return Finding("subscription-users", Status.OK, text, found, facts)


@check("shown-plan")
def check_shown_plan(environment: Environment, user_ids: Sequence[str]) -> Finding:
    """Which plan the platform shows each user, and whether a free row hides it.

    The platform reads the first row of ``user_subscriptions_with_usage``; with
    an active free row beside the paid one that may be "free".
    """
    if not user_ids:
        return Finding("shown-plan", Status.OK, "no user in scope")
    client = CloudflareClient(environment)
    try:
        found = [_shown_row(client, uid) for uid in list(user_ids)[:INSPECTED]]
    finally:
        client.close()
    hidden = [r for r in found if r["paid_active"] and r["shown"] not in PAID_PLANS]
    facts = {"shown": found, "hidden": [r["user_id"] for r in hidden]}
    if hidden:
        text = f"{len(hidden)} paying user(s) are shown the free plan (active free row first)"
        return Finding("shown-plan", Status.WARN, text, found, facts)
    return Finding(
        "shown-plan", Status.OK, f"{len(found)} user(s) checked", found, facts
    )


@check("one-time-payments")
def check_one_time_payments(environment: Environment, stripe_subs: Finding) -> Finding:
    """Find one-time $10 analysis payments that payment_history never recorded.

    The platform records a one-time payment only through a checkout session in
    payment mode; its ``create-payment-intent`` route has no handler for
    ``payment_intent.succeeded``, so those payments leave no row. Only the newest
    1,000 PaymentIntents are read; with a customer named, only theirs.
    """
    customers = set(stripe_subs.facts.get("customers") or [])
    reader = StripeReader(environment)
    try:
        intents = reader.payment_intents()
    finally:
        reader.close()
    one_time = [
        i
        for i in intents
        if i.get("status") == "succeeded"
        and i.get("amount") == ONE_TIME_AMOUNT
        and not i.get("invoice")
        and (not customers or i.get("customer") in customers)
    ]
    recorded = recorded_payments(
        environment, "stripe_payment_intent_id", [str(i["id"]) for i in one_time]
    )
    rows = [
        {
            "payment_intent": i["id"],
            "customer": i.get("customer"),
            "created": i.get("created"),
        }
        for i in one_time
        if i["id"] not in recorded
    ]
    facts = {
        "one_time": len(one_time),
        "unrecorded": [r["payment_intent"] for r in rows],
    }
    if rows:
        text = (
            f"{len(rows)} of {len(one_time)} one-time $10 payment(s) have no "
            "payment_history row (the platform has no handler for them)"
        )
        return Finding("one-time-payments", Status.WARN, text, rows, facts)
    text = f"{len(one_time)} one-time $10 payment(s), each recorded"
    return Finding("one-time-payments", Status.OK, text, (), facts)


def recorded_payments(
    environment: Environment, column: str, ids: Sequence[str]
) -> set[str]:
    """The ids among ``ids`` that some ``payment_history`` row holds in ``column``.

    Args:
        environment: where D1 is.
        column: ``stripe_payment_intent_id`` or ``stripe_invoice_id``.
        ids: the Stripe ids to look for.

    Raises:
        ValueError: for a column that holds no Stripe id.
    """
    if column not in ("stripe_payment_intent_id", "stripe_invoice_id"):
        raise ValueError(f"column: got {column!r}, expected a Stripe id column")
    found: set[str] = set()
    client = CloudflareClient(environment)
    try:
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT {column} FROM payment_history WHERE {column} IN ({marks})"
            rows = client.d1_query(sql, chunk)[0]["results"]
            found |= {str(r[column]) for r in rows}
    finally:
        client.close()
    return found


def users_in_scope(stripe_subs: Finding, rows: Finding, users: Finding) -> list[str]:
    """The users whose shown plan matters: a named customer's, else the problem ones."""
    found = [str(u["user_id"]) for u in users.facts.get("users") or [] if u["exists"]]
    if stripe_subs.facts.get("customers"):
        found += [str(r["user_id"]) for r in (rows.facts.get("rows") or {}).values()]
    return sorted(set(found))


def read_rows(
    environment: Environment, sub_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """D1 subscriptions rows by Stripe subscription id (only the ids given)."""
    found: dict[str, dict[str, Any]] = {}
    client = CloudflareClient(environment)
    try:
        for start in range(0, len(sub_ids), _CHUNK):
            chunk = list(sub_ids[start : start + _CHUNK])
            marks = ", ".join("?" for _ in chunk)
            sql = (
                f"SELECT {_ROW_COLUMNS} FROM subscriptions "
                f"WHERE stripe_subscription_id IN ({marks})"
            )
            for row in client.d1_query(sql, chunk)[0]["results"]:
                found[str(row["stripe_subscription_id"])] = dict(row)
    finally:
        client.close()
    return found


def differences(sub: Mapping[str, Any], row: Mapping[str, Any]) -> list[str]:
    """The columns where a D1 row disagrees with its Stripe subscription."""
    pairs = (
        ("status", sub["status"], row["status"]),
        ("current_period_start", sub["start"], row["current_period_start"]),
        ("current_period_end", sub["end"], row["current_period_end"]),
        (
            "cancel_at_period_end",
            int(sub["cancel_at_period_end"]),
            row["cancel_at_period_end"],
        ),
    )
    return [name for name, want, have in pairs if want != have]


def _customer_ids(reader: StripeReader, customer: str) -> list[str]:
    if not customer:
        return []
    if customer.startswith("cus_"):
        return [customer] if reader.customer(customer) else []
    return [str(c["id"]) for c in reader.customers_by_email(customer)]


def _compact(sub: Mapping[str, Any]) -> dict[str, Any]:
    items = (sub.get("items") or {}).get("data") or [{}]
    first = items[0]
    price = first.get("price") or first.get("plan") or {}
    metadata = dict(sub.get("metadata") or {})
    start = sub.get("current_period_start") or first.get("current_period_start")
    end = sub.get("current_period_end") or first.get("current_period_end")
    return {
        "id": sub["id"],
        "customer": sub["customer"],
        "status": sub["status"],
        "plan": metadata.get("planType") or _plan_of(str(price.get("id") or "")),
        "start": start,
        "end": end,
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
        "metadata": metadata,
    }


def _plan_of(price_id: str) -> str:
    return next((p for p in PAID_PLANS if p in price_id), "")


def _problem_subs(rows: Finding) -> list[dict[str, Any]]:
    missing = list(rows.facts.get("missing") or [])
    return missing + [p["sub"] for p in rows.facts.get("stale") or []]


def _session_row(reader: StripeReader, sub: Mapping[str, Any]) -> dict[str, Any]:
    sessions = reader.checkout_sessions(str(sub["id"]))
    metadata = dict((sessions[0].get("metadata") if sessions else None) or {})
    return {
        "subscription": sub["id"],
        "session": sessions[0]["id"] if sessions else None,
        "has_userId": bool(metadata.get("userId")),
        "has_planType": bool(metadata.get("planType")),
        "snake_case_user_id": "user_id" in metadata,
        "userId": metadata.get("userId", ""),
        "planType": metadata.get("planType", ""),
    }


def _resolve_user(
    environment: Environment, sub: Mapping[str, Any], session: Mapping[str, Any]
) -> dict[str, Any]:
    user_id, source = str(session.get("userId") or ""), "session metadata"
    if not user_id:
        reader = StripeReader(environment)
        try:
            customer = reader.customer(str(sub["customer"])) or {}
        finally:
            reader.close()
        user_id, source = (
            str((customer.get("metadata") or {}).get("userId") or ""),
            ("customer metadata"),
        )
        if not user_id and customer.get("email"):
            user_id, source = (
                _user_by_email(environment, str(customer["email"])),
                "email",
            )
    exists = bool(user_id) and _user_exists(environment, user_id)
    return {
        "subscription": sub["id"],
        "user_id": user_id,
        "source": source,
        "exists": exists,
    }


def _user_exists(environment: Environment, user_id: str) -> bool:
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query("SELECT id FROM users WHERE id = ?", [user_id])[0]
    finally:
        client.close()
    return bool(rows["results"])


def _user_by_email(environment: Environment, email: str) -> str:
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query("SELECT id FROM users WHERE email = ?", [email.lower()])[
            0
        ]["results"]
    finally:
        client.close()
    return str(rows[0]["id"]) if rows else ""


def _shown_row(client: CloudflareClient, user_id: str) -> dict[str, Any]:
    rows = client.d1_query(
        "SELECT plan_type, subscription_status FROM user_subscriptions_with_usage "
        "WHERE user_id = ?",
        [user_id],
    )[0]["results"]
    plans = [str(r["plan_type"]) for r in rows if r.get("plan_type")]
    return {
        "user_id": user_id,
        "shown": rows[0]["plan_type"] if rows else None,
        "active_rows": len(plans),
        "paid_active": any(p in PAID_PLANS for p in plans),
    }
