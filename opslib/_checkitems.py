"""Checks the monitoring checklists need that no other runbook has.

The 5xx share of the day against the 1 % target, the size of D1 and of the R2
buckets, the pace of registrations, and whether the backup crons run inside a
maintenance window. Thresholds are those of the platform's monitoring guide
(PLATFORM.md section 8). Backups are checked by the backups procedure's own
checks (``check_backup_log``, ``restore_backup``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._dbwrite import run_select
from ._errorrate import check_route_errors
from ._finding import Finding, Status, check
from ._r2 import R2Client
from ._team import Team

HOUR = 3600
DAY = 24 * HOUR
BACKUP_CRON_CLOCKS = ("02:00", "03:00")  # both crons run the backup (section 2)
ERROR_TARGET = 0.01  # error rate < 1 %
ERROR_WARNING = 0.05  # 5-10 % is a warning, > 10 % critical
D1_WARN_BYTES = 400 * 10**6
D1_LIMIT_BYTES = 500 * 10**6
R2_FREE_BYTES = 10 * 10**9
R2_WARN_SHARE = 0.8
SPAM_PER_DAY = 100  # "> 100 registrations/day (spam)"
MB = 10**6


def check_error_share(environment: Environment, *, window_min: int = 1440) -> Finding:
    """The share of 5xx answers in Workers Logs against the 1 % target.

    Workers analytics counts only uncaught exceptions, and the platform's global
    handler turns them into 500 answers, so the logged status codes are read
    instead. Under 1 % passes, up to 5 % warns, above fails; 429s are kept apart.
    """
    routes = check_route_errors(environment, window_min=window_min)
    if routes.status is Status.UNKNOWN or "server_error_rate" not in routes.facts:
        return Finding("error-rate", routes.status, routes.summary, (), routes.facts)
    rate = float(routes.facts["server_error_rate"])
    status = error_share_status(rate)
    text = f"5xx share {rate:.2%} (target under 1 %); {routes.summary}"
    facts = {"server_error_rate": rate, "requests": routes.facts.get("requests")}
    return Finding("error-rate", status, text, routes.evidence, facts, routes.elapsed_s)


def error_share_status(rate: float) -> Status:
    """Under 1 % ok, under 5 % warn, from 5 % fail (the monitoring guide's bands)."""
    if rate < ERROR_TARGET:
        return Status.OK
    return Status.WARN if rate < ERROR_WARNING else Status.FAIL


@check("d1-size")
def check_d1_size(environment: Environment) -> Finding:
    """The D1 database's file size against the monitoring guide's 400/500 MB."""
    client = CloudflareClient(environment)
    try:
        info = client.get(
            f"/accounts/{environment.account_id}/d1/database/"
            f"{environment.d1_database_id}"
        )
    finally:
        client.close()
    return _judge_d1_size(
        environment.d1_database_name,
        int((info or {}).get("file_size") or 0),
        (info or {}).get("num_tables"),
    )


def _judge_d1_size(name: str, size: int, tables: object) -> Finding:
    row = {"database": name, "mb": round(size / MB, 2)}
    facts = {"file_size": size, "num_tables": tables}
    text = f"{size / MB:.1f} MB in {tables} tables"
    if size >= D1_LIMIT_BYTES:
        return Finding("d1-size", Status.FAIL, text + " (limit 500 MB)", [row], facts)
    if size >= D1_WARN_BYTES:
        return Finding("d1-size", Status.WARN, text + " (warn at 400 MB)", [row], facts)
    return Finding("d1-size", Status.OK, text + ", under 400 MB", [row], facts)


@check("r2-storage")
def check_r2_storage(
    environment: Environment, *, budget_bytes: int = R2_FREE_BYTES
) -> Finding:
    """Objects and bytes per R2 bucket against the storage budget (10 GB free)."""
    client = R2Client(environment)
    try:
        rows = [_bucket_row(client, b) for b in environment.r2_buckets.values()]
    finally:
        client.close()
    total = sum(r["bytes"] for r in rows)
    share = total / budget_bytes if budget_bytes else 1.0
    facts = {"bytes": total, "budget_share": share, "buckets": rows}
    text = f"{total / MB:.1f} MB in {len(rows)} buckets, {share:.1%} of the budget"
    truncated = [r["bucket"] for r in rows if r["truncated"]]
    if truncated:
        text += f" (counted the first 10000 objects of {', '.join(truncated)})"
    if share >= 1:
        return Finding("r2-storage", Status.FAIL, text, rows, facts)
    status = Status.WARN if share >= R2_WARN_SHARE or truncated else Status.OK
    return Finding("r2-storage", status, text, rows, facts)


def _bucket_row(client: R2Client, bucket: str) -> dict[str, Any]:
    objects = client.list_objects(bucket, limit=10_000)
    return {
        "bucket": bucket,
        "objects": len(objects),
        "bytes": sum(o["size"] for o in objects),
        "truncated": len(objects) >= 10_000,
    }


@check("registrations")
def check_registrations(
    environment: Environment, *, now: float | None = None
) -> Finding:
    """Registrations per week over four weeks, and the busiest day of the last.

    Warns when none came in the last 7 days, or a day passed 100 (spam).
    """
    now = time.time() if now is None else now
    client = CloudflareClient(environment)
    try:
        weeks = run_select(
            client,
            "SELECT CAST((? - created_at) / 604800 AS INTEGER) AS weeks_ago, "
            "COUNT(*) AS registrations FROM users WHERE created_at >= ? "
            "GROUP BY weeks_ago ORDER BY weeks_ago",
            [int(now), int(now - 28 * DAY)],
        )
        busiest = run_select(
            client,
            "SELECT date(created_at, 'unixepoch') AS day, COUNT(*) AS n FROM users "
            "WHERE created_at >= ? GROUP BY day ORDER BY n DESC LIMIT 1",
            [int(now - 7 * DAY)],
        )
    finally:
        client.close()
    return _judge_registrations(weeks, busiest[0] if busiest else None)


def _judge_registrations(
    weeks: list[dict[str, Any]], busiest: Mapping[str, Any] | None
) -> Finding:
    by_week = {int(r["weeks_ago"]): int(r["registrations"]) for r in weeks}
    rows = [{"weeks_ago": w, "registrations": by_week.get(w, 0)} for w in range(4)]
    this_week, earlier = (
        rows[0]["registrations"],
        [r["registrations"] for r in rows[1:]],
    )
    facts = {"by_week": rows, "busiest_day": dict(busiest or {})}
    trend = "up" if this_week > sum(earlier) / 3 else "flat or down"
    text = f"{this_week} registrations in the last 7 days ({trend}; before: {earlier})"
    if busiest and int(busiest["n"]) > SPAM_PER_DAY:
        text += f"; {busiest['n']} on {busiest['day']}, over 100 a day (spam?)"
        return Finding("registrations", Status.WARN, text, rows, facts)
    if this_week == 0:
        return Finding("registrations", Status.WARN, text, rows, facts)
    return Finding("registrations", Status.OK, text, rows, facts)


def check_maintenance(team: Team) -> Finding:
    """Whether the backup crons (02:00 and 03:00 UTC daily) fall in a window.

    Both crons run the backup (PLATFORM.md section 2), and the runbook's Sunday
    window covers both. A backup taken while the database is under maintenance
    may catch it half done, so a collision is a manual item: the person who
    runs the window plans around the backups. It is not an alarm, since it
    stays true every week until the window or the cron moves.
    """
    pairs = [(w, clock) for w in team.maintenance for clock in BACKUP_CRON_CLOCKS]
    rows = [
        {
            "window": w.describe(),
            "backup_at": clock,
            "overlaps": w.overlaps_daily(clock),
        }
        for w, clock in pairs
    ]
    hits = [(w, clock) for w, clock in pairs if w.overlaps_daily(clock)]
    if hits:
        clocks = ", ".join(clock for _, clock in hits)
        text = (
            f"the backups at {clocks} UTC run inside {hits[0][0].describe()}: keep "
            "database work clear of them, or move the window or the cron"
        )
        facts = {"overlaps": len(hits), "manual": True}
        return Finding("maintenance", Status.MANUAL, text, rows, facts)
    text = f"no backup cron inside the {len(team.maintenance)} maintenance window(s)"
    return Finding("maintenance", Status.OK, text, rows, {"overlaps": 0})
