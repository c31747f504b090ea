"""Scenarios of the "auth broken" runbook: one fault each, as states or switches.

* ``kv-sessions-unavailable``: the SESSIONS namespace refuses writes. Reads still
  work; the Cloudflare KV API answers a KV error on PUT and DELETE, and inside the
  Worker every ``put`` throws, so the rate limiter and the login's session write
  fail and the platform answers 500.
* ``cors-origin-missing``: the platform's CORS allow-list lost
  ``https://dashboard.example.com`` (a platform switch), so browsers on the
  dashboard get another origin back and drop the answers.
* ``login-rate-limited``: five failed logins from 127.0.0.1 (the address the
  sandbox sees; the Worker reads CF-Connecting-IP) put all three login counters of
  that IP at their limit, so every login from it answers 429.
* ``jwt-secret-missing``: ``JWT_SECRET`` was deleted 30 minutes ago (a secret edit
  is a deployment); cookie logins still work.
* ``unverified-accounts``: four accounts that never verified their email (no
  verification email is ever sent) keep trying to log in. The platform audits a
  wrong password as ``login_failed``; as far as PLATFORM.md tells, the 403 for an
  unverified account is not audited, so the rows left behind are the failed tries.
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ._call import WorkerError
from ._envelope import ApiError
from ._platform import ALLOWED_ORIGINS
from ._scenarios import Scenario, _FaultContext, register_scenario
from ._state import Namespace, World
from ._workers_api import add_version

RUNBOOK = "auth-broken"
PROBE_IP = "127.0.0.1"
MISSING_ORIGIN = "https://dashboard.example.com"
LOGIN_LIMIT = 5
_KV_WRITE_MESSAGE = "KV PUT failed: 500 Internal Server Error"


class KVWriteError(ApiError, WorkerError):
    """A refused KV write, as both the KV REST API and a Worker binding see it.

    The Cloudflare stand-in answers it as an error envelope (HTTP 500, code 10002,
    the stand-in's code for internal errors); inside the Worker it is a thrown
    error that the global handler turns into a 500.
    """

    def __init__(self) -> None:
        super().__init__(500, 10002, _KV_WRITE_MESSAGE)


@dataclass
class WriteRefusingNamespace(Namespace):
    """A KV namespace whose storage serves reads but refuses every write."""

    def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expiration: float | None = None,
        metadata: object = None,
    ) -> None:
        """Refuse the write."""
        raise KVWriteError()

    def delete(self, key: str) -> None:
        """Refuse the delete (a delete is a write)."""
        raise KVWriteError()


def _kv_sessions_unavailable(world: World, now: float) -> None:
    namespace_id = world.environment.kv_namespaces["SESSIONS"]
    current = world.scenario.namespaces[namespace_id]
    world.scenario.namespaces[namespace_id] = WriteRefusingNamespace(
        current.id, current.title, dict(current.entries)
    )
    world.scenario.details = {"namespace_id": namespace_id, "refuses": "writes"}


def _cors_origin_missing(world: World, now: float) -> None:
    allowed = tuple(o for o in ALLOWED_ORIGINS if o != MISSING_ORIGIN)
    world.scenario.switches["cors_allowed_origins"] = allowed
    world.scenario.details = {"missing_origin": MISSING_ORIGIN}


def _login_rate_limited(world: World, now: float) -> None:
    sessions = world.namespace(world.environment.kv_namespaces["SESSIONS"])
    assert sessions is not None
    counters = (
        (f"rate_limit:login:{PROBE_IP}", 300 - 60),
        (f"rate_limit:ip:{PROBE_IP}:_auth_login", 900 - 60),
        (f"rate_limit:endpoint:{PROBE_IP}:/auth/login", 900 - 60),
    )
    for key, left in counters:
        record = {"count": LOGIN_LIMIT, "resetAt": int((now + left) * 1000)}
        sessions.put(key, json.dumps(record).encode(), ttl=left)
    email = world.environment.test_account_email or "prodtest1@example.com"
    with _database(world) as db:
        row = db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
        for minute in range(LOGIN_LIMIT):
            _audit_failed_login(db, row[0], email, now - 60 - minute * 20, PROBE_IP)
    world.scenario.details = {"ip": PROBE_IP, "keys": [key for key, _ in counters]}


def _jwt_secret_missing(ctx: _FaultContext) -> None:
    live = ctx.main.live_version()
    secrets = {k: v for k, v in live.secrets.items() if k != "JWT_SECRET"}
    version = add_version(ctx.main, live, secrets, "secret", "", ctx.now - 30 * 60)
    ctx.state.details = {"missing": ["JWT_SECRET"], "version": version.id}


def _unverified_accounts(world: World, now: float) -> None:
    rng = random.Random("unverified-accounts")
    with _database(world) as db:
        users = db.execute(
            "SELECT id, email FROM users WHERE email_verified = 0 "
            "ORDER BY created_at DESC LIMIT 4"
        ).fetchall()
        for user_id, email in users:
            ip = f"198.51.100.{rng.randint(2, 250)}"
            for _ in range(rng.randint(2, 4)):
                when = now - rng.uniform(5 * 60, 3 * 3600)
                _audit_failed_login(db, user_id, email, when, ip)
    world.scenario.details = {"user_ids": [user_id for user_id, _ in users]}


def _audit_failed_login(
    db: sqlite3.Connection, user_id: str, email: str, when: float, ip: str
) -> None:
    db.execute(
        "INSERT INTO audit_log (id, user_id, action, resource_type, resource_id, "
        "timestamp, ip_address, user_agent, metadata) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            str(uuid.uuid4()),
            user_id,
            "login_failed",
            "auth",
            user_id,
            int(when),
            ip,
            "Mozilla/5.0 (Macintosh) synthetic",
            json.dumps({"email": email}),
        ),
    )


@contextmanager
def _database(world: World) -> Iterator[sqlite3.Connection]:
    """Open the sandbox's D1 file; commit when the block ends."""
    connection = sqlite3.connect(world.database)
    try:
        yield connection
        connection.commit()
    finally:
        connection.close()


def _register() -> None:
    register_scenario(
        Scenario(
            "kv-sessions-unavailable",
            RUNBOOK,
            "kv-sessions-unavailable",
            "The SESSIONS namespace refuses writes; logins and counters fail (500).",
        ),
        after_reset=_kv_sessions_unavailable,
    )
    register_scenario(
        Scenario(
            "cors-origin-missing",
            RUNBOOK,
            "cors-origin-missing",
            "The CORS allow-list lost https://dashboard.example.com.",
        ),
        after_reset=_cors_origin_missing,
    )
    register_scenario(
        Scenario(
            "login-rate-limited",
            RUNBOOK,
            "login-rate-limited",
            "The login counters of 127.0.0.1 are at their limit; login answers 429.",
        ),
        after_reset=_login_rate_limited,
    )
    register_scenario(
        Scenario(
            "jwt-secret-missing",
            RUNBOOK,
            "jwt-secret-missing",
            "JWT_SECRET was deleted 30 minutes ago; cookie logins still work.",
        ),
        fault=_jwt_secret_missing,
    )
    register_scenario(
        Scenario(
            "unverified-accounts",
            RUNBOOK,
            "unverified-accounts",
            "Four unverified accounts keep failing to log in (403 unless verified).",
        ),
        after_reset=_unverified_accounts,
    )


_register()
