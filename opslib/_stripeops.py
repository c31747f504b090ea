"""Reads of the stripe procedure: subscriptions, one customer, failed payments.

The runbook's own query selects ``plan_id``, a column the platform does not
have; these read ``plan_type``. D1 says what the platform believes (the
``subscriptions`` and ``payment_history`` rows the webhook wrote); Stripe says
what is true. Each read sets the two side by side, so a row that disagrees with
Stripe shows. All are read-only.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check
from ._stripe import StripeReader

logger = logging.getLogger(__name__)

ACTIVE_SQL = (
    "SELECT s.stripe_subscription_id AS subscription, u.email, s.user_id, "
    "s.plan_type, s.status, s.current_period_end, s.cancel_at_period_end, "
    "u.subscription_tier FROM subscriptions s JOIN users u ON u.id = s.user_id "
    "WHERE s.status = 'active' AND s.plan_type <> 'free' ORDER BY s.created_at DESC"
)
CUSTOMER_OF_USER_SQL = (
    "SELECT s.stripe_customer_id FROM subscriptions s JOIN users u "
    "ON u.id = s.user_id WHERE lower(u.email) = lower(?) "
    "AND s.stripe_customer_id NOT LIKE 'default_%' ORDER BY s.created_at DESC"
)
FAILED_SQL = (
    "SELECT p.stripe_invoice_id AS invoice, p.user_id, p.amount, p.created_at, "
    "s.stripe_subscription_id AS subscription, s.status AS row_status "
    "FROM payment_history p LEFT JOIN subscriptions s ON s.id = p.subscription_id "
    "WHERE p.status = 'failed' ORDER BY p.created_at DESC LIMIT 200"
)


def when(seconds: Any) -> str:
    """A Unix time in seconds as ``YYYY-MM-DD HH:MM`` UTC ("" when unset)."""
    if not seconds:
        return ""
    moment = datetime.datetime.fromtimestamp(int(seconds), datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def _d1(environment: Environment, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    client = CloudflareClient(environment)
    try:
        return list(client.d1_query(sql, list(params))[0]["results"])
    finally:
        client.close()


@check("active-subscriptions")
def check_active_subscriptions(environment: Environment) -> Finding:
    """Paid subscriptions D1 holds as active, joined with their users and Stripe.

    ``.table()`` shows ten rows as a DataFrame; the finding holds them all. A
    row Stripe does not list as active is a warning (the webhook missed a
    change, or the row is stale).
    """
    rows = _d1(environment, ACTIVE_SQL)
    reader = StripeReader(environment)
    try:
        live = {s["id"]: s for s in reader.active_subscriptions()}
    finally:
        reader.close()
    table = [
        {
            **{k: r[k] for k in ("subscription", "email", "plan_type", "status")},
            "period_end": when(r["current_period_end"]),
            "cancel_at_period_end": bool(r["cancel_at_period_end"]),
            "tier": r["subscription_tier"],
            "in_stripe": "active" if r["subscription"] in live else "not active",
        }
        for r in rows
    ]
    stale = [r["subscription"] for r in table if r["in_stripe"] != "active"]
    status = Status.WARN if stale else Status.OK
    summary = f"{len(table)} active paid subscriptions in D1, {len(live)} in Stripe"
    if stale:
        summary += f"; {len(stale)} not active in Stripe: {', '.join(stale[:5])}"
    facts = {"count": len(table), "stripe_count": len(live), "stale": stale}
    return Finding("active-subscriptions", status, summary, table, facts)


@check("customer")
def check_customer(environment: Environment, customer: str) -> Finding:
    """One customer's subscriptions, invoices and charges (refunded amounts too).

    Args:
        environment: where Stripe and D1 are.
        customer: a Stripe customer id (``cus_...``), or a user's email address,
            resolved through the user's subscriptions rows.
    """
    if not customer:
        return Finding("customer", Status.OK, "no customer asked for")
    customer_id = resolve_customer(environment, customer)
    if not customer_id:
        return Finding(
            "customer", Status.WARN, "no Stripe customer found for that user"
        )
    reader = StripeReader(environment)
    try:
        rows = _subscription_rows(reader, customer_id)
        rows += [_invoice_row(i) for i in reader.invoices(customer=customer_id)]
        rows += [_charge_row(c) for c in reader.charges(customer_id)]
    finally:
        reader.close()
    counts = {kind: sum(r["kind"] == kind for r in rows) for kind in _KINDS}
    summary = f"{customer_id}: " + ", ".join(f"{n} {k}s" for k, n in counts.items())
    facts = {"customer": customer_id, **counts}
    return Finding("customer", Status.OK, summary, rows, facts)


_KINDS = ("subscription", "invoice", "charge")


def resolve_customer(environment: Environment, customer: str) -> str:
    """The Stripe customer id of ``customer`` (an id, or a user's email address)."""
    if customer.startswith("cus_"):
        return customer
    rows = _d1(environment, CUSTOMER_OF_USER_SQL, [customer])
    return str(rows[0]["stripe_customer_id"]) if rows else ""


def _subscription_rows(reader: StripeReader, customer: str) -> list[dict[str, Any]]:
    subs = reader.subscriptions(customer)
    return [
        {
            "kind": "subscription",
            "id": s["id"],
            "status": s["status"],
            "amount": (s.get("plan") or {}).get("amount"),
            "refunded": None,
            "when": when(s.get("current_period_end")),
            "note": "cancels at period end" if s.get("cancel_at_period_end") else "",
        }
        for s in subs
    ]


def _invoice_row(invoice: Mapping[str, Any]) -> dict[str, Any]:
    retry = when(invoice.get("next_payment_attempt"))
    return {
        "kind": "invoice",
        "id": invoice["id"],
        "status": invoice["status"],
        "amount": invoice.get("amount_due"),
        "refunded": None,
        "when": when(invoice.get("created")),
        "note": f"charge {invoice['charge']}"
        if invoice.get("charge")
        else f"{invoice.get('attempt_count')} attempt(s), next {retry or 'none'}",
    }


def _charge_row(charge: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "charge",
        "id": charge["id"],
        "status": charge.get("status"),
        "amount": charge.get("amount"),
        "refunded": charge.get("amount_refunded"),
        "when": when(charge.get("created")),
        "note": f"payment intent {charge.get('payment_intent')}",
    }


@check("failed-payments")
def check_failed_payments(environment: Environment) -> Finding:
    """Unpaid invoices in Stripe with their retries, beside D1's failed payments.

    Stripe retries an unpaid invoice on its own schedule (the Dashboard's retry
    settings, not the platform's code); ``next_retry`` is when. D1 sets the
    subscription ``past_due`` on a failure, and the view then stops counting it,
    so the user falls back to the free limit at once (there is no grace period
    in the code, whatever the old runbook says).
    """
    reader = StripeReader(environment)
    try:
        open_invoices = reader.invoices(status="open")
    finally:
        reader.close()
    failed = {r["invoice"]: r for r in _d1(environment, FAILED_SQL) if r["invoice"]}
    rows = [_failed_row(i, failed.get(i["id"])) for i in open_invoices]
    unrecorded = [r["invoice"] for r in rows if not r["in_d1"]]
    status = Status.WARN if rows else Status.OK
    summary = (
        f"{len(rows)} unpaid invoices in Stripe, {len(failed)} failed payments in D1"
    )
    if unrecorded:
        summary += f"; {len(unrecorded)} not recorded in D1"
    facts = {"open": len(rows), "failed_in_d1": len(failed), "unrecorded": unrecorded}
    return Finding("failed-payments", status, summary, rows, facts)


def _failed_row(
    invoice: Mapping[str, Any], recorded: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "invoice": invoice["id"],
        "subscription": invoice.get("subscription"),
        "amount_due": invoice.get("amount_due"),
        "attempts": invoice.get("attempt_count"),
        "next_retry": when(invoice.get("next_payment_attempt")) or "none",
        "in_d1": recorded is not None,
        "row_status": recorded["row_status"] if recorded else None,
    }
