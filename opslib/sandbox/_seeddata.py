"""Synthetic rows for the sandbox's D1 template: users and billing.

Everything is drawn from one ``random.Random`` with a fixed seed, so two builds hold
the same rows and ids. Names and addresses are synthetic (``authorNNNN@example.com``);
only the two test accounts get real PBKDF2 hashes, the others random 96-hex values
nobody knows a password for. Content tables come from ``_seedrows.RowWriter``.
"""

from __future__ import annotations

import sqlite3

from ._passwords import hash_password
from ._seedrows import AUTHOR_COUNT, DAY, RowWriter, SeedUser

TEST_ACCOUNTS = ("prodtest1@example.com", "prodtest2@example.com")
RANDOM_SEED = 20251101
_PLANS = {"pro": 2900, "enterprise": 9900}
_BCRYPT_PLACEHOLDER = "$2a$12$" + "seededplaceholderhashnotusable" * 2


class SeedWriter(RowWriter):
    """Writes the whole synthetic platform into an empty schema.

    Args:
        connection: open connection to a database holding the schema.
        epoch: the reference instant ("now" of the template), Unix seconds.
        password: clear-text password of the test accounts.
    """

    def __init__(
        self, connection: sqlite3.Connection, epoch: int, password: str
    ) -> None:
        super().__init__(connection, epoch, RANDOM_SEED)
        self.password = password

    def write_all(self) -> dict[str, int]:
        """Insert every table's rows and return the row counts."""
        self._write_users()
        self._write_subscriptions()
        self._write_payments()
        self._write_manuscripts()
        self._write_usage()
        self._write_tokens()
        self._write_audit()
        self._write_schema_versions()
        self._write_backups()
        names = [
            r[0]
            for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        ]
        return {
            n: self.db.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]
            for n in names
        }

    def _write_users(self) -> None:
        self._insert(
            "users",
            {
                "id": "admin-default-001",
                "email": "admin@manuscript-platform.local",
                "password_hash": _BCRYPT_PLACEHOLDER,
                "role": "admin",
                "created_at": self.epoch - 70 * DAY,
                "email_verified": 1,
            },
        )
        for number in range(1, AUTHOR_COUNT + 1):
            self._add_user(f"author{number:04d}@example.com", self._hex(48), number)
        for email in TEST_ACCOUNTS:
            self._add_user(email, hash_password(self.password), 0)

    def _add_user(self, email: str, password_hash: str, number: int) -> None:
        created = self._ago(1, 180) if number else self.epoch - 60 * DAY
        verified = number == 0 or self.rng.random() < 0.94
        role = "author"
        if number in (17, 211):
            role = "admin"
        elif number % 37 == 5:
            role = "publisher"
        last_login = None
        if number == 0 or (verified and self.rng.random() < 0.8):
            last_login = max(created, self._ago(0, 20))
        user = SeedUser(self._uuid(), created, verified)
        self.users.append(user)
        self._insert(
            "users",
            {
                "id": user.id,
                "email": email,
                "password_hash": password_hash,
                "full_name": f"Author {number:04d}" if number % 5 == 0 else None,
                "role": role,
                "subscription_tier": "FREE",
                "created_at": created,
                "last_login": last_login,
                "email_verified": int(verified),
            },
        )

    def _write_subscriptions(self) -> None:
        for user in self.users:
            user.free_sub = self._uuid()
            self._insert(
                "subscriptions",
                {
                    "id": user.free_sub,
                    "user_id": user.id,
                    "stripe_subscription_id": None,
                    "stripe_customer_id": f"default_{user.id}",
                    "plan_type": "free",
                    "status": "active",
                    "current_period_start": user.created_at,
                    "current_period_end": user.created_at + 30 * DAY,
                    "created_at": user.created_at,
                    "updated_at": user.created_at,
                },
            )
        paying = [u for u in self.users[:AUTHOR_COUNT] if u.verified]
        for index, user in enumerate(self.rng.sample(paying, 36)):
            self._add_paid_subscription(
                user, "enterprise" if index < 8 else "pro", index
            )

    def _add_paid_subscription(self, user: SeedUser, plan: str, index: int) -> None:
        status = "active"
        if index in (9, 21):
            status = "past_due"
        elif index in (14, 30):
            status = "canceled"
        start = self._ago(0, 29)
        created = max(user.created_at, start - self.rng.randint(0, 3) * 30 * DAY)
        user.paid_sub = self._uuid()
        user.paid_period = (start, start + 30 * DAY)
        self._insert(
            "subscriptions",
            {
                "id": user.paid_sub,
                "user_id": user.id,
                "stripe_subscription_id": "sub_" + self._alnum(24),
                "stripe_customer_id": "cus_" + self._alnum(14),
                "plan_type": plan,
                "status": status,
                "current_period_start": start,
                "current_period_end": start + 30 * DAY,
                "cancel_at_period_end": int(status == "canceled"),
                "created_at": created,
                "updated_at": start,
            },
        )
        tier = "free" if status == "canceled" else plan
        self.db.execute(
            "UPDATE users SET subscription_tier = ? WHERE id = ?", (tier, user.id)
        )

    def _write_payments(self) -> None:
        rows = self.db.execute(
            "SELECT id, user_id, plan_type, status, created_at, current_period_start "
            "FROM subscriptions WHERE plan_type != 'free' ORDER BY rowid"
        ).fetchall()
        for sub_id, user_id, plan, status, created, period_start in rows:
            moment = period_start
            while moment >= created:
                failed = status == "past_due" and moment == period_start
                self._add_payment(user_id, sub_id, _PLANS[plan], moment, failed)
                moment -= 30 * DAY
        for user in self.rng.sample(self.users[:AUTHOR_COUNT], 6):
            self._insert(
                "payment_history",
                {
                    "id": self._uuid(),
                    "user_id": user.id,
                    "stripe_payment_intent_id": "pi_" + self._alnum(24),
                    "amount": 1000,
                    "payment_type": "one_time",
                    "status": "succeeded",
                    "description": "One-time manuscript analysis",
                    "created_at": self._ago(1, 60),
                },
            )

    def _add_payment(
        self, user_id: str, sub_id: str, amount: int, moment: int, failed: bool
    ) -> None:
        self._insert(
            "payment_history",
            {
                "id": self._uuid(),
                "user_id": user_id,
                "subscription_id": sub_id,
                "stripe_invoice_id": "in_" + self._alnum(24),
                "amount": amount,
                "payment_type": "subscription",
                "status": "failed" if failed else "succeeded",
                "description": "Payment failed" if failed else "Subscription payment",
                "created_at": moment + 60,
            },
        )
