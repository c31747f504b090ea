"""Checking the filters of a search of the archive before anything is read.

Every wrong filter is named in one error, with the value given and the form
expected. For a person typing (``runbook records``), a name the archive and the
project have never heard of (a runbook, an environment, a cause) is refused too,
with the nearest known names, since a typo would otherwise look like an archive
without such records.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from ._errors import ConfigError, ParameterError
from ._finding import Status
from ._index import (
    IndexQuery,
    absent_values,
    known_values,
    normal_time,
    split_words,
)
from ._params import MAX_TEXT_LENGTH, check_incident_id, is_one_line

RUN_STATUSES = ("succeeded", "failed", "aborted")
STATUSES = (*RUN_STATUSES, *(status.value for status in Status))
# How the command line spells the filters that differ from RecordQuery's names.
_OPTION_NAMES = {"environment": "--env", "incident_id": "--incident"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_CAUSE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
WORDS_FORM = (
    f"one or more words separated by spaces, at most {MAX_TEXT_LENGTH} characters "
    "on one line without control characters (any other character is searched as "
    "written)"
)
_TIME_FORM = "an ISO date like 2026-12-04, or a time like 2026-12-04T17:00Z"
_SHOWN = 3

Moment = str | datetime.date | None


@dataclass(frozen=True)
class RecordQuery:
    """Which records to find; a filter left None keeps everything.

    The one list of the archive's filters: ``list_records`` and ``runbook
    records`` take them as this, and ``build_query`` checks them.

    Attributes:
        runbook: only this runbook (``api-down``) or notebook path.
        environment: only this environment.
        status: only runs that ``succeeded``, ``failed`` or were ``aborted``,
            or verdicts with this status (``ok``, ``warn``, ``fail``,
            ``unknown``, ``manual``).
        cause: only verdicts naming this cause.
        incident_id: only runs given this incident id.
        since: only records started on or after this date, or this time (UTC
            if naive).
        until: only records started on or before this date, or before this time.
        words: only records whose findings hold all these words (separated by
            spaces, each searched as text).
    """

    runbook: str | None = None
    environment: str | None = None
    status: str | None = None
    cause: str | None = None
    incident_id: str | None = None
    since: Moment = None
    until: Moment = None
    words: str | None = None

    def is_empty(self) -> bool:
        """True when no filter is set: every record matches."""
        return self == RecordQuery()


OPTION_LABELS: Mapping[str, str] = {
    f.name: _OPTION_NAMES.get(f.name, f"--{f.name}") for f in fields(RecordQuery)
}
"""How ``runbook records`` spells each filter of a ``RecordQuery``."""


def build_query(
    root: Path,
    query: RecordQuery,
    *,
    labels: Mapping[str, str] | None = None,
    check_names: bool = False,
) -> IndexQuery:
    """Check a query's filters and return them as the index compares them.

    Args:
        root: the archive, whose index supplies the names it knows.
        query: the filters as given.
        labels: how to name each filter in messages (default: the keyword).
        check_names: also refuse a runbook, environment or cause that neither
            the archive nor the project knows, naming the nearest known ones
            (for people typing; a program asking for an absent name gets none).

    Raises:
        ParameterError: naming every wrong filter, its value and the form expected.
    """
    label = {**{name: name for name in OPTION_LABELS}, **(labels or {})}
    problems: list[str] = []
    query = dataclasses.replace(query, runbook=_runbook_key(query.runbook))

    def problem(name: str, value: object, expected: str) -> None:
        problems.append(f"{label[name]}: got {value!r}, expected {expected}")

    start = _moment(query.since, "since", problem)
    end = _moment(query.until, "until", problem)
    if start and end and start >= end:
        problem(
            "until", query.until, f"a time after {label['since']} ({query.since!r})"
        )
    _check_names(root, query, problem, check_names)
    status, incident_id, words = query.status, query.incident_id, query.words
    if status is not None and status not in STATUSES:
        problem("status", status, f"one of {', '.join(STATUSES)}")
    wrong_incident = check_incident_id(incident_id)
    if incident_id is not None and wrong_incident:
        problem("incident_id", incident_id, wrong_incident)
    found = split_words(words or "")
    if words is not None and not (
        found and len(words) <= MAX_TEXT_LENGTH and is_one_line(words)
    ):
        problem("words", words, WORDS_FORM)
    if problems:
        raise ParameterError(problems)
    return IndexQuery(
        query.runbook,
        query.environment,
        status,
        query.cause,
        incident_id,
        start,
        end,
        found,
    )


def _runbook_key(value: str | None) -> str | None:
    """A path to an existing notebook as records name it; anything else as given."""
    if value is None or not _is_notebook_file(value):
        return value
    from ._notebook import notebook_key

    return notebook_key(value)


def _is_notebook_file(value: str) -> bool:
    try:
        return value.endswith(".ipynb") and Path(value).is_file()
    except (OSError, ValueError):
        return False


def _moment(
    value: Moment, name: str, problem: Callable[[str, object, str], None]
) -> str | None:
    """The bound as the index compares it; a whole day counts for ``until``."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return normal_time(value.isoformat())
    if isinstance(value, datetime.date):
        value = value.isoformat()
    if not isinstance(value, str) or not value.strip():
        problem(name, value, _TIME_FORM)
        return None
    text = value.strip()
    if _DATE.fullmatch(text):
        try:
            day = datetime.date.fromisoformat(text)
        except ValueError:
            problem(name, value, _TIME_FORM)
            return None
        day += datetime.timedelta(days=1 if name == "until" else 0)
        return normal_time(f"{day.isoformat()}T00:00:00Z")
    moment = normal_time(text)
    if moment == text and not _is_time(text):
        problem(name, value, _TIME_FORM)
        return None
    return moment


def _is_time(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in text


def _check_names(
    root: Path,
    query: RecordQuery,
    problem: Callable[[str, object, str], None],
    check_names: bool,
) -> None:
    checks = (
        (
            "runbook",
            query.runbook,
            _NAME,
            "a runbook name such as api-down, or the path of its notebook",
        ),
        (
            "environment",
            query.environment,
            _NAME,
            "an environment name such as sandbox",
        ),
        ("cause", query.cause, _CAUSE, "a cause such as bad-deployment"),
    )
    wanted: dict[str, str] = {}
    for name, value, form, expected in checks:
        path = name == "runbook" and value is not None and _is_notebook_file(value)
        if value is not None and not path and not form.fullmatch(value):
            problem(name, value, expected)
        elif value is not None:
            wanted[name] = value
    absent = absent_values(root, wanted) if check_names else set()
    for name, value, _, expected in checks:
        known = _known(root, name) if name in absent else set()
        if value is not None and known and value not in known:
            problem(name, value, f"{expected}{_nearest(value, known)}")


def _known(root: Path, name: str) -> set[str]:
    """The names the index holds, with the project's own."""
    found = known_values(root, name)
    if name == "runbook":
        found |= known_values(root, "notebook")
    return found | set(_vocabulary(name))


def _vocabulary(name: str) -> Iterable[str]:
    try:
        if name == "runbook":
            from ._notebook import list_notebooks, runbook_name

            return [runbook_name(path) for path in list_notebooks()]
        if name == "environment":
            from ._config import list_environments

            return list_environments()
    except (ConfigError, OSError):
        return []
    from ._verdict import CAUSES

    return [cause for causes in CAUSES.values() for cause in causes]


def _nearest(value: str, known: set[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=_SHOWN)
    if close:
        return f" (did you mean {' or '.join(close)}?)"
    return (
        f" (known: {', '.join(sorted(known)[:8])}{', ...' if len(known) > 8 else ''})"
    )
