"""The sandbox's D1 database: a seeded template, copied fresh for every scenario.

The template (``seed.sqlite``) is built once per state folder with a fixed random
seed, so every build holds the same users, manuscripts and ids. Its times are laid
out around a fixed reference instant; each copy shifts them so that "now" at the
scenario's start plays that instant, which keeps subscription periods, last logins
and the backup log current while counts and ids stay the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from importlib import resources
from pathlib import Path

from opslib._restore import read_views

from ._passwords import verify_password
from ._seeddata import TEST_ACCOUNTS, SeedWriter

logger = logging.getLogger(__name__)

SEED_VERSION = 2
# Midnight UTC; template times are offsets from this instant.
REFERENCE_EPOCH = 1_767_225_600
TEMPLATE_NAME = "seed.sqlite"
TEMPLATE_INFO_NAME = "seed.json"
DATABASE_NAME = "d1.sqlite"

_SHIFT_SQL = """
UPDATE users SET created_at = created_at + :s, last_login = last_login + :s;
UPDATE manuscripts SET uploaded_at = uploaded_at + :s, updated_at = updated_at + :s,
    r2_key = user_id || '/' || id || '/'
        || strftime('%Y-%m-%dT%H:%M:%fZ', uploaded_at + :s, 'unixepoch')
        || '_' || json_extract(metadata, '$.originalName');
UPDATE subscriptions SET current_period_start = current_period_start + :s,
    current_period_end = current_period_end + :s,
    created_at = created_at + :s, updated_at = updated_at + :s;
UPDATE payment_history SET created_at = created_at + :s,
    description = CASE WHEN payment_type = 'subscription' AND status = 'succeeded'
        THEN 'Subscription payment - ' || date(created_at + :s, 'unixepoch')
        ELSE description END;
UPDATE usage_tracking SET timestamp = timestamp + :s,
    billing_period_start = billing_period_start + :s,
    billing_period_end = billing_period_end + :s;
UPDATE verification_tokens SET created_at = created_at + :s,
    expires_at = expires_at + :s;
UPDATE audit_log SET timestamp = timestamp + :s;
UPDATE schema_version SET applied_at = applied_at + :s;
UPDATE dmca_requests SET submitted_at = submitted_at + :s,
    resolved_at = resolved_at + :s;
UPDATE submissions SET submitted_at = submitted_at + :s,
    responded_at = responded_at + :s;
UPDATE backup_logs SET created_at = created_at + :d,
    id = 'log_' || ((created_at + :d) * 1000 + 417),
    backup_date = date(created_at + :d, 'unixepoch'),
    timestamp = strftime('%Y-%m-%dT%H:%M:%fZ', created_at + :d, 'unixepoch'),
    filename = CASE status
        WHEN 'failed' THEN 'backup-' || date(created_at + :d, 'unixepoch') || '-failed'
        ELSE 'backup-' || date(created_at + :d, 'unixepoch') || '-'
            || ((created_at + :d) * 1000 + 417) || '.sql.gz' END;
DELETE FROM backup_logs WHERE created_at > :now;
"""


def read_schema() -> str:
    """Return the packaged ``schema.sql`` followed by opslib's ``views.sql``."""
    tables = resources.files(__package__).joinpath("schema.sql").read_text("utf-8")
    return tables + "\n" + read_views()


def build_template(path: Path, password: str) -> dict[str, int]:
    """Create the seeded template database from scratch.

    Args:
        path: file to write; replaced if it exists.
        password: clear-text password of the test accounts.

    Returns:
        Row counts per table, for logging and tests.
    """
    started = time.monotonic()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    connection = sqlite3.connect(partial, isolation_level=None)
    try:
        connection.executescript(read_schema())
        # D1 keeps an internal table in every database; queries may not read it.
        connection.execute(
            "CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"
        )
        connection.execute("BEGIN")
        counts = SeedWriter(connection, REFERENCE_EPOCH, password).write_all()
        connection.execute("COMMIT")
    finally:
        connection.close()
    os.replace(partial, path)
    logger.info(
        "seed template built path=%s users=%s seconds=%.2f",
        path,
        counts.get("users"),
        time.monotonic() - started,
    )
    return counts


def ensure_template(state_dir: Path, password: str) -> Path:
    """Return the state folder's template, building it when missing or stale.

    A template is stale when the schema or the seed code changed, or when its test
    accounts do not accept ``password`` (the secrets file was replaced).
    """
    path = state_dir / TEMPLATE_NAME
    info_path = state_dir / TEMPLATE_INFO_NAME
    wanted = {"seed_version": SEED_VERSION, "schema_sha256": _schema_digest()}
    fresh = path.is_file() and _read_json(info_path) == wanted
    if fresh and _template_accepts(path, password):
        return path
    build_template(path, password)
    info_path.write_text(json.dumps(wanted), encoding="utf-8")
    return path


def copy_template(template: Path, target: Path, now: float) -> None:
    """Write a fresh database at ``target`` from the template, timed around ``now``.

    The copy is prepared beside the target and moved into place in one step, so a
    reader sees either the old database or the new one.
    """
    shift = int(now) - REFERENCE_EPOCH
    day_shift = shift // 86_400 * 86_400
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(template, partial)
    connection = sqlite3.connect(partial, isolation_level=None)
    try:
        connection.execute("BEGIN")
        params = {"s": shift, "d": day_shift, "now": int(now)}
        for statement in _split_script(_SHIFT_SQL):
            connection.execute(statement, params)
        connection.execute("COMMIT")
    finally:
        connection.close()
    os.replace(partial, target)


def table_counts(path: Path) -> dict[str, int]:
    """Count the rows of every table in a database file."""
    connection = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            name: connection.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
            for name in names
        }
    finally:
        connection.close()


def _split_script(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]


def _schema_digest() -> str:
    return hashlib.sha256(read_schema().encode("utf-8")).hexdigest()


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _template_accepts(path: Path, password: str) -> bool:
    connection = sqlite3.connect(path)
    try:
        row = connection.execute(
            "SELECT password_hash FROM users WHERE email = ?", (TEST_ACCOUNTS[0],)
        ).fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return row is not None and verify_password(password, row[0])
