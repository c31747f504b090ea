"""Checks of the "queue processing delays" runbook.

The upload API produces to two queues (PLATFORM.md sections 2 and 7):
``manuscript-analysis-queue`` and ``asset-generation-queue``. Until 4343fa0 the
main Worker consumed both (consumer A), with dead-letter queues
``manuscript-analysis-dlq`` and ``asset-generation-dlq``. As committed after it,
nothing consumes the asset queue and ``manuscript-analysis-consumer`` (consumer B)
consumes analysis without ever updating D1. The checks read the queues, their
consumers, the dead letters and the backlog history from the Cloudflare API, and
compare D1's ``manuscripts.status`` with R2's ``status:<reportId>`` objects.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._errors import ConfigError, ServiceError
from ._finding import Finding, Status, check
from ._r2 import R2Client
from ._time import utcnow

logger = logging.getLogger(__name__)

DEFAULT_DLQ = {
    "ANALYSIS_QUEUE": "manuscript-analysis-dlq",
    "ASSET_QUEUE": "asset-generation-dlq",
}
RAW_BUCKET = "MANUSCRIPTS_RAW"
BACKLOG_WARN = 100
MAX_AGE_MIN = 30
PEEK_LIMIT = 100
RATE_LIMIT_MARKS = ("429", "rate_limit")


@check("queue-backlog")
def check_queue_backlog(
    environment: Environment,
    *,
    backlog_warn: int = BACKLOG_WARN,
    max_age_min: int = MAX_AGE_MIN,
) -> Finding:
    """Read the backlog and the oldest message's age of each platform queue.

    Args:
        environment: names the queues (``queues`` bindings).
        backlog_warn: a backlog from this many messages is worth a warning.
        max_age_min: a message older than this is worth a warning; analysis takes
            10-15 minutes per manuscript (QUEUES.md).
    """
    client = CloudflareClient(environment)
    try:
        rows = [_backlog_row(client, name) for name in environment.queues.values()]
    finally:
        client.close()

    missing = [row["queue"] for row in rows if row["backlog"] is None]
    behind = [
        row["queue"]
        for row in rows
        if (row["backlog"] or 0) >= backlog_warn
        or (row["oldest_age_min"] or 0) > max_age_min
    ]
    by_name = {row["queue"]: row for row in rows}
    facts = {"queues": by_name, "behind": behind}
    if missing:
        text = f"queue(s) not found in the account: {', '.join(missing)}"
        return Finding("queue-backlog", Status.FAIL, text, rows, facts)
    if behind:
        text = "; ".join(_describe_backlog(by_name[name]) for name in behind)
        return Finding("queue-backlog", Status.WARN, text, rows, facts)
    total = sum(int(row["backlog"] or 0) for row in rows)
    text = f"{total} message(s) waiting across {len(rows)} queues, none old"
    return Finding("queue-backlog", Status.OK, text, rows, facts)


@check("queue-consumers")
def check_queue_consumers(environment: Environment) -> Finding:
    """Say which consumer is attached to which queue, and where its DLQ is.

    A queue accepts one Worker consumer. One that is not the main Worker on the
    analysis queue is taken for ``manuscript-analysis-consumer`` (consumer B),
    which writes R2 status objects but never D1.
    """
    client = CloudflareClient(environment)
    try:
        rows = [
            _consumer_row(client, binding, name)
            for binding, name in environment.queues.items()
        ]
    finally:
        client.close()

    unconsumed = [row["queue"] for row in rows if not row["consumer"]]
    analysis = environment.queues.get("ANALYSIS_QUEUE", "")
    others = [
        row["consumer"]
        for row in rows
        if row["queue"] == analysis
        and row["consumer"]
        and row["consumer"] != environment.worker_name
    ]
    facts: dict[str, Any] = {
        "consumers": {row["queue"]: row["consumer"] for row in rows},
        "dead_letter_queues": {row["queue"]: row["dead_letter_queue"] for row in rows},
        "unconsumed": unconsumed,
        "separate_analysis_consumer": others[0] if others else "",
    }
    if unconsumed:
        text = (
            f"no consumer on {', '.join(unconsumed)}: its messages wait until "
            "retention (4 days) drops them"
        )
        return Finding("queue-consumers", Status.FAIL, text, rows, facts)
    if others:
        text = (
            f"{analysis} is consumed by {others[0]}, not {environment.worker_name}: "
            "that consumer never updates D1, so manuscripts stay 'queued'"
        )
        return Finding("queue-consumers", Status.WARN, text, rows, facts)
    text = f"every queue has one consumer ({environment.worker_name})"
    return Finding("queue-consumers", Status.OK, text, rows, facts)


@check("dead-letters")
def check_dead_letters(
    environment: Environment,
    *,
    dead_letter_queues: Iterable[str] = (),
    limit: int = PEEK_LIMIT,
) -> Finding:
    """Peek at the dead-letter queues and group their messages by error.

    A dead letter carries only the original body; the error text is in the
    ``status:<reportId>`` object consumer A wrote to R2 when the job failed.
    Peeking leases nothing and changes nothing.

    Args:
        environment: names the queues and the R2 bucket.
        dead_letter_queues: the DLQs named by the consumers (step 2); the
            platform's two by default.
        limit: at most this many messages are read per DLQ.
    """
    names = list(dict.fromkeys(n for n in dead_letter_queues if n))
    names = names or list(DEFAULT_DLQ.values())
    client = CloudflareClient(environment)
    try:
        letters = {name: _peek(client, name, limit) for name in names}
    finally:
        client.close()

    counts = {name: count for name, (count, _) in letters.items()}
    messages = [(name, m) for name, (_, found) in letters.items() for m in found]
    errors = _errors_for(environment, [body for _, body in messages])
    groups = Counter(errors)
    rows = [
        {"error": text[:100], "count": n, "rate_limited": _is_rate_limit(text)}
        for text, n in groups.most_common()
    ]
    facts = _letter_facts(counts, messages, groups)
    if not facts["total"]:
        return Finding("dead-letters", Status.OK, "the dead-letter queues are empty")
    text = f"{facts['total']} dead letter(s): " + ", ".join(
        f"{name} {n}" for name, n in counts.items() if n
    )
    if facts["rate_limited"]:
        text += f"; {facts['rate_limited']} of {len(messages)} read failed with 429"
    return Finding("dead-letters", Status.FAIL, text, rows, facts)


def decode_body(message: Mapping[str, Any]) -> Any:
    """Decode a pulled or peeked message's body (JSON arrives base64-encoded)."""
    body = message.get("body")
    kind = (message.get("metadata") or {}).get("CF-Content-Type", "json")
    if kind in ("json", "bytes") and isinstance(body, str):
        try:
            text = base64.b64decode(body, validate=True).decode("utf-8")
        except ValueError:
            return body
        if kind == "bytes":
            return text
        try:
            return json.loads(text)
        except ValueError:
            return text
    return body


def _backlog_row(client: CloudflareClient, name: str) -> dict[str, Any]:
    queue = client.find_queue(name)
    if queue is None:
        return {"queue": name, "backlog": None, "oldest_age_min": None, "id": ""}
    metrics = client.queue_metrics(str(queue["queue_id"]))
    oldest = int(metrics.get("oldest_message_timestamp_ms") or 0)
    now_ms = utcnow().timestamp() * 1000
    age = round((now_ms - oldest) / 60_000, 1) if oldest else 0.0
    return {
        "queue": name,
        "backlog": int(metrics.get("backlog_count") or 0),
        "oldest_age_min": age,
        "id": str(queue["queue_id"]),
    }


def _describe_backlog(row: Mapping[str, Any]) -> str:
    return (
        f"{row['queue']}: {row['backlog']} waiting, oldest "
        f"{row['oldest_age_min']:.0f} min"
    )


def _consumer_row(client: CloudflareClient, binding: str, name: str) -> dict[str, Any]:
    queue = client.find_queue(name)
    consumers = client.list_queue_consumers(str(queue["queue_id"])) if queue else []
    first = consumers[0] if consumers else {}
    settings = first.get("settings") or {}
    return {
        "queue": name,
        "consumer": str(first.get("script_name") or first.get("script") or "")
        or ("http_pull" if first.get("type") == "http_pull" else ""),
        "dead_letter_queue": str(first.get("dead_letter_queue") or "")
        or (DEFAULT_DLQ.get(binding, "") if not first else ""),
        "max_retries": settings.get("max_retries"),
        "retry_delay": settings.get("retry_delay"),
    }


def _peek(
    client: CloudflareClient, name: str, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    queue = client.find_queue(name)
    if queue is None:
        return 0, []
    queue_id = str(queue["queue_id"])
    count = int(client.queue_metrics(queue_id).get("backlog_count") or 0)
    if not count:
        return 0, []
    found = client.peek_messages(queue_id, batch_size=min(limit, 100))
    return count, [
        {"id": m.get("id"), "attempts": m.get("attempts"), "body": decode_body(m)}
        for m in found
    ]


def _errors_for(environment: Environment, messages: list[dict[str, Any]]) -> list[str]:
    """The failure text of each message, from its R2 status object."""
    if not messages:
        return []
    try:
        r2 = R2Client(environment)
    except ConfigError as error:
        return [f"R2 not readable: {error}"[:100]] * len(messages)
    bucket = environment.r2_buckets.get(RAW_BUCKET, "manuscripts-raw")
    try:
        return [_error_text(r2, bucket, message) for message in messages]
    finally:
        r2.close()


def _error_text(r2: R2Client, bucket: str, message: Mapping[str, Any]) -> str:
    body = message.get("body")
    report_id = body.get("reportId") if isinstance(body, dict) else None
    if not report_id:
        return "(no reportId in the message)"
    try:
        status = r2.get_json(bucket, f"status:{report_id}")
    except ServiceError as error:
        return f"(status object unreadable: {error})"[:100]
    if status is None:
        return "(no status object in R2)"
    return str(status.get("error") or status.get("message") or status.get("status"))


def _is_rate_limit(text: str) -> bool:
    return any(mark in text for mark in RATE_LIMIT_MARKS)


def _letter_facts(
    counts: Mapping[str, int],
    messages: list[tuple[str, dict[str, Any]]],
    groups: Counter[str],
) -> dict[str, Any]:
    return {
        "by_queue": dict(counts),
        "total": sum(counts.values()),
        "read": len(messages),
        "rate_limited": sum(n for text, n in groups.items() if _is_rate_limit(text)),
        "groups": dict(groups),
    }
