"""Scenarios of the backups runbook (PLATFORM.md section 6, RUNBOOK.md alerts).

- ``backup-failed``: the newest daily run failed while uploading to R2; its log
  row says so and no object was written.
- ``backups-stale``: the scheduled run stopped two days ago (a deploy dropped
  the cron trigger): no log rows and no objects since.
- ``backup-oversized``: a credential-stuffing run against known accounts wrote
  thousands of ``login_failed`` audit rows before the newest backup, which is
  over twice the usual size.

Scenarios of the restore procedures:

- ``backup-truncated``: every backup older than six days was stored cut in half
  (a broken upload); the monthly verification's week-old backup cannot be read.
- ``orphaned-rows``: an author's row is gone while their manuscripts and usage
  rows stayed (a manual import with foreign keys deferred); every backup carries
  the orphans, and the restore's integrity check finds them.
- ``backup-doctored``: someone with write access to the bucket rewrote the newest
  backup: before its COMMIT it attaches a file of the restoring machine and
  deletes its rows. The restore must refuse it and run none of it.
- ``backup-planted`` (backups runbook): two objects named like backups that the
  log does not know sit in the bucket, newer than the newest backup: one of 0
  bytes, one a gzip dump. Neither may pass for the newest backup.

All of them are states of the D1 log and the data; the bucket follows, since the
sandbox dumps D1 for every logged success after these hooks ran.
"""

from __future__ import annotations

import datetime
import gzip
import json
import random
import sqlite3
import uuid

from ._backups import DAMAGED_SWITCH, DOCTORED_SWITCH, PLANTED_SWITCH
from ._scenarios import Scenario, register_scenario
from ._state import World

RUNBOOK = "backups"
HOUR = 3600.0
UPLOAD_ERROR = "R2 put failed: Network connection lost."


def _newest_log(connection: sqlite3.Connection) -> tuple[str, float]:
    row = connection.execute(
        "SELECT id, created_at FROM backup_logs ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    return str(row[0]), float(row[1])


def _failed_run(world: World, now: float) -> None:
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        log_id, created = _newest_log(connection)
        connection.execute(
            "UPDATE backup_logs SET status = 'failed', error = ?, "
            "filename = 'backup-' || backup_date || '-failed', original_size = NULL, "
            "compressed_size = NULL, duration = NULL, stats = NULL WHERE id = ?",
            (UPLOAD_ERROR, log_id),
        )
    finally:
        connection.close()
    world.scenario.details = {"log_id": log_id, "error": UPLOAD_ERROR, "at": created}


def _stopped_runs(world: World, now: float) -> None:
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        removed = connection.execute(
            "DELETE FROM backup_logs WHERE created_at > ?", (now - 50 * HOUR,)
        ).rowcount
        _, last = _newest_log(connection)
    finally:
        connection.close()
    world.scenario.details = {"runs_missing": removed, "last_backup_at": last}


def _audit_flood(world: World, now: float) -> None:
    rng = random.Random("backup-oversized")
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        _, newest = _newest_log(connection)
        users = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM users WHERE email LIKE 'author%' ORDER BY email LIMIT 200"
            )
        ]
        start = newest - 9 * HOUR
        rows = [
            _failed_login(rng, rng.choice(users), start + i * 5.0) for i in range(6000)
        ]
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO audit_log (id, user_id, action, resource_type, resource_id, "
            "timestamp, ip_address, user_agent, metadata) "
            "VALUES (?, ?, 'login_failed', 'auth', ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    world.scenario.details = {"audit_rows_added": len(rows), "table": "audit_log"}


def _failed_login(
    rng: random.Random, user_id: str, when: float
) -> tuple[str, str, str, int, str, str, str]:
    address = f"198.51.100.{rng.randint(1, 254)}"
    agent = f"python-requests/2.{rng.randint(20, 32)}.{rng.randint(0, 9)}"
    metadata = json.dumps(
        {"reason": "invalid_password", "attempt": rng.getrandbits(64)}
    )
    row_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return (row_id, user_id, user_id, int(when), address, agent, metadata)


register_scenario(
    Scenario(
        "backup-failed",
        RUNBOOK,
        "backup-failed",
        "The newest daily backup failed uploading to R2; no object was written.",
    ),
    after_reset=_failed_run,
)
register_scenario(
    Scenario(
        "backups-stale",
        RUNBOOK,
        "backups-stale",
        "The backup cron stopped two days ago: no log rows and no objects since.",
    ),
    after_reset=_stopped_runs,
)
register_scenario(
    Scenario(
        "backup-oversized",
        RUNBOOK,
        "backup-oversized",
        "6,000 login_failed audit rows before the newest backup make it over twice the usual size.",
    ),
    after_reset=_audit_flood,
)


def _broken_uploads(world: World, now: float) -> None:
    world.scenario.switches[DAMAGED_SWITCH] = now - 6 * 24 * HOUR
    world.scenario.details = {"damaged_before": now - 6 * 24 * HOUR}


def _orphans(world: World, now: float) -> None:
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        user_id, count = connection.execute(
            "SELECT user_id, COUNT(*) FROM manuscripts GROUP BY user_id "
            "ORDER BY COUNT(*) DESC, user_id LIMIT 1"
        ).fetchone()
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute("DELETE FROM users WHERE id = ?", (user_id,))
    finally:
        connection.close()
    world.scenario.details = {"user_id": user_id, "orphaned_manuscripts": count}


register_scenario(
    Scenario(
        "backup-truncated",
        "monthly-backup-verification",
        "backup-unreadable",
        "Backups older than six days were stored cut in half by a broken upload.",
    ),
    after_reset=_broken_uploads,
)
register_scenario(
    Scenario(
        "orphaned-rows",
        "restore",
        "integrity-problems",
        "An author's row is gone but their manuscripts stayed; every backup has the orphans.",
    ),
    after_reset=_orphans,
)


def _doctor_newest(world: World, now: float) -> None:
    outside = world.database.parent / "outside-of-the-restore.db"
    injected = f"ATTACH DATABASE '{outside}' AS v;\nDELETE FROM v.notes;\n"
    world.scenario.switches[DOCTORED_SWITCH] = injected
    world.scenario.details = {"statement": "ATTACH", "target": str(outside)}


def _plant_objects(world: World, now: float) -> None:
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        _, newest = _newest_log(connection)
    finally:
        connection.close()
    keys = [_backup_key(newest + hours * HOUR) for hours in (1.0, 2.0)]
    body = gzip.compress(
        b"-- Manuscript Platform D1 Backup\nPRAGMA foreign_keys = OFF;\n"
    )
    world.scenario.switches[PLANTED_SWITCH] = [
        (keys[0], b"", newest + HOUR),
        (keys[1], body, newest + 2 * HOUR),
    ]
    world.scenario.details = {"planted": keys}


def _backup_key(moment: float) -> str:
    day = datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d")
    return f"backup-{day}-{int(moment * 1000)}.sql.gz"


register_scenario(
    Scenario(
        "backup-doctored",
        "restore",
        "backup-unsafe",
        "The newest backup was rewritten to attach a local file and delete its rows.",
    ),
    after_reset=_doctor_newest,
)
register_scenario(
    Scenario(
        "backup-planted",
        RUNBOOK,
        "unlogged-objects",
        "Two objects named like backups, unknown to the log, sit in the bucket.",
    ),
    after_reset=_plant_objects,
)
