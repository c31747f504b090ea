"""The team's own parameters: escalation contacts, maintenance windows, severities.

They live in ``parameters/team/`` as three YAML files, so that checklists and
reports read them instead of carrying them in code::

    escalation.yaml    levels: name, after_min, role, contact, channel, when
    maintenance.yaml   windows: name, day, start, end (UTC), notice hours, tasks
    severity.yaml      levels: name, label, respond_within_min, update_every_min,
                       affected_share, causes (runbook or runbook/cause)

:func:`load_team` checks all three and reports every problem at once, each
naming the file, the key and the form expected.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._errors import ConfigError

TEAM_FOLDER = Path("parameters") / "team"
DAYS = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_CAUSE = re.compile(r"[a-z0-9-]+(/[a-z0-9-]+)?")
_NO_SEVERITY_CAUSES = frozenset({"healthy"})


@dataclass(frozen=True)
class EscalationLevel:
    """One step of the escalation: who is called once an incident lasts long."""

    name: str
    after_min: int
    role: str
    contact: str
    channel: str
    when: str


@dataclass(frozen=True)
class MaintenanceWindow:
    """A weekly window (UTC) in which planned work may disturb the platform."""

    name: str
    day: str
    start: str
    end: str
    notice_status_page_h: int
    notice_email_h: int
    tasks: str

    def contains(self, moment: datetime.datetime) -> bool:
        """True when ``moment`` falls inside this window."""
        moment = moment.astimezone(datetime.UTC)
        clock = f"{moment:%H:%M}"
        return DAYS[moment.weekday()] == self.day and self.start <= clock < self.end

    def overlaps_daily(self, clock: str) -> bool:
        """True when a daily event at ``clock`` (HH:MM UTC) falls inside."""
        return self.start <= clock < self.end

    def describe(self) -> str:
        """One line: name, day and hours."""
        return f"{self.name} ({self.day.title()} {self.start}-{self.end} UTC)"


@dataclass(frozen=True)
class SeverityLevel:
    """One row of the severity matrix."""

    name: str
    label: str
    respond_within_min: int
    update_every_min: int
    affected_share: float
    causes: tuple[str, ...]

    def is_met(self, runbook: str, cause: str, affected_share: float | None) -> bool:
        """True when a verdict's runbook and cause, or the users hit, reach it."""
        named = cause not in _NO_SEVERITY_CAUSES and (
            runbook in self.causes or f"{runbook}/{cause}" in self.causes
        )
        hit = affected_share or 0.0
        return named or (hit > 0 and hit >= self.affected_share)


@dataclass(frozen=True)
class Team:
    """The team's parameters, checked."""

    escalation: tuple[EscalationLevel, ...]
    maintenance: tuple[MaintenanceWindow, ...]
    severity: tuple[SeverityLevel, ...]

    def severity_for(
        self,
        verdicts: Sequence[tuple[str, str]],
        affected_share: float | None = None,
    ) -> SeverityLevel:
        """The first level any verdict (runbook, cause) or the share meets.

        The lowest level when none is met.
        """
        for level in self.severity:
            if any(level.is_met(rb, cause, affected_share) for rb, cause in verdicts):
                return level
            if not verdicts and level.is_met("", "healthy", affected_share):
                return level
        return self.severity[-1]

    def escalation_for(self, duration_min: float) -> EscalationLevel:
        """The last escalation level an incident of this length reached."""
        reached = [lvl for lvl in self.escalation if lvl.after_min <= duration_min]
        return reached[-1] if reached else self.escalation[0]

    def window_at(self, moment: datetime.datetime) -> MaintenanceWindow | None:
        """The maintenance window ``moment`` falls in, if any."""
        return next((w for w in self.maintenance if w.contains(moment)), None)


def load_team(folder: str | Path | None = None) -> Team:
    """Read and check the three team files.

    Args:
        folder: the folder holding them; default ``parameters/team`` at the
            project root.

    Raises:
        ConfigError: listing every problem, each with the file, key and the
            form expected.
    """
    if folder is None:
        from ._notebook import find_project_root

        folder = find_project_root() / TEAM_FOLDER
    folder = Path(folder)
    problems: list[str] = []
    escalation = _read_list(folder / "escalation.yaml", "levels", problems)
    windows = _read_list(folder / "maintenance.yaml", "windows", problems)
    severity = _read_list(folder / "severity.yaml", "levels", problems)
    team = Team(
        tuple(_build(EscalationLevel, ESCALATION_KEYS, escalation, problems)),
        tuple(_build(MaintenanceWindow, WINDOW_KEYS, windows, problems)),
        tuple(_build(SeverityLevel, SEVERITY_KEYS, severity, problems)),
    )
    problems += _order_problems(team)
    if problems:
        raise ConfigError("team parameters are invalid:\n  " + "\n  ".join(problems))
    return team


Rule = Callable[[Any], Any]
"""Turns a YAML value into the field's value, or raises ValueError(expected)."""


def _text(value: Any) -> str:
    if isinstance(value, str) and value.strip() and "\n" not in value:
        return value.strip()
    raise ValueError("one line of text")


def _minutes(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError("a whole number of minutes, 0 or more")


def _hours(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 720:
        return value
    raise ValueError("a whole number of hours from 0 to 720")


def _share(value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and 0 <= value <= 1:
        return float(value)
    raise ValueError("a share of users from 0 to 1, such as 0.1")


def _day(value: Any) -> str:
    if isinstance(value, str) and value.lower() in DAYS:
        return value.lower()
    raise ValueError("a day of the week, such as sunday")


def _clock(value: Any) -> str:
    if isinstance(value, str) and _CLOCK.fullmatch(value):
        return value
    raise ValueError('a time of day in UTC as "HH:MM" (quoted), such as "02:00"')


def _causes(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and all(
        isinstance(item, str) and _CAUSE.fullmatch(item) for item in value
    ):
        return tuple(value)
    raise ValueError("a list of runbook names or runbook/cause pairs")


ESCALATION_KEYS: Mapping[str, Rule] = {
    "name": _text,
    "after_min": _minutes,
    "role": _text,
    "contact": _text,
    "channel": _text,
    "when": _text,
}
WINDOW_KEYS: Mapping[str, Rule] = {
    "name": _text,
    "day": _day,
    "start": _clock,
    "end": _clock,
    "notice_status_page_h": _hours,
    "notice_email_h": _hours,
    "tasks": _text,
}
SEVERITY_KEYS: Mapping[str, Rule] = {
    "name": _text,
    "label": _text,
    "respond_within_min": _minutes,
    "update_every_min": _minutes,
    "affected_share": _share,
    "causes": _causes,
}


def _read_list(path: Path, key: str, problems: list[str]) -> list[tuple[str, Any]]:
    """The entries under ``key``, each labelled ``file: key[i]`` for messages."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        problems.append(f"{path.name}: could not read {str(path)!r} ({error})")
        return []
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        problems.append(f"{path.name}: {key}: expected a non-empty list of mappings")
        return []
    return [(f"{path.name}: {key}[{i}]", entry) for i, entry in enumerate(entries)]


def _build(
    kind: Any,
    rules: Mapping[str, Rule],
    entries: list[tuple[str, Any]],
    problems: list[str],
) -> list[Any]:
    built = []
    for where, entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"{where}: got {entry!r}, expected a mapping")
            continue
        unknown = sorted(set(entry) - set(rules), key=str)
        problems += [
            f"{where}.{k}: unknown key; expected {sorted(rules)}" for k in unknown
        ]
        values = {}
        for key, rule in rules.items():
            try:
                values[key] = rule(entry.get(key))
            except ValueError as error:
                problems.append(
                    f"{where}.{key}: got {entry.get(key)!r}, expected {error}"
                )
        if len(values) == len(rules):
            built.append(kind(**values))
    return built


def _order_problems(team: Team) -> list[str]:
    problems = []
    waits = [level.after_min for level in team.escalation]
    if waits and (waits != sorted(waits) or waits[0] != 0):
        problems.append(
            f"escalation.yaml: levels after_min: got {waits}, expected rising "
            "minutes starting at 0"
        )
    shares = [level.affected_share for level in team.severity]
    if shares != sorted(shares, reverse=True):
        problems.append(
            f"severity.yaml: levels affected_share: got {shares}, expected the most "
            "severe level first (shares falling)"
        )
    problems += [
        f"maintenance.yaml: window {w.name!r}: start {w.start} is not before end {w.end}"
        for w in team.maintenance
        if w.start >= w.end
    ]
    return problems
