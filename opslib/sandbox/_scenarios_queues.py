"""Scenarios of the queue-delays runbook (PLATFORM.md sections 2, 7 and 10.6).

- ``consumer-missing``: as committed after 4343fa0, nothing consumes
  ``asset-generation-queue``; its backlog has grown for six hours.
- ``jobs-failing-to-dlq``: analysis jobs threw on every attempt; after 3 retries
  their messages sit in ``manuscript-analysis-dlq`` and consumer A wrote the error
  into each ``status:<reportId>`` object.
- ``ai-rate-limited``: the same, but every error is Anthropic's 429
  ``rate_limit_error`` from the AI Gateway.
- ``high-volume-draining``: a burst of uploads three hours ago; the backlog is
  large but falling steadily, nothing failed.
- ``status-drift``: ``manuscript-analysis-consumer`` (consumer B) is the analysis
  consumer; R2 says complete while D1 still says queued.

All of them are states: the queue board, D1 rows and R2 status objects.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

from ._queuestate import (
    Queue,
    analysis_body,
    asset_body,
    board,
    synthetic_bodies,
)
from ._r2 import STATUS_SWITCH
from ._scenarios import CONSUMER_SCRIPT, Scenario, register_scenario
from ._state import World

RUNBOOK = "queue-delays"
ANALYSIS_DLQ = "manuscript-analysis-dlq"
HOUR = 3600.0
RATE_LIMIT_ERROR = (
    'Claude API error 429: {"type":"error","error":{"type":"rate_limit_error",'
    '"message":"Number of request tokens has exceeded your per-minute rate limit"}}'
)
CODE_ERRORS = (
    "TypeError: Cannot read properties of undefined (reading 'content')",
    "TypeError: Cannot read properties of undefined (reading 'content')",
    "Error: Manuscript file not found in R2",
)
_INSERT = (
    "INSERT INTO manuscripts (id, user_id, title, r2_key, file_hash, status, genre, "
    "word_count, file_type, metadata, uploaded_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _queue(world: World, binding: str) -> Queue:
    return board(world).queues[world.environment.queues[binding]]


def _no_asset_consumer(world: World, now: float) -> None:
    assets = _queue(world, "ASSET_QUEUE")
    assets.consumers = []
    rng = random.Random("consumer-missing")
    bodies = list(synthetic_bodies(rng, 150, asset_body))
    for index, body in enumerate(bodies):
        assets.add(body, now - 6 * HOUR + index * (6 * HOUR / len(bodies)))
    assets.set_history(now, lambda age: max(0.0, 150 * (1 - age / (6 * HOUR))), rng)
    world.scenario.details = {"queue": assets.name, "backlog": len(bodies)}


def _failing_jobs(world: World, now: float) -> None:
    _dead_letters(world, now, "jobs-failing-to-dlq", 9, lambda i: CODE_ERRORS[i % 3])


def _rate_limited(world: World, now: float) -> None:
    _dead_letters(world, now, "ai-rate-limited", 12, lambda i: RATE_LIMIT_ERROR)


def _dead_letters(
    world: World, now: float, name: str, count: int, error: Callable[[int], str]
) -> None:
    rng = random.Random(name)
    rows = _new_manuscripts(world, now, rng, count, "failed")
    dlq = board(world).queues[ANALYSIS_DLQ]
    statuses: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        failed_at = row["uploaded_at"] + 300
        message = dlq.add(
            analysis_body(row["r2_key"], row["genre"], row["report_id"]), failed_at
        )
        message.attempts = 4
        statuses[row["report_id"]] = {
            "status": "failed",
            "progress": 5,
            "message": "Analysis failed",
            "currentStep": "failed",
            "error": error(index),
            "timestamp": int(failed_at * 1000),
        }
    dlq.set_history(now, lambda age: count * max(0.0, 1 - age / (5 * HOUR)), rng)
    world.scenario.switches[STATUS_SWITCH] = statuses
    world.scenario.details = {"dead_letter_queue": ANALYSIS_DLQ, "messages": count}


def _burst(world: World, now: float) -> None:
    analysis = _queue(world, "ANALYSIS_QUEUE")
    rng = random.Random("high-volume-draining")
    bodies = list(synthetic_bodies(rng, 320, analysis_body))
    for index, body in enumerate(bodies):
        analysis.add(body, now - 3 * HOUR + index * 20)
    analysis.set_history(now, _burst_backlog, rng)
    world.scenario.details = {"queue": analysis.name, "backlog": len(bodies)}


def _burst_backlog(age: float) -> float:
    """Backlog by age: none until 5 h ago, 900 at 3 h ago, 320 now."""
    if age >= 5 * HOUR:
        return 1.0
    if age >= 3 * HOUR:
        return 900 * (5 * HOUR - age) / (2 * HOUR)
    return 320 + 580 * age / (3 * HOUR)


def _consumer_b(world: World, now: float) -> None:
    analysis = _queue(world, "ANALYSIS_QUEUE")
    analysis.attach(CONSUMER_SCRIPT, ANALYSIS_DLQ, 3)
    rng = random.Random("status-drift")
    rows = _new_manuscripts(world, now, rng, 7, "queued")
    world.scenario.switches[STATUS_SWITCH] = {
        row["report_id"]: {
            "status": "complete",
            "progress": 100,
            "message": "Analysis complete",
            "timestamp": int((row["uploaded_at"] + 900) * 1000),
        }
        for row in rows
    }
    world.scenario.details = {
        "consumer": CONSUMER_SCRIPT,
        "drifted": [row["report_id"] for row in rows],
    }


def _new_manuscripts(
    world: World, now: float, rng: random.Random, count: int, status: str
) -> list[dict[str, Any]]:
    """Insert ``count`` uploads of the last five hours with ``status`` into D1."""
    connection = sqlite3.connect(world.database)
    try:
        users = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM users WHERE email_verified = 1 AND email LIKE "
                "'author%' ORDER BY email LIMIT 40"
            )
        ]
        rows = [_manuscript(rng, rng.choice(users), now, status) for _ in range(count)]
        connection.executemany(_INSERT, [_values(row) for row in rows])
        connection.commit()
    finally:
        connection.close()
    return rows


def _manuscript(
    rng: random.Random, user_id: str, now: float, status: str
) -> dict[str, Any]:
    manuscript_id = _uuid(rng)
    uploaded = int(now - rng.uniform(0.7, 5) * HOUR)
    name = f"upload-{manuscript_id[:4]}.docx"
    return {
        "id": manuscript_id,
        "user_id": user_id,
        "r2_key": f"{user_id}/{manuscript_id}/{_iso(uploaded)}_{name}",
        "report_id": _uuid(rng)[:8],
        "genre": rng.choice(("general", "fantasy", "thriller")),
        "status": status,
        "name": name,
        "uploaded_at": uploaded,
    }


def _values(row: dict[str, Any]) -> tuple[Any, ...]:
    metadata = json.dumps({"reportId": row["report_id"], "originalName": row["name"]})
    return (
        row["id"],
        row["user_id"],
        "Untitled upload",
        row["r2_key"],
        hashlib.sha256(row["id"].encode()).hexdigest(),
        row["status"],
        row["genre"],
        42_000,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        metadata,
        row["uploaded_at"],
        row["uploaded_at"] + 5,
    )


def _iso(moment: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(moment))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


for _scenario, _hook in (
    (
        Scenario(
            "consumer-missing",
            RUNBOOK,
            "consumer-missing",
            "Nothing consumes asset-generation-queue; 150 messages, growing for 6 h.",
        ),
        _no_asset_consumer,
    ),
    (
        Scenario(
            "jobs-failing-to-dlq",
            RUNBOOK,
            "jobs-failing-to-dlq",
            "9 analysis jobs failed 4 times each and sit in manuscript-analysis-dlq.",
        ),
        _failing_jobs,
    ),
    (
        Scenario(
            "ai-rate-limited",
            RUNBOOK,
            "ai-rate-limited",
            "12 analysis jobs in the DLQ, all failed with Anthropic's 429.",
        ),
        _rate_limited,
    ),
    (
        Scenario(
            "high-volume-draining",
            RUNBOOK,
            "high-volume-draining",
            "320 analysis messages after a burst 3 h ago; the backlog is falling.",
        ),
        _burst,
    ),
    (
        Scenario(
            "status-drift",
            RUNBOOK,
            "status-drift",
            "manuscript-analysis-consumer consumes analysis: R2 complete, D1 queued.",
        ),
        _consumer_b,
    ),
):
    register_scenario(_scenario, after_reset=_hook)
