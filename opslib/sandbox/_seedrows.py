"""Rows that describe the platform's content: manuscripts, usage, tokens, logs.

``RowWriter`` holds the seeded random generator and the insert helpers shared with
``SeedWriter`` (users and billing, in ``_seeddata``); every table is written in a
fixed order so that two builds hold the same ids.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import string
import uuid
from dataclasses import dataclass


def manuscript_text(manuscript_id: str) -> bytes:
    """The bytes of an uploaded manuscript's file in the sandbox's R2."""
    return f"Synthetic manuscript {manuscript_id} for the sandbox.\n".encode()


def manuscript_hash(manuscript_id: str) -> str:
    """``manuscripts.file_hash`` of a seeded upload: SHA-256 hex of its file."""
    return hashlib.sha256(manuscript_text(manuscript_id)).hexdigest()


AUTHOR_COUNT = 298
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


@dataclass
class SeedUser:
    """A seeded user and the subscriptions written for it."""

    id: str
    created_at: int
    verified: bool
    free_sub: str = ""
    paid_sub: str = ""
    paid_period: tuple[int, int] = (0, 0)


class RowWriter:
    """Insert helpers and the content tables of the seed.

    Args:
        connection: open connection to a database holding the schema.
        epoch: the reference instant ("now" of the template), Unix seconds.
        seed: seed of the random generator.
    """

    def __init__(self, connection: sqlite3.Connection, epoch: int, seed: int) -> None:
        self.db = connection
        self.epoch = epoch
        self.rng = random.Random(seed)
        self.users: list[SeedUser] = []
        self.manuscripts: list[tuple[str, str, int, str]] = []

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

    # -- content tables ----------------------------------------------------------

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

    def _add_manuscript(self, user: SeedUser, status: str) -> None:
        number = len(self.manuscripts) + 1
        ext, mime = self.rng.choice(_FILE_TYPES)
        uploaded = max(user.created_at + 600, self._ago(0, 120))
        manuscript_id = self._uuid()
        # Drawn and dropped so that the seed's later values stay as they were;
        # the hash is that of the file the sandbox's R2 serves for the upload.
        self._hex(32)
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
                "file_hash": manuscript_hash(manuscript_id),
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
        self, user: SeedUser, kind: str, created: int, lifetime: int, *, used: bool
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
