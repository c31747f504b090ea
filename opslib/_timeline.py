"""The timeline of an incident, read from its records.

Each record is an executed notebook whose cells carry papermill's start and end
times. A record's events are: the run began (its first cell), each check that
found trouble (when its cell ended), the verdict, each gate passed (the action
result's own time) and the check after it. The report sorts the events of all
its records into one timeline and picks the template's milestones from it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._finding import FINDING_MIME
from ._notebook import ACTION_MIME, VERDICT_MIME, _plain_json
from ._records import archive_dir
from ._time import parse_timestamp

QUIET_CAUSES = frozenset({"healthy", "inconclusive"})


@dataclass(frozen=True)
class Event:
    """One moment of the incident.

    Attributes:
        at: when (UTC).
        record: the record it comes from.
        kind: run-started, finding, verdict, action, after-check, run-finished.
        text: one line for a person.
        status: the finding's, verdict's or gate's outcome.
    """

    at: datetime.datetime
    record: str
    kind: str
    text: str
    status: str = ""

    def to_dict(self) -> dict[str, str]:
        """The JSON form (time in ISO 8601)."""
        return {
            "at": self.at.isoformat(),
            "record": self.record,
            "kind": self.kind,
            "text": self.text,
            "status": self.status,
        }


def record_events(records_dir: str | Path, sidecar: Mapping[str, Any]) -> list[Event]:
    """The events of one record, in time order.

    Cell times come from the executed notebook; when it cannot be read, the
    sidecar's start and end times stand in for the run.
    """
    record = str(sidecar.get("id"))
    cells = _cells(archive_dir(records_dir) / str(sidecar.get("record_path") or ""))
    runbook = shown(sidecar.get("runbook") or sidecar.get("notebook"), "a runbook")
    status = shown(sidecar.get("status"), "with no status recorded")
    events = [
        Event(
            _time(sidecar.get("started_at")),
            record,
            "run-started",
            f"{runbook} started by {shown(sidecar.get('operator'), 'nobody named')} "
            f"({shown(sidecar.get('environment'), 'environment not recorded')})",
        )
    ]
    for cell in cells:
        events += list(_cell_events(cell, record))
    events.append(
        Event(
            _time(sidecar.get("finished_at")),
            record,
            "run-finished",
            f"{runbook} run {status}",
            shown(sidecar.get("status"), ""),
        )
    )
    return sorted(events, key=lambda e: e.at)


def milestones(events: Sequence[Event]) -> dict[str, Event | None]:
    """The template's milestones, each the first event that marks it.

    detected: the first check that found trouble; investigation: the first run;
    root-cause: the first verdict naming a cause; fix: the first applied
    action; restored: the first passing check after the fix, else a later
    healthy verdict.
    """
    ordered = sorted(events, key=lambda e: e.at)
    fix = _first(ordered, lambda e: e.kind == "action" and e.status == "applied")
    after = [e for e in ordered if fix is None or e.at >= fix.at]
    restored = _first(
        after,
        lambda e: (
            (e.kind == "after-check" and e.status == "ok")
            or (e.kind == "verdict" and e.status == "ok" and fix is not None)
        ),
    )
    return {
        "detected": _first(ordered, lambda e: e.kind == "finding"),
        "investigation": _first(ordered, lambda e: e.kind == "run-started"),
        "root-cause": _first(
            ordered, lambda e: e.kind == "verdict" and e.status == "fail"
        ),
        "fix": fix,
        "restored": restored,
    }


def _first(events: Sequence[Event], test: Any) -> Event | None:
    return next((e for e in events if test(e)), None)


def _cells(path: Path) -> list[Mapping[str, Any]]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def _cell_events(cell: Mapping[str, Any], record: str) -> list[Event]:
    times = (cell.get("metadata") or {}).get("papermill") or {}
    if not times.get("end_time"):
        return []
    ended = _time(times["end_time"])
    events = []
    for output in cell.get("outputs", []):
        data = output.get("data") or {}
        for mime, build in _BUILDERS.items():
            if mime in data:
                events += build(_plain_json(data[mime]), ended, record)
    return events


def _finding_events(value: Any, at: datetime.datetime, record: str) -> list[Event]:
    if not isinstance(value, Mapping) or value.get("status") in ("ok", "manual"):
        return []
    text = f"{shown(value.get('name'))}: {shown(value.get('summary'))}"
    return [Event(at, record, "finding", text, shown(value.get("status"), ""))]


def _verdict_events(value: Any, at: datetime.datetime, record: str) -> list[Event]:
    if not isinstance(value, Mapping):
        return []
    text = (
        f"verdict {shown(value.get('runbook'))}: {shown(value.get('cause'))} — "
        f"{shown(value.get('summary'))}"
    )
    return [Event(at, record, "verdict", text, shown(value.get("status"), ""))]


def _action_events(value: Any, at: datetime.datetime, record: str) -> list[Event]:
    if not isinstance(value, Mapping) or value.get("kind") != "result":
        return []
    when = _time(value.get("at")) if value.get("at") else at
    action = shown(value.get("action"))
    text = (
        f"gate {action}: {shown(value.get('outcome'))} — {shown(value.get('detail'))}"
        f" (by {shown(value.get('operator'), 'nobody')})"
    )
    events = [Event(when, record, "action", text, shown(value.get("outcome"), ""))]
    after = value.get("after")
    if isinstance(after, Mapping):
        text = (
            f"after {action}: {shown(after.get('name'))}: {shown(after.get('summary'))}"
        )
        events.append(
            Event(at, record, "after-check", text, shown(after.get("status"), ""))
        )
    return events


_BUILDERS = {
    FINDING_MIME: _finding_events,
    VERDICT_MIME: _verdict_events,
    ACTION_MIME: _action_events,
}


def shown(value: object, missing: str = "-") -> str:
    """A record's value as text; ``missing`` for one it lacks, never ``None``."""
    return missing if value is None or value == "" else str(value)


def _time(value: object) -> datetime.datetime:
    """An ISO 8601 time as aware UTC; the epoch when missing or unreadable."""
    try:
        return parse_timestamp(str(value)).astimezone(datetime.UTC)
    except ValueError:
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
