"""The Queues stand-in's state: queues, their consumers, messages and backlog history.

A scenario starts from the platform as it ran before 4343fa0 (PLATFORM.md section
2): the main Worker consumes both queues, analysis with 3 retries into
``manuscript-analysis-dlq``, assets with 2 retries into ``asset-generation-dlq``;
both queues are nearly empty and both dead-letter queues are empty. Scenarios of
the queue-delays runbook change that board in their ``after_reset`` hook.

The board lives in ``ScenarioState.switches`` under :data:`BOARD_SWITCH`, so it is
built afresh, lazily, for every scenario, including those of other runbooks.
Nothing consumes messages by itself: the backlog changes only through the API
(send, pull and ack) and through what a scenario puts in.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._state import World

BOARD_SWITCH = "queues.board"
MAIN_WORKER = "manuscript-upload-api"
SAMPLE_EVERY_S = 300.0
HISTORY_S = 24 * 3600.0
RETENTION_S = 4 * 86_400


@dataclass
class Message:
    """One message in a queue, with its lease while a puller holds it."""

    id: str
    body: Any
    timestamp_ms: int
    content_type: str = "json"
    attempts: int = 0
    lease_id: str = ""
    lease_until: float = 0.0

    @property
    def size(self) -> int:
        """Bytes of the body as sent."""
        return len(json.dumps(self.body).encode()) if self.body is not None else 0


@dataclass
class Queue:
    """A queue with its producers, consumers and backlog history.

    Attributes:
        samples: (epoch seconds, backlog count) pairs of the past, oldest first;
            the live count is ``len(messages)``.
    """

    name: str
    id: str
    created_on: float
    producers: list[dict[str, Any]] = field(default_factory=list)
    consumers: list[dict[str, Any]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    samples: list[tuple[float, float]] = field(default_factory=list)

    def add(self, body: Any, timestamp: float, content_type: str = "json") -> Message:
        """Append one message sent at ``timestamp`` (epoch seconds)."""
        message = Message(secrets.token_hex(16), body, int(timestamp * 1000))
        message.content_type = content_type
        self.messages.append(message)
        return message

    def set_history(
        self, now: float, backlog_at: Callable[[float], float], rng: random.Random
    ) -> None:
        """Fill the past 24 h of backlog samples from a function of age (seconds)."""
        count = int(HISTORY_S // SAMPLE_EVERY_S)
        self.samples = [
            (now - age, max(0.0, round(backlog_at(age) + rng.uniform(-1, 1), 1)))
            for age in (SAMPLE_EVERY_S * i for i in range(count, 0, -1))
        ]

    def attach(self, script: str, dead_letter_queue: str, max_retries: int) -> None:
        """Make a Worker the queue's only consumer (a queue accepts one)."""
        self.consumers = [
            {
                "consumer_id": _id(f"consumer:{self.name}:{script}"),
                "type": "worker",
                "script_name": script,
                "queue_name": self.name,
                "dead_letter_queue": dead_letter_queue,
                "created_on": self.created_on,
                "settings": {
                    "batch_size": 1,
                    "max_retries": max_retries,
                    "max_wait_time_ms": 60_000,
                },
            }
        ]


@dataclass
class Board:
    """Every queue of the account, by name."""

    queues: dict[str, Queue] = field(default_factory=dict)

    def by_id(self, queue_id: str) -> Queue | None:
        """Return the queue with that id, or None."""
        return next((q for q in self.queues.values() if q.id == queue_id), None)


def board(world: World) -> Board:
    """Return the running scenario's board, building the healthy one on first use."""
    found = world.scenario.switches.get(BOARD_SWITCH)
    if isinstance(found, Board):
        return found
    built = _healthy_board(world.environment.queues, world.started_at)
    world.scenario.switches[BOARD_SWITCH] = built
    return built


def analysis_body(manuscript_key: str, genre: str, report_id: str) -> dict[str, Any]:
    """An analysis message as the upload handler sends it (PLATFORM.md section 7)."""
    return {
        "manuscriptKey": manuscript_key,
        "genre": genre,
        "styleGuide": "chicago",
        "reportId": report_id,
    }


def asset_body(manuscript_key: str, genre: str, report_id: str) -> dict[str, Any]:
    """An asset-generation message as consumer A enqueues it."""
    return {
        "manuscriptKey": manuscript_key,
        "reportId": report_id,
        "genre": genre,
        "authorData": {},
        "seriesData": {},
    }


def synthetic_bodies(
    rng: random.Random, count: int, make: Callable[[str, str, str], dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    """Bodies for a backlog of uploads that are not among the seeded rows."""
    for _ in range(count):
        user, manuscript = _uuid(rng), _uuid(rng)
        key = f"{user}/{manuscript}/2026-01-01T00:00:00.000Z_upload.docx"
        yield make(key, rng.choice(("general", "fantasy", "romance")), _uuid(rng)[:8])


def _healthy_board(names: Mapping[str, str], now: float) -> Board:
    rng = random.Random("queues:healthy")
    analysis = names.get("ANALYSIS_QUEUE", "manuscript-analysis-queue")
    assets = names.get("ASSET_QUEUE", "asset-generation-queue")
    created = now - 40 * 86_400
    result = Board()
    for name in (analysis, assets, "manuscript-analysis-dlq", "asset-generation-dlq"):
        queue = Queue(name, _id(f"queue:{name}"), created)
        queue.set_history(now, lambda age: 0.0, rng)
        result.queues[name] = queue
    for name in (analysis, assets):
        result.queues[name].producers = [{"type": "worker", "script": MAIN_WORKER}]
        result.queues[name].set_history(now, lambda age: 1.0, rng)
    result.queues[analysis].attach(MAIN_WORKER, "manuscript-analysis-dlq", 3)
    result.queues[assets].attach(MAIN_WORKER, "asset-generation-dlq", 2)
    return result


def _id(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
