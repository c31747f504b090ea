"""Manuscripts stuck in a status: D1's ``manuscripts.status`` against R2's view.

Each upload has a ``status:<reportId>`` object in ``manuscripts-raw``
(PLATFORM.md section 7). Consumer A writes queued/processing/complete/failed there
and mirrors it in D1; consumer B writes running/complete/error and never touches
D1. So R2 saying complete while D1 says queued means the analysis ran and only
D1 is behind. ``GET /analyze/status`` is meant to serve these objects but answers
500 on every call in the code as committed (an ``allHeaders`` ReferenceError), so
this check reads R2 directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errors import ConfigError
from ._finding import Finding, Status, check, unknown
from ._r2 import R2Client
from ._time import parse_duration, utcnow

logger = logging.getLogger(__name__)

WAITING = ("queued", "analyzing")
DONE_IN_R2 = ("complete", "error", "failed")
ROW_LIMIT = 200
_SQL = (
    "SELECT id, status, metadata, uploaded_at, updated_at FROM manuscripts "
    "WHERE status IN ('queued', 'analyzing') AND updated_at >= ? "
    "ORDER BY updated_at DESC LIMIT ?"
)


@check("status-drift")
def check_status_drift(
    environment: Environment, *, lookback: str = "6h", limit: int = ROW_LIMIT
) -> Finding:
    """Compare waiting manuscripts in D1 with their R2 status objects.

    Args:
        environment: names the database and the bucket.
        lookback: only manuscripts updated this recently, such as "6h".
        limit: at most this many manuscripts are compared (newest first).
    """
    since = int((utcnow() - parse_duration(lookback)).timestamp())
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(_SQL, [since, limit])[0]["results"]
    finally:
        client.close()
    if not rows:
        text = f"no manuscript has waited in queued or analyzing within {lookback}"
        return Finding("status-drift", Status.OK, text, facts={"compared": 0})
    try:
        r2 = R2Client(environment)
    except ConfigError as error:
        return unknown("status-drift", f"R2 not readable: {error}")
    bucket = environment.r2_buckets.get("MANUSCRIPTS_RAW", "manuscripts-raw")
    try:
        compared = [_compare(r2, bucket, row) for row in rows]
    finally:
        r2.close()
    return _finding(compared, lookback, capped=len(rows) >= limit)


def _compare(r2: R2Client, bucket: str, row: Mapping[str, Any]) -> dict[str, Any]:
    report_id = str(json.loads(row.get("metadata") or "{}").get("reportId") or "")
    status = r2.get_json(bucket, f"status:{report_id}") if report_id else None
    r2_status = str((status or {}).get("status") or "(none)")
    now = utcnow().timestamp()
    return {
        "manuscript": str(row["id"])[:8],
        "report_id": report_id,
        "d1_status": row["status"],
        "r2_status": r2_status,
        "waiting_min": round((now - float(row["uploaded_at"])) / 60),
        "drift": r2_status in DONE_IN_R2,
    }


def _finding(compared: list[dict[str, Any]], lookback: str, capped: bool) -> Finding:
    drifted = [row for row in compared if row["drift"]]
    missing = [row for row in compared if row["r2_status"] == "(none)"]
    facts: dict[str, Any] = {
        "compared": len(compared),
        "drifted": [row["report_id"] for row in drifted],
        "missing": [row["report_id"] for row in missing],
        "oldest_waiting_min": max(row["waiting_min"] for row in compared),
        "capped": capped,
    }
    shown = drifted + [row for row in compared if not row["drift"]]
    if drifted:
        states = sorted({row["r2_status"] for row in drifted})
        text = (
            f"{len(drifted)} of {len(compared)} waiting manuscript(s) are "
            f"{'/'.join(states)} in R2 but still queued or analyzing in D1"
        )
        return Finding("status-drift", Status.FAIL, text, shown, facts)
    if missing:
        text = f"{len(missing)} waiting manuscript(s) have no status object in R2"
        return Finding("status-drift", Status.WARN, text, shown, facts)
    text = (
        f"{len(compared)} manuscript(s) waiting within {lookback}; R2 agrees with D1 "
        "for all of them"
    )
    return Finding("status-drift", Status.OK, text, shown, facts)
