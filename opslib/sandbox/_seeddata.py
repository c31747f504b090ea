"""Synthetic rows for the sandbox's D1 template.

Everything is drawn from one ``random.Random`` with a fixed seed, so two builds hold
the same rows and ids. Names and addresses are synthetic (``authorNNNN@example.com``);
only the two test accounts get real PBKDF2 hashes, the others random 96-hex values
nobody knows a password for.
"""

from __future__ import annotations

import json
import random
import sqlite3
import string
import uuid
from dataclasses import dataclass

from ._passwords import hash_password

TEST_ACCOUNTS = ("prodtest1@example.com", "prodtest2@example.com")
AUTHOR_COUNT = 298
RANDOM_SEED = 20251101

DAY = 86_400
_GENRES = (
    "general",
    "fiction",
    "mystery",
    "romance",
    "fantasy",
    "thriller",
    "science-fiction",
    "non-fiction",
    "memoir",
)
_FILE_TYPES = (
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("pdf", "application/pdf"),
    ("txt", "text/plain"),
    ("epub", "application/epub+zip"),
    ("doc", "application/msword"),
)
_TITLE_WORDS = (
    ("Silent", "Hidden", "Last", "Northern", "Paper", "Glass", "Winter", "Distant"),
    (
        "Harbour",
        "Orchard",
        "Ledger",
        "Lantern",
        "Meridian",
        "Archive",
        "Garden",
        "Tide",
    ),
)
_STATUSES = (
    ("complete", 62),
    ("draft", 14),
    ("queued", 10),
    ("failed", 9),
    ("analyzing", 5),
)
_PLANS = {"pro": 2900, "enterprise": 9900}
_BCRYPT_PLACEHOLDER = "$2a$12$" + "seededplaceholderhashnotusable" * 2


@dataclass
class _User:
    id: str
    created_at: int
    verified: bool
    free_sub: str = ""
    paid_sub: str = ""
    paid_period: tuple[int, int] = (0, 0)


class SeedWriter:
    """Writes the whole synthetic platform into an empty schema.

    Args:
        connection: open connection to a database holding the schema.
        epoch: the reference instant ("now" of the template), Unix seconds.
        password: clear-text password of the test accounts.
    """

    def __init__(
        self, connection: sqlite3.Connection, epoch: int, password: str
    ) -> None:
        self.db = connection
        self.epoch = epoch
        self.password = password
        self.rng = random.Random(RANDOM_SEED)
        self.users: list[_User] = []
        self.manuscripts: list[tuple[str, str, int, str]] = []

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

    # -- helpers -----------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _hex(self, nbytes: int) -> str:
        return self.rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()

    def _alnum(self, length: int) -> str:
        alphabet = string.ascii_letters + string.digits
        return "".join(self.rng.choice(alphabet) for _ in range(length))

    def _ago(self, low_days: float, high_days: float) -> int:
        return self.epoch - int(self.rng.uniform(low_days, high_days) * DAY)

    def _insert(self, table: str, row: dict[str, object]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values())
        )

    # -- tables ------------------------------------------------------------------

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
        user = _User(self._uuid(), created, verified)
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

    def _add_paid_subscription(self, user: _User, plan: str, index: int) -> None:
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

    def _write_manuscripts(self) -> None:
        statuses = [s for s, _ in _STATUSES]
        weights = [w for _, w in _STATUSES]
        for user in self.users:
            test = user is self.users[-1] or user is self.users[-2]
            count = (
                3 if test else self.rng.choices((0, 1, 2, 3, 4), (35, 30, 18, 10, 7))[0]
            )
            for _ in range(count if user.verified else 0):
                status = "complete" if test else self.rng.choices(statuses, weights)[0]
                self._add_manuscript(user, status)

    def _add_manuscript(self, user: _User, status: str) -> None:
        number = len(self.manuscripts) + 1
        ext, mime = self.rng.choice(_FILE_TYPES)
        uploaded = max(user.created_at + 600, self._ago(0, 120))
        manuscript_id = self._uuid()
        name = f"manuscript-{number:04d}.{ext}"
        title = " ".join(self.rng.choice(words) for words in _TITLE_WORDS)
        self.manuscripts.append((manuscript_id, user.id, uploaded, status))
        self._insert(
            "manuscripts",
            {
                "id": manuscript_id,
                "user_id": user.id,
                "title": f"The {title}",
                "r2_key": f"{user.id}/{manuscript_id}/{uploaded}_{name}",
                "file_hash": self._hex(32),
                "status": status,
                "genre": self.rng.choice(_GENRES),
                "word_count": self.rng.randint(18_000, 125_000),
                "file_type": mime,
                "metadata": json.dumps(
                    {"reportId": self._uuid()[:8], "originalName": name}
                ),
                "uploaded_at": uploaded,
                "updated_at": uploaded
                + (self.rng.randint(300, 900) if status != "draft" else 0),
                "flagged_for_review": int(number in (41, 187)),
            },
        )

    def _write_usage(self) -> None:
        by_id = {user.id: user for user in self.users}
        for manuscript_id, user_id, uploaded, status in self.manuscripts:
            if status == "draft":
                continue
            user = by_id[user_id]
            sub_id, period = user.free_sub, (uploaded, uploaded + 30 * DAY)
            if user.paid_sub and user.paid_period[0] <= uploaded:
                sub_id, period = user.paid_sub, user.paid_period
            self._insert(
                "usage_tracking",
                {
                    "id": self._uuid(),
                    "user_id": user_id,
                    "subscription_id": sub_id,
                    "manuscript_id": manuscript_id,
                    "analysis_type": "full",
                    "assets_generated": int(status == "complete"),
                    "credits_used": 1,
                    "timestamp": uploaded,
                    "billing_period_start": period[0],
                    "billing_period_end": period[1],
                },
            )

    def _write_tokens(self) -> None:
        for user in self.users:
            if not user.verified or self.rng.random() < 0.1:
                self._add_token(
                    user, "email_verification", user.created_at, DAY, used=user.verified
                )
        for user in self.rng.sample(self.users[:AUTHOR_COUNT], 12):
            self._add_token(
                user,
                "password_reset",
                self._ago(0, 30),
                3600,
                used=self.rng.random() < 0.7,
            )

    def _add_token(
        self, user: _User, kind: str, created: int, lifetime: int, *, used: bool
    ) -> None:
        self._insert(
            "verification_tokens",
            {
                "token": self._hex(32),
                "user_id": user.id,
                "token_type": kind,
                "created_at": created,
                "expires_at": created + lifetime,
                "used": int(used),
            },
        )

    def _write_audit(self) -> None:
        actions = ("login", "login", "login", "upload", "logout", "login_failed")
        for user in self.rng.sample(self.users, 40):
            action = self.rng.choice(actions)
            kind = "manuscript" if action == "upload" else "auth"
            self._insert(
                "audit_log",
                {
                    "id": self._uuid(),
                    "user_id": user.id,
                    "action": action,
                    "resource_type": kind,
                    "resource_id": self._uuid() if kind == "manuscript" else user.id,
                    "timestamp": max(user.created_at, self._ago(0, 14)),
                    "ip_address": f"203.0.113.{self.rng.randint(1, 254)}",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) synthetic",
                    "metadata": json.dumps({"source": "seed"}),
                },
            )

    def _write_schema_versions(self) -> None:
        steps = (
            (1, 40, "Initial schema"),
            (2, 35, "Audit log, DMCA and submissions"),
            (3, 20, "Payment tables"),
            (4, 12, "Rate limiting: subscription tier"),
            (5, 10, "Add users.full_name"),
            (6, 9, "Password reset tokens"),
        )
        for version, days, description in steps:
            self._insert(
                "schema_version",
                {
                    "version": version,
                    "applied_at": self.epoch - days * DAY,
                    "description": description,
                },
            )

    def _write_backups(self) -> None:
        counts = {
            n: self.db.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]
            for n in (
                "audit_log",
                "manuscripts",
                "payment_history",
                "subscriptions",
                "usage_tracking",
                "users",
            )
        }
        stats = json.dumps(
            {
                "tables": [{"name": n, "rows": c} for n, c in counts.items()],
                "totalRows": sum(counts.values()),
            }
        )
        for days_back in range(30, -1, -1):
            created = self.epoch - days_back * DAY + 3 * 3600
            failed = days_back == 9
            size = 240_000 + (30 - days_back) * 1_150 + self.rng.randint(0, 900)
            self._insert(
                "backup_logs",
                {
                    "id": f"log_{created * 1000 + 417}",
                    "filename": "pending",
                    "backup_date": "",
                    "timestamp": "",
                    "created_at": created,
                    "original_size": None if failed else size,
                    "compressed_size": None if failed else size * 23 // 100,
                    "duration": None if failed else self.rng.randint(1_400, 4_200),
                    "status": "failed" if failed else "success",
                    "error": "R2 put failed: Network connection lost."
                    if failed
                    else None,
                    "stats": None if failed else stats,
                },
            )
