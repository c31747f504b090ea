"""The backups bucket: one dump per logged backup, as the backup worker left them.

After every scenario reset the sandbox dumps its D1 as it stood at each
successful ``backup_logs`` row (rows created after that moment left out, by each
table's time column), in the platform's dump format, gzip-compressed, under the
worker's key ``backup-YYYY-MM-DD-<epoch ms>.sql.gz`` with its custom metadata
(PLATFORM.md section 6). The log rows get the sizes and stats of those very
dumps, so the log and the bucket agree; a scenario that changes the log or the
data in its ``after_reset`` hook changes both, since the dumps are made after it.

Rows are rendered to INSERT lines once per reset and filtered per backup, and
gzip runs at its fastest level, which keeps a reset with a month of backups
fast. A row updated after a backup shows its current values in older dumps; the
stand-in keeps no history of updates.
"""

from __future__ import annotations

import datetime
import gzip
import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from opslib._dump import (
    DumpStats,
    dump_footer,
    dump_header,
    index_statements,
    insert_line,
    insert_prefix,
    table_opening,
)
from opslib._restore import user_tables

from ._state import World

logger = logging.getLogger(__name__)

BACKUPS_SWITCH = "r2.backups"
BACKUP_BUCKET = "manuscript-platform-backups"
# Epoch seconds: backups taken before it are stored cut in half (a broken upload).
DAMAGED_SWITCH = "backups.damaged_before"
# Statements put into the newest logged backup before its COMMIT (a doctored object).
DOCTORED_SWITCH = "backups.doctored_with"
# Objects put into the bucket without a log row: (key, body, uploaded) triples.
PLANTED_SWITCH = "backups.planted"
_TIME_COLUMNS = {
    "audit_log": "timestamp",
    "backup_logs": "created_at",
    "dmca_requests": "submitted_at",
    "manuscripts": "uploaded_at",
    "payment_history": "created_at",
    "schema_version": "applied_at",
    "sessions": "created_at",
    "submissions": "submitted_at",
    "subscriptions": "created_at",
    "usage_tracking": "timestamp",
    "users": "created_at",
    "verification_tokens": "created_at",
}
_LOG_COLUMNS = (
    "id",
    "filename",
    "backup_date",
    "timestamp",
    "original_size",
    "compressed_size",
    "duration",
    "status",
    "error",
    "stats",
    "created_at",
)


@dataclass(frozen=True)
class BackupObject:
    """One object of the backups bucket.

    Attributes:
        key: the object key.
        body: the gzip-compressed dump.
        metadata: the worker's custom metadata.
        uploaded: when it was uploaded (epoch seconds).
    """

    key: str
    body: bytes
    metadata: dict[str, str]
    uploaded: float


@dataclass
class _Table:
    name: str
    create: str
    rows: list[tuple[float, str]]


def publish_backups(world: World) -> None:
    """Dump D1 once per successful backup, log the sizes, keep the objects for R2."""
    connection = sqlite3.connect(world.database, isolation_level=None)
    try:
        objects = _dump_each_backup(connection, world.environment.d1_database_name)
    finally:
        connection.close()
    damaged_before = world.scenario.switches.get(DAMAGED_SWITCH)
    if damaged_before is not None:
        objects = [_cut(o) if o.uploaded < damaged_before else o for o in objects]
    injected = world.scenario.switches.get(DOCTORED_SWITCH)
    if injected and objects:
        newest = max(objects, key=lambda o: o.uploaded)
        objects = [_doctored(o, injected) if o is newest else o for o in objects]
    for key, body, uploaded in world.scenario.switches.get(PLANTED_SWITCH) or []:
        objects.append(BackupObject(key, body, {}, uploaded))
    world.scenario.switches[BACKUPS_SWITCH] = objects
    logger.info(
        "backups published scenario=%s objects=%s", world.scenario.name, len(objects)
    )


def _dump_each_backup(
    connection: sqlite3.Connection, database: str
) -> list[BackupObject]:
    parents = {
        "user_id": dict(connection.execute("SELECT id, created_at FROM users")),
        "manuscript_id": dict(
            connection.execute("SELECT id, uploaded_at FROM manuscripts")
        ),
        "subscription_id": dict(
            connection.execute("SELECT id, created_at FROM subscriptions")
        ),
    }
    tables = [_render(connection, name, parents) for name in user_tables(connection)]
    indexes = index_statements(connection)
    logs = [
        dict(zip(_LOG_COLUMNS, row))
        for row in connection.execute(
            f"SELECT {', '.join(_LOG_COLUMNS)} FROM backup_logs ORDER BY created_at"
        )
    ]
    objects = []
    connection.execute("BEGIN")
    for index, log in enumerate(logs):
        if log["status"] != "success":
            continue
        text, stats = _assemble(tables, indexes, logs[:index], log, database)
        found = _object(log, text, stats)
        log.update(
            original_size=stats.size,
            compressed_size=len(found.body),
            stats=json.dumps(stats.to_json()),
        )
        connection.execute(
            "UPDATE backup_logs SET original_size = ?, compressed_size = ?, stats = ? "
            "WHERE id = ?",
            (log["original_size"], log["compressed_size"], log["stats"], log["id"]),
        )
        objects.append(found)
    connection.execute("COMMIT")
    return objects


def _render(
    connection: sqlite3.Connection,
    name: str,
    parents: dict[str, dict[Any, Any]],
) -> _Table:
    """Render a table's INSERT lines, each with the moment its row existed from.

    A row exists from its own time, but not before the user or manuscript it
    belongs to, so every snapshot keeps its foreign keys whole.
    """
    create = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()[0]
    cursor = connection.execute(f'SELECT * FROM "{name}"')
    columns = [d[0] for d in cursor.description]
    prefix = insert_prefix(name, columns)
    time_index = columns.index(_TIME_COLUMNS[name]) if name in _TIME_COLUMNS else -1
    links = [(columns.index(c), parents[c]) for c in parents if c in columns]
    rows = []
    for row in cursor:
        born = _seconds(row[time_index]) if time_index >= 0 else 0.0
        for index, times in links:
            born = max(born, _seconds(times.get(row[index])))
        rows.append((born, insert_line(prefix, row)))
    return _Table(name, create, rows)


def _assemble(
    tables: list[_Table],
    indexes: list[str],
    earlier_logs: list[dict[str, Any]],
    log: dict[str, Any],
    database: str,
) -> tuple[str, DumpStats]:
    """The dump a backup started at the log row's time would have written."""
    taken = float(log["created_at"])
    prefix = insert_prefix("backup_logs", _LOG_COLUMNS)
    parts = [
        dump_header(datetime.datetime.fromtimestamp(taken, datetime.UTC), database)
    ]
    counts = []
    for table in tables:
        if table.name == "backup_logs":
            lines = [
                insert_line(prefix, [r[c] for c in _LOG_COLUMNS]) for r in earlier_logs
            ]
        else:
            lines = [line for when, line in table.rows if when < taken]
        parts += [table_opening(table.name, table.create), *lines, "\n"]
        counts.append((table.name, len(lines)))
    parts.append(dump_footer(indexes))
    text = "".join(parts)
    return text, DumpStats(tuple(counts), len(text.encode("utf-8")))


def _object(log: dict[str, Any], text: str, stats: DumpStats) -> BackupObject:
    body = gzip.compress(
        text.encode("utf-8"), compresslevel=1, mtime=int(log["created_at"])
    )
    saved = 100 * (1 - len(body) / stats.size) if stats.size else 0.0
    metadata = {
        "backupDate": str(log["backup_date"]),
        "backupTimestamp": str(log["timestamp"]),
        "originalSize": str(stats.size),
        "compressedSize": str(len(body)),
        "compressionRatio": f"{saved:.2f}%",
        "backupType": "daily",
    }
    uploaded = float(log["created_at"]) + float(log["duration"] or 0) / 1000
    return BackupObject(str(log["filename"]), body, metadata, uploaded)


def _cut(item: BackupObject) -> BackupObject:
    """The object as a broken upload leaves it: its first half only."""
    return BackupObject(
        item.key, item.body[: len(item.body) // 2], item.metadata, item.uploaded
    )


def _doctored(item: BackupObject, injected: str) -> BackupObject:
    """The object with statements put in just before the dump's COMMIT."""
    text = gzip.decompress(item.body).decode("utf-8")
    text = text.replace("\nCOMMIT;\n", f"\n{injected}COMMIT;\n", 1)
    body = gzip.compress(text.encode("utf-8"), compresslevel=1)
    return BackupObject(item.key, body, item.metadata, item.uploaded)


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return 0.0


def put_backups(backend: Any, objects: list[BackupObject]) -> None:
    """Store the objects in moto's backend with their metadata and upload times."""
    for item in objects:
        key = backend.put_object(BACKUP_BUCKET, item.key, item.body)
        meta = {f"x-amz-meta-{name}": value for name, value in item.metadata.items()}
        key.set_metadata({"Content-Type": "application/gzip", **meta})
        key.last_modified = datetime.datetime.fromtimestamp(
            item.uploaded, datetime.UTC
        ).replace(tzinfo=None)
