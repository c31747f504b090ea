"""Starting the sandbox's Stripe (localstripe) and seeding it from D1.

The sandbox binds a loopback socket, hands it to ``opslib.sandbox._localstripe``
in a child process and so knows the port before the child runs. After every
scenario reset :meth:`StripeProcess.seed` rebuilds Stripe's objects from the
fresh D1 copy: for each paid subscriptions row, a customer (metadata ``userId``),
a subscription with the row's ids, plan, status and period start, and the
completed checkout session that started it (metadata ``userId`` and
``planType``, as the platform's checkout sets them); and for each recorded
one-time payment, the PaymentIntent it names; for each invoice
``payment_history`` names, the invoice (paid by a PaymentIntent of the customer
once a payment succeeded, else open with its failed attempts). Scenarios add objects the
platform never recorded through the switch ``stripe_extra`` and give the true
Stripe values of rows they made stale through ``stripe_truth``. Stripe's period
ends (one calendar month) are then written back to the rows that match, so the
healthy sandbox agrees with Stripe to the second. Once the platform stand-in
listens, the seed also holds the webhook endpoint and recent events
(``_webhookseed``), which the child delivers to the platform at once.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._http import LOOPBACK
from ._state import World
from ._webhookseed import webhook_seed

logger = logging.getLogger(__name__)

EXTRA_SWITCH = "stripe_extra"
TRUTH_SWITCH = "stripe_truth"
STATE_FILE = "localstripe.pickle"
LOG_FILE = "localstripe.log"
SEED_PATH = "/_config/opslib/seed"
_ROWS_SQL = (
    "SELECT s.stripe_subscription_id, s.stripe_customer_id, s.plan_type, s.status, "
    "s.current_period_start, s.cancel_at_period_end, s.created_at, s.user_id, u.email "
    "FROM subscriptions s JOIN users u ON u.id = s.user_id "
    "WHERE s.stripe_subscription_id IS NOT NULL ORDER BY s.created_at"
)

_INVOICES_SQL = (
    "SELECT p.stripe_invoice_id, s.stripe_customer_id, s.stripe_subscription_id, "
    "p.amount, MAX(p.status = 'succeeded'), SUM(p.status = 'failed'), "
    "MIN(p.created_at) FROM payment_history p "
    "JOIN subscriptions s ON s.id = p.subscription_id "
    "WHERE p.payment_type = 'subscription' AND p.stripe_invoice_id IS NOT NULL "
    "AND s.stripe_subscription_id IS NOT NULL GROUP BY p.stripe_invoice_id"
)

_ONE_TIME_SQL = (
    "SELECT stripe_payment_intent_id, user_id, amount, created_at FROM payment_history "
    "WHERE payment_type = 'one_time' AND stripe_payment_intent_id IS NOT NULL"
)


class StripeProcess:
    """localstripe in a child process, listening on 127.0.0.1.

    Args:
        state_dir: the sandbox's state folder (pickle and log go there).
        port: the port to bind; 0 for any free one.
    """

    def __init__(self, state_dir: Path, port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, port))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        # Where the seeded webhook endpoint points, and its signing secret; set
        # once the platform stand-in listens (no endpoint while empty).
        self.webhook_url = ""
        self.webhook_secret = ""
        state = state_dir / STATE_FILE
        state.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "opslib.sandbox._localstripe",
            "--fd",
            str(self._sock.fileno()),
            "--state-file",
            str(state),
            "--parent",
            str(os.getpid()),
        ]
        with open(state_dir / LOG_FILE, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(self._sock.fileno(),),
                cwd=state_dir,
                env=dict(os.environ),
            )
        logger.info("localstripe started pid=%s port=%s", self._process.pid, self.port)

    def seed(self, world: World) -> dict[str, list[int]]:
        """Rebuild Stripe's objects from the world's D1 and scenario switches.

        Returns:
            Stripe's [start, end] period per subscription id.
        """
        payload: dict[str, Any] = dict(build_payload(world))
        if self.webhook_url:
            payload["webhooks"] = webhook_seed(
                world, self.webhook_url, self.webhook_secret
            )
        periods: dict[str, list[int]] = self._post(SEED_PATH, payload)["periods"]
        _align_periods(world.database, periods)
        return periods

    def stop(self) -> None:
        """Stop the child process and close the listening socket."""
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._sock.close()

    def _post(self, path: str, body: Any) -> Any:
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=60)
        try:
            connection.request(
                "POST",
                path,
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            text = response.read().decode("utf-8")
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(
                f"localstripe seed failed: {response.status} {text[:200]}"
            )
        return json.loads(text)


def build_payload(world: World) -> dict[str, list[dict[str, Any]]]:
    """The customers, subscriptions and sessions D1 and the scenario imply."""
    rows = _read(world.database, _ROWS_SQL)
    truth: dict[str, dict[str, Any]] = world.scenario.switches.get(TRUTH_SWITCH, {})
    payload: dict[str, list[dict[str, Any]]] = {
        "customers": [],
        "subscriptions": [],
        "sessions": [],
        "payment_intents": [],
        "invoices": _invoices(world.database),
    }
    for sub_id, cus_id, plan, status, start, cancel, created, user_id, email in rows:
        metadata = {"userId": user_id, "planType": plan}
        payload["customers"].append(
            {
                "id": cus_id,
                "email": email,
                "metadata": {"userId": user_id},
                "created": created,
            }
        )
        sub = {
            "id": sub_id,
            "customer": cus_id,
            "plan": plan,
            "status": status,
            "start": start,
            "cancel_at_period_end": bool(cancel),
            "created": created,
            "metadata": metadata,
        }
        sub.update(truth.get(sub_id, {}))
        payload["subscriptions"].append(sub)
        payload["sessions"].append(session_for(sub, metadata))
    payload["payment_intents"] = _one_time_payments(world.database)
    extra = world.scenario.switches.get(EXTRA_SWITCH, {})
    for key in payload:
        payload[key] += list(extra.get(key, []))
    return payload


def _one_time_payments(database: Path) -> list[dict[str, Any]]:
    """The recorded one-time analysis payments, as Stripe's PaymentIntents."""
    rows = _read(database, _ONE_TIME_SQL)
    return [
        {"id": pi, "amount": amount, "created": created, "metadata": {"userId": uid}}
        for pi, uid, amount, created in rows
    ]


def _invoices(database: Path) -> list[dict[str, Any]]:
    """The invoices ``payment_history`` names: paid once a payment succeeded."""
    rows = _read(database, _INVOICES_SQL)
    return [
        {
            "id": invoice,
            "customer": customer,
            "subscription": sub,
            "amount": amount,
            "paid": bool(paid),
            "attempts": max(int(failed or 0), 1),
            "created": created,
        }
        for invoice, customer, sub, amount, paid, failed, created in rows
    ]


def session_for(sub: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The completed checkout session that created a subscription."""
    digest = hashlib.sha256(str(sub["id"]).encode()).hexdigest()[:24]
    return {
        "id": f"cs_test_{digest}",
        "created": int(sub["created"]) - 40,
        "customer": sub["customer"],
        "subscription": sub["id"],
        "plan": sub["plan"],
        "mode": "subscription",
        "metadata": metadata,
    }


def _read(database: Path, sql: str) -> list[Any]:
    """Rows of a query; none when a scenario dropped the table it reads."""
    connection = sqlite3.connect(database)
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError as error:
        logger.warning("stripe seed skips a query error=%s", error)
        return []
    finally:
        connection.close()


def _align_periods(database: Path, periods: dict[str, list[int]]) -> None:
    if not periods:
        return
    connection = sqlite3.connect(database)
    try:
        with connection:
            connection.executemany(
                "UPDATE subscriptions SET current_period_end = ? "
                "WHERE stripe_subscription_id = ? AND current_period_start = ?",
                [(end, sub_id, start) for sub_id, (start, end) in periods.items()],
            )
    finally:
        connection.close()
