"""Findings: what one check saw, in a shape both people and the verdict can read.

A check is a function that looks at one thing and returns a :class:`Finding`. The
:func:`check` decorator times it and turns a :class:`ServiceError` (an outside
system that could not be reached or refused the call) into a finding with status
``unknown`` and the reason, so a check never crashes a runbook. Bugs still raise.
"""

from __future__ import annotations

import enum
import functools
import html
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec

from ._errors import ServiceError

logger = logging.getLogger(__name__)

FINDING_MIME = "application/vnd.opslib.finding+json"
EVIDENCE_ROWS_SHOWN = 10

P = ParamSpec("P")


class Status(str, enum.Enum):
    """How a check or verdict came out."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"
    # A checklist item only a person can do: listed, never counted as a pass.
    MANUAL = "manual"

    def __str__(self) -> str:
        return self.value


_MARKS = {
    Status.OK: "OK",
    Status.WARN: "WARN",
    Status.FAIL: "FAIL",
    Status.UNKNOWN: "??",
    Status.MANUAL: "MANUAL",
}


@dataclass(frozen=True)
class Finding:
    """The result of one check.

    Attributes:
        name: short check name, such as "d1".
        status: ok, warn, fail or unknown.
        summary: one line for a person.
        evidence: a few rows (dicts with the same keys) backing the summary.
        facts: machine-readable facts the verdict reasons on.
        elapsed_s: time the check took.
    """

    name: str
    status: Status
    summary: str
    evidence: Sequence[Mapping[str, Any]] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def is_ok(self) -> bool:
        """True when the status is ok."""
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready copy (evidence trimmed to the rows shown)."""
        return {
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": [dict(row) for row in self.evidence[:EVIDENCE_ROWS_SHOWN]],
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def table(self) -> Any:
        """Return the evidence as a pandas DataFrame (at most ten rows)."""
        import pandas as pd  # type: ignore[import-untyped]

        return pd.DataFrame([dict(row) for row in self.evidence[:EVIDENCE_ROWS_SHOWN]])

    def __str__(self) -> str:
        return f"[{_MARKS[self.status]}] {self.name}: {self.summary}"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        text = str(self)
        if self.evidence:
            text += "\n" + self.table().to_string(index=False)
        head = f"<p><b>[{_MARKS[self.status]}] {html.escape(self.name)}</b>: "
        head += f"{html.escape(self.summary)} <i>({self.elapsed_s:.2f} s)</i></p>"
        table = self.table().to_html(index=False, escape=True) if self.evidence else ""
        return {
            "text/plain": text,
            "text/html": head + table,
            FINDING_MIME: self.to_dict(),
        }


def unknown(name: str, reason: str, **facts: Any) -> Finding:
    """Build the finding for a check that could not look."""
    return Finding(name, Status.UNKNOWN, reason, facts={"reason": reason, **facts})


def check(name: str) -> Callable[[Callable[P, Finding]], Callable[P, Finding]]:
    """Decorate a check: time it and turn outside failures into ``unknown``.

    Args:
        name: the check's name, used when it has to build the finding itself.
    """

    def decorate(function: Callable[P, Finding]) -> Callable[P, Finding]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Finding:
            started = time.monotonic()
            try:
                finding = function(*args, **kwargs)
            except ServiceError as error:
                logger.warning("check could not look check=%s error=%s", name, error)
                finding = unknown(
                    name,
                    str(error),
                    error=type(error).__name__,
                    status_code=error.status_code,
                )
            return replace(finding, elapsed_s=time.monotonic() - started)

        return wrapper

    return decorate
