"""Backup status: the backup worker's log in D1 and its objects in R2.

The worker (PLATFORM.md section 6) runs daily at 03:00 UTC (and at 02:00 too
once the second cron is live), writes one ``backup_logs`` row per attempt and one
object per success to ``manuscript-platform-backups``, key
``backup-YYYY-MM-DD-<epoch ms>.sql.gz``. Nothing alerts on its failures; the
runbook's alert rules are checked here: a failed backup, none in 36 hours, a
backup over twice the average size, one that took over ten minutes. The last
success should be under 24 hours old.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errors import APIError
from ._finding import Finding, Status, check
from ._r2 import R2Client
from ._restorecheck import parse_time
from ._time import utcnow

BACKUP_BINDING = "BACKUPS"
DEFAULT_BUCKET = "manuscript-platform-backups"
FRESH_HOURS = 24.0
STALE_HOURS = 36.0
OVERSIZE_FACTOR = 2.0
SLOW_MS = 10 * 60 * 1000
HISTORY_ROWS = 90
KEY_PATTERN = re.compile(r"backup-(\d{4}-\d{2}-\d{2})-(\d{10,})\.sql\.gz")
_LOG_SQL = (
    "SELECT id, filename, backup_date, timestamp, original_size, compressed_size, "
    "duration, status, error, stats, created_at FROM backup_logs "
    f"ORDER BY created_at DESC LIMIT {HISTORY_ROWS}"
)


def backup_bucket(environment: Environment) -> str:
    """The backups bucket of an environment (its ``BACKUPS`` binding)."""
    return environment.r2_buckets.get(BACKUP_BINDING) or DEFAULT_BUCKET


def read_backup_log(environment: Environment) -> list[dict[str, Any]]:
    """Return the newest ``backup_logs`` rows, newest first ([] without the table).

    Raises:
        ServiceError: when D1 cannot be read.
    """
    client = CloudflareClient(environment)
    try:
        answer = client.d1_query(_LOG_SQL)
    except APIError as error:
        if "no such table" in str(error):
            return []
        raise
    finally:
        client.close()
    return list(answer[0].get("results") or [])


@check("backup-log")
def check_backup_log(
    environment: Environment, *, now: datetime.datetime | None = None
) -> Finding:
    """Read the backup log against the runbook's alert rules.

    Fails when the newest attempt failed or no backup succeeded in 36 hours;
    warns when the last success is over 24 hours old, the newest backup is over
    twice the average size of the ones before it, or it took over ten minutes.
    """
    rows = read_backup_log(environment)
    moment = (now or utcnow()).timestamp()
    if not rows:
        return Finding(
            "backup-log",
            Status.FAIL,
            "backup_logs is missing or empty: no backup has ever run",
            facts={"rule": "none-in-36h", "rows": 0},
        )
    facts = _log_facts(rows, moment)
    return Finding(
        "backup-log",
        _log_status(facts),
        _log_summary(facts),
        [_shown(row, moment) for row in rows[:10]],
        facts,
    )


def _log_facts(rows: list[dict[str, Any]], moment: float) -> dict[str, Any]:
    successes = [r for r in rows if r.get("status") == "success"]
    latest = rows[0]
    facts: dict[str, Any] = {
        "rows": len(rows),
        "latest_status": latest.get("status"),
        "latest_error": latest.get("error"),
        "latest_at": _row_time(latest),
        "failed_recent": sum(
            r.get("status") != "success" for r in rows if _age_h(r, moment) <= 7 * 24
        ),
        "last_success_age_h": _age_h(successes[0], moment) if successes else None,
        # rows older than this were not read: objects before it cannot be matched
        "read_from": 0.0 if len(rows) < HISTORY_ROWS else _row_time(rows[-1]),
        "successes": [
            {
                "filename": r.get("filename"),
                "size": r.get("compressed_size"),
                "stats": r.get("stats"),
                "created_at": _row_time(r),
            }
            for r in successes
        ],
    }
    if successes:
        newest = successes[0]
        earlier = [
            r["compressed_size"] for r in successes[1:31] if r.get("compressed_size")
        ]
        average = sum(earlier) / len(earlier) if earlier else None
        size = newest.get("compressed_size") or 0
        facts["size_ratio"] = size / average if average else None
        facts["average_size"] = average
        facts["latest_size"] = size
        facts["latest_duration_ms"] = newest.get("duration")
    facts["rule"] = _broken_rule(facts)
    return facts


def _broken_rule(facts: Mapping[str, Any]) -> str:
    age = facts.get("last_success_age_h")
    if facts["latest_status"] != "success":
        return "failed"
    if age is None or age > STALE_HOURS:
        return "none-in-36h"
    if (facts.get("size_ratio") or 0) > OVERSIZE_FACTOR:
        return "size-over-2x"
    if (facts.get("latest_duration_ms") or 0) > SLOW_MS:
        return "duration-over-10min"
    if age > FRESH_HOURS:
        return "older-than-24h"
    return ""


def _log_status(facts: Mapping[str, Any]) -> Status:
    rule = facts["rule"]
    if rule in ("failed", "none-in-36h"):
        return Status.FAIL
    return Status.WARN if rule else Status.OK


def _log_summary(facts: Mapping[str, Any]) -> str:
    age = facts.get("last_success_age_h")
    last = f"last success {age:.1f} h ago" if age is not None else "no success logged"
    rule = facts["rule"]
    if rule == "failed":
        return f"the newest backup failed: {facts.get('latest_error') or 'no error text'}; {last}"
    if rule == "none-in-36h":
        return f"no successful backup in {STALE_HOURS:.0f} h: {last}"
    if rule == "size-over-2x":
        return (
            f"the newest backup is {facts['size_ratio']:.1f}x the average size "
            f"({facts['latest_size']:,} bytes against {facts['average_size']:,.0f}); {last}"
        )
    if rule == "duration-over-10min":
        minutes = facts["latest_duration_ms"] / 60000
        return f"the newest backup took {minutes:.1f} min (expected < 5); {last}"
    if rule == "older-than-24h":
        return f"{last}: over 24 h, the next run is due"
    failed = facts["failed_recent"]
    note = f"; {failed} failed attempts in the last 7 days" if failed else ""
    return f"{last}, {facts['latest_size']:,} bytes compressed{note}"


def _shown(row: Mapping[str, Any], moment: float) -> dict[str, Any]:
    return {
        "filename": row.get("filename"),
        "status": row.get("status"),
        "compressed_size": row.get("compressed_size"),
        "duration_ms": row.get("duration"),
        "age_h": round(_age_h(row, moment), 1),
        "error": row.get("error") or "",
    }


def _row_time(row: Mapping[str, Any]) -> float:
    created = row.get("created_at")
    if isinstance(created, (int, float)):
        return float(created)
    return parse_time(str(row.get("timestamp") or "")) or 0.0


def _age_h(row: Mapping[str, Any], moment: float) -> float:
    return (moment - _row_time(row)) / 3600


@check("backup-bucket")
def check_backup_bucket(
    environment: Environment,
    *,
    log: Finding | None = None,
    now: datetime.datetime | None = None,
) -> Finding:
    """List the backups bucket and hold it against the log.

    Every logged success of the last 30 days (retention keeps them all) must have
    its object with the logged compressed size; the newest backup should be under
    36 hours old. When the log could be read, only objects it logs as successes
    count as backups: an object named like a backup that the log does not know
    (within the stretch of the log that was read) is listed as unlogged, warns,
    and is never taken as the newest backup; so is an object of 0 bytes, which
    no gzip dump can be.
    """
    bucket = backup_bucket(environment)
    client = R2Client(environment)
    try:
        objects = client.list_objects(bucket)
    finally:
        client.close()
    moment = (now or utcnow()).timestamp()
    named = sorted(
        (_object_row(o, moment) for o in objects if KEY_PATTERN.fullmatch(o["key"])),
        key=lambda o: o["taken_at"],
        reverse=True,
    )
    backups, unlogged = _split_unlogged(named, log)
    problems = _log_problems(backups, log, moment) + unlogged
    facts = {
        "bucket": bucket,
        "count": len(backups),
        "other_objects": len(objects) - len(named),
        "unlogged": [row["key"] for row in unlogged],
        "newest": backups[0] if backups else None,
        "objects": backups,
        "problems": problems,
    }
    return Finding(
        "backup-bucket",
        _bucket_status(backups, problems),
        _bucket_summary(bucket, backups, problems),
        problems or [_public(b) for b in backups[:10]],
        facts,
    )


def _split_unlogged(
    named: list[dict[str, Any]], log: Finding | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Part the objects into backups and objects that are no backup.

    Without a readable log only 0-byte objects are set apart. With one, an
    object is a backup when the log has its success row, or when it is older
    than the oldest log row read (retention keeps monthly and yearly objects
    far beyond it).
    """
    known = log is not None and log.status is not Status.UNKNOWN and "rows" in log.facts
    logged = (
        {row["filename"] for row in (log.facts.get("successes") or [])}
        if log
        else set()
    )
    read_from = float(log.facts.get("read_from") or 0.0) if log else 0.0
    backups, unlogged = [], []
    for row in named:
        if row["size"] == 0:
            problem = "0 bytes: not a gzip dump"
        elif known and row["key"] not in logged and row["taken_at"] >= read_from:
            problem = "not in the backup log: not written by the backup worker"
        else:
            backups.append(row)
            continue
        unlogged.append({"key": row["key"], "problem": problem, "size": row["size"]})
    return backups, unlogged


def _object_row(item: Mapping[str, Any], moment: float) -> dict[str, Any]:
    match = KEY_PATTERN.fullmatch(item["key"])
    taken = int(match[2]) / 1000 if match else 0.0
    return {
        "key": item["key"],
        "size": item["size"],
        "taken_at": taken,
        "age_h": round((moment - taken) / 3600, 1),
    }


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("key", "size", "age_h")}


def _log_problems(
    backups: Sequence[Mapping[str, Any]], log: Finding | None, moment: float
) -> list[dict[str, Any]]:
    if log is None or not log.facts.get("successes"):
        return []
    sizes = {b["key"]: b["size"] for b in backups}
    problems = []
    for row in log.facts["successes"]:
        if (moment - row["created_at"]) / 3600 > 29 * 24:
            continue
        key = row["filename"]
        if key not in sizes:
            problems.append({"key": key, "problem": "logged as a success, no object"})
        elif row["size"] is not None and sizes[key] != row["size"]:
            problems.append(
                {
                    "key": key,
                    "problem": f"object has {sizes[key]} bytes, log says {row['size']}",
                }
            )
    return problems


def _bucket_status(backups: Sequence[Mapping[str, Any]], problems: list[Any]) -> Status:
    if not backups or backups[0]["age_h"] > STALE_HOURS:
        return Status.FAIL
    return Status.WARN if problems else Status.OK


def _bucket_summary(
    bucket: str, backups: Sequence[Mapping[str, Any]], problems: list[Any]
) -> str:
    strays = [p for p in problems if "size" in p]
    disagree = [p for p in problems if "size" not in p]
    if not backups:
        text = f"{bucket} holds no backups"
    else:
        text = (
            f"{len(backups)} backups in {bucket}, the newest "
            f"{backups[0]['age_h']:.1f} h old ({backups[0]['key']}); retention keeps "
            "about 30-40"
        )
    if disagree:
        text += (
            f"; {len(disagree)} disagree with the log, first: {disagree[0]['problem']}"
        )
    if strays:
        text += (
            f"; {len(strays)} objects named like backups are not counted, first "
            f"{strays[0]['key']}: {strays[0]['problem']}"
        )
    return text


def pick_backup(bucket: Finding, *, key: str = "", age_days: float = 0.0) -> str:
    """Choose a backup: the given key, or the newest at least ``age_days`` old.

    A key given by name may be an object the log does not know (its restore
    then says the log has no counts for it); the newest is always a logged one.

    Returns:
        The key, or "" when the bucket holds none that fits.
    """
    objects = bucket.facts.get("objects") or []
    if key:
        named = [o["key"] for o in objects] + list(bucket.facts.get("unlogged") or [])
        return key if key in named else ""
    old_enough = [o for o in objects if o["age_h"] >= age_days * 24]
    return str(old_enough[0]["key"]) if old_enough else ""
