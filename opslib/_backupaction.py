"""The backups runbook's verdict and its gated manual backup.

Causes, in the order they are weighed: the newest backup failed, no backup in 36
hours, the newest one over twice the average size, one that took over ten
minutes, healthy, inconclusive. When backups failed or stopped, the verdict
offers a manual backup: D1 read through its query API table by table, written in
the worker's own dump format, gzip-compressed and uploaded under the worker's key
and metadata (``backupType`` "manual"), with its ``backup_logs`` row, so the log,
the bucket and the retention treat it like the daily ones.
"""

from __future__ import annotations

import datetime
import gzip
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._backups import backup_bucket
from ._cloudflare import CloudflareClient
from ._command import INCIDENT_PLACEHOLDER, runbook_command
from ._config import Environment
from ._dump import (
    DumpStats,
    dump_footer,
    dump_header,
    insert_line,
    insert_prefix,
    quote_name,
    table_opening,
)
from ._finding import Finding, Status
from ._r2 import R2Client
from ._time import utcnow
from ._verdict import Verdict

logger = logging.getLogger(__name__)

RUNBOOK = "backups"
ACTION = "manual-backup"
PAGE_ROWS = 1000
_RULE_CAUSES = {
    "failed": "backup-failed",
    "none-in-36h": "backups-stale",
    "size-over-2x": "backup-oversized",
    "duration-over-10min": "backup-slow",
}
_SUMMARY = {
    "backup-failed": "The newest backup attempt failed; the worker alerts nobody.",
    "backups-stale": (
        "No backup has succeeded in 36 hours: the scheduled run did not happen."
    ),
    "backup-oversized": (
        "The newest backup is over twice the average size: the data grew fast."
    ),
    "backup-slow": "The newest backup took over ten minutes (expected under five).",
    "unlogged-objects": (
        "The bucket holds objects named like backups that the backup log does not "
        "know (or of 0 bytes); they are not counted as backups."
    ),
    "healthy": (
        "The last backup succeeded within 24 hours, its object is in the bucket, "
        "sizes and durations are usual."
    ),
}
_NEXT = {
    "backup-failed": (
        "Read the error in backup_logs and the worker's `[Backup]` log lines "
        "(`wrangler tail`); fix it, then take a manual backup with the gated step."
    ),
    "backups-stale": (
        "Check the Worker's cron triggers (`wrangler triggers` / the dashboard) and "
        "that scheduled() still runs the backup; take a manual backup now."
    ),
    "backup-oversized": (
        "Find the table that grew (stats of the last two log rows) and why: a "
        "runaway writer or an import. Nothing to repair in the backups."
    ),
    "backup-slow": (
        "Watch the next runs; a dump that keeps growing risks the Worker's time "
        "limit. Consider trimming audit_log and old tokens."
    ),
    "unlogged-objects": (
        "Do not restore them. Find who wrote them (bucket access, the object's "
        "upload time against the worker's runs); keep them aside for the "
        "investigation rather than deleting them."
    ),
    "healthy": "No repair needed.",
}


def diagnose_backups(
    findings: Iterable[Finding], *, environment: Environment, incident_id: str = ""
) -> Verdict:
    """Name what is wrong with the backups, from the log and bucket findings."""
    found = {f.name: f for f in findings}
    log, bucket = found.get("backup-log"), found.get("backup-bucket")
    cause = _cause(log, bucket)
    evidence = [str(f) for f in found.values() if not f.is_ok] or [
        str(f) for f in found.values()
    ]
    status = {
        "healthy": Status.OK,
        "inconclusive": Status.UNKNOWN,
        "backup-oversized": Status.WARN,
        "backup-slow": Status.WARN,
        "unlogged-objects": Status.WARN,
    }.get(cause, Status.FAIL)
    step = None
    if cause in ("backup-failed", "backups-stale"):
        command = runbook_command(
            "backups",
            environment.name,
            {"incident_id": incident_id or INCIDENT_PLACEHOLDER},
            confirm="<phrase the plan prints>",
        )
        step = {"action": ACTION, "command": command}
    return Verdict(
        RUNBOOK,
        status,
        cause,
        _SUMMARY.get(cause, "The log or the bucket could not be read."),
        evidence,
        _NEXT.get(cause, "Re-run when D1 and R2 can be read."),
        step,
        tuple(found.values()),
    )


def _cause(log: Finding | None, bucket: Finding | None) -> str:
    if log is None or log.status is Status.UNKNOWN:
        if bucket is not None and bucket.status is Status.FAIL:
            return "backups-stale"
        return "inconclusive"
    rule = str(log.facts.get("rule") or "")
    if rule in _RULE_CAUSES:
        return _RULE_CAUSES[rule]
    if bucket is not None and bucket.status is Status.FAIL:
        return "backups-stale"
    if bucket is None or bucket.status is Status.UNKNOWN:
        return "inconclusive"
    if bucket.facts.get("unlogged"):
        return "unlogged-objects"
    return "healthy"


def manual_backup_phrase(environment: Environment) -> str:
    """The confirm phrase that authorises uploading a manual backup.

    It names the database, the bucket and the environment but not the key,
    which takes the time of the run: a phrase printed by one run must still
    match in the next.
    """
    return (
        f"upload a manual backup of {environment.d1_database_name} to "
        f"{backup_bucket(environment)} in {environment.name}"
    )


def plan_manual_backup(
    environment: Environment,
    verdict: Verdict,
    *,
    wanted: bool = False,
    now: datetime.datetime | None = None,
) -> ActionPlan:
    """Plan a manual backup when backups failed or stopped, or when asked.

    Args:
        environment: whose D1 to dump and whose bucket to write.
        verdict: the backups verdict; its gated step asks for the backup.
        wanted: plan one anyway (before a risky change).
        now: the moment that names the key.
    """
    bucket = backup_bucket(environment)
    if not wanted and (verdict.gated_step or {}).get("action") != ACTION:
        return ActionPlan(
            "none",
            environment.name,
            bucket,
            f"no manual backup: the verdict is {verdict.cause!r}",
        )
    millis = int((now or utcnow()).timestamp() * 1000)
    key = backup_key(millis)
    return ActionPlan(
        action=ACTION,
        environment=environment.name,
        target=f"{bucket}/{key}",
        summary=f"dump D1 {environment.d1_database_name} and upload it as {key}",
        changes=(
            {
                "what": f"object {bucket}/{key}",
                "from": "absent",
                "to": "gzip dump of every table",
            },
            {
                "what": "backup_logs row",
                "from": "absent",
                "to": f"log_{millis} success",
            },
        ),
        before={
            "key": key,
            "object": None,
            "log_id": f"log_{millis}",
            "taken_at": millis,
        },
        undo=f"delete object {key} from {bucket} and the backup_logs row log_{millis}",
        confirm_phrase=manual_backup_phrase(environment),
    )


def _apply_manual_backup(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    key = str(plan.before["key"])
    r2 = R2Client(environment)
    try:
        exists = r2.head(backup_bucket(environment), key) is not None
    finally:
        r2.close()
    if exists:
        return ActionResult(
            plan,
            "refused",
            f"{key} exists already: the plan is stale, re-run",
            operator,
        )
    response = take_backup(environment, int(plan.before["taken_at"]), "manual")
    logger.info("manual backup uploaded key=%s", key)
    return ActionResult(
        plan,
        "applied",
        f"{key} uploaded, {response['rows']:,} rows",
        operator,
        response=response,
    )


def backup_key(millis: int) -> str:
    """The worker's object key for a backup started at ``millis`` (epoch ms)."""
    moment = datetime.datetime.fromtimestamp(millis / 1000, datetime.UTC)
    return f"backup-{moment:%Y-%m-%d}-{millis}.sql.gz"


def take_backup(environment: Environment, millis: int, kind: str) -> dict[str, Any]:
    """Dump D1 through its API, upload it and log it, as the worker does.

    Args:
        environment: whose D1 and bucket.
        millis: the backup's start (epoch ms), which names the key and log row.
        kind: the ``backupType`` metadata ("manual" or "pre-restore").

    Returns:
        The key, sizes, row count and duration.
    """
    key = backup_key(millis)
    taken = datetime.datetime.fromtimestamp(millis / 1000, datetime.UTC)
    r2 = R2Client(environment)
    d1 = CloudflareClient(environment)
    try:
        started = time.monotonic()
        text, stats = dump_through_d1(d1, environment.d1_database_name, taken)
        body = gzip.compress(text.encode("utf-8"))
        r2.put_bytes(
            backup_bucket(environment),
            key,
            body,
            content_type="application/gzip",
            metadata=_metadata(taken, stats, len(body), kind),
        )
        duration = int((time.monotonic() - started) * 1000)
        _log_backup(d1, f"log_{millis}", key, taken, stats, len(body), duration)
    finally:
        r2.close()
        d1.close()
    return {
        "key": key,
        "original_size": stats.size,
        "compressed_size": len(body),
        "rows": stats.total_rows,
        "duration_ms": duration,
    }


def dump_through_d1(
    client: CloudflareClient, database: str, taken: datetime.datetime
) -> tuple[str, DumpStats]:
    """Dump every table through D1's query API, in the worker's format."""
    tables = client.d1_query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name"
    )[0]["results"]
    indexes = client.d1_query(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name NOT LIKE '_cf_%' ORDER BY tbl_name, name"
    )[0]["results"]
    parts = [dump_header(taken, database)]
    counts = []
    for table in tables:
        rows = list(_pages(client, table["name"]))
        parts.append(table_opening(table["name"], table["sql"]))
        if rows:
            prefix = insert_prefix(table["name"], list(rows[0]))
            parts += [insert_line(prefix, row.values()) for row in rows]
        parts.append("\n")
        counts.append((str(table["name"]), len(rows)))
    parts.append(dump_footer(i["sql"] for i in indexes))
    text = "".join(parts)
    return text, DumpStats(tuple(counts), len(text.encode("utf-8")))


def _pages(client: CloudflareClient, table: str) -> Iterable[Mapping[str, Any]]:
    offset = 0
    while True:
        page = client.d1_query(
            f"SELECT * FROM {quote_name(table)} ORDER BY rowid LIMIT {PAGE_ROWS} OFFSET {offset}"
        )[0]["results"]
        yield from page
        if len(page) < PAGE_ROWS:
            return
        offset += PAGE_ROWS


def _metadata(
    taken: datetime.datetime, stats: DumpStats, compressed: int, kind: str
) -> dict[str, str]:
    saved = 100 * (1 - compressed / stats.size) if stats.size else 0.0
    return {
        "backupDate": f"{taken:%Y-%m-%d}",
        "backupTimestamp": _iso(taken),
        "originalSize": str(stats.size),
        "compressedSize": str(compressed),
        "compressionRatio": f"{saved:.2f}%",
        "backupType": kind,
    }


def _log_backup(
    client: CloudflareClient,
    log_id: str,
    key: str,
    taken: datetime.datetime,
    stats: DumpStats,
    compressed: int,
    duration: int,
) -> None:
    client.d1_query(
        "INSERT INTO backup_logs (id, filename, backup_date, timestamp, original_size, "
        "compressed_size, duration, status, error, stats, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'success', NULL, ?, ?)",
        [
            log_id,
            key,
            f"{taken:%Y-%m-%d}",
            _iso(taken),
            stats.size,
            compressed,
            duration,
            json.dumps(stats.to_json()),
            int(taken.timestamp()),
        ],
        read_only=False,
    )


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


register_applier(ACTION, _apply_manual_backup)
