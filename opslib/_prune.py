"""Retention: which records of an archive may go, and removing them behind a gate.

A rule names what may go: records started longer ago than an age
(``--older-than 90d``), records beyond the newest N of their notebook
(``--keep 5``), or, with both, only records that both rules let go. A
post-incident report and the records it refers to go together or stay
together: the report goes only when the rule lets every record it refers to
go as well; otherwise the report stays, and so does each record it refers to.
A report is a record too, so a report a later report refers to follows the
same rule. A record whose sidecar cannot be read is left alone, and keeps a
report that refers to it.

:func:`plan_prune` changes nothing and lists what would go; :func:`apply_prune`
removes it only with ``apply`` and the exact confirm phrase, which names the
count and the archive, after checking that the archive still gives the same
list. For each record it removes the index row first, then the notebook, the
report's Markdown, and the sidecar last, so a removal stopped midway leaves a
record that is still found and can be pruned again. A private before-image
goes only when no record that stays mentions its digest. Each applied prune
adds one line to ``prune.jsonl`` in the archive: when, who, and which ids.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._actions import _user_at_host
from ._beforeimage import FOLDER as BEFORE_IMAGES
from ._errors import RunError
from ._index import normal_time, remove_rows, sidecar_paths
from ._records import archive_dir
from ._report import report_references

logger = logging.getLogger(__name__)

PRUNE_LOG = "prune.jsonl"
MAX_AGE = datetime.timedelta(days=36500)
"""The longest ``older_than`` accepted: a hundred years, older than any record."""
AGE_FORM = f"a whole number and d, h or m, from 1m up to {MAX_AGE.days}d (such as 90d)"
_DIGEST = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass(frozen=True)
class Candidate:
    """One record a rule lets go, with the files that make it up."""

    id: str
    runbook: str
    started_at: str
    files: tuple[Path, ...]


@dataclass(frozen=True)
class PrunePlan:
    """What a prune would remove, and what it keeps although the rule says go.

    Attributes:
        archive: the archive folder.
        older_than: records started longer ago than this may go (None: any age).
        keep: the newest ``keep`` records of each notebook stay (None: none).
        now: the moment the age is measured from.
        remove: the records that would go, oldest first.
        referenced: records the rule lets go that stay with a report: a report
            with a record it refers to that stays, or a record a report that
            stays refers to.
        left_alone: sidecars that could not be read (kept).
        before_images: private before-images no remaining record needs.
    """

    archive: Path
    older_than: datetime.timedelta | None
    keep: int | None
    now: datetime.datetime
    remove: tuple[Candidate, ...] = ()
    referenced: tuple[Candidate, ...] = ()
    left_alone: tuple[str, ...] = ()
    before_images: tuple[Path, ...] = ()

    @property
    def rule(self) -> str:
        """The rule in words."""
        parts = []
        if self.older_than is not None:
            parts.append(f"started more than {age_text(self.older_than)} ago")
        if self.keep is not None:
            parts.append(f"beyond the {self.keep} newest of each notebook")
        return " and ".join(parts)

    @property
    def confirm_phrase(self) -> str:
        """The phrase that authorises this plan: the count and the archive."""
        return f"prune {len(self.remove)} records from {self.archive}"

    def lines(self) -> list[str]:
        """The plan in plain lines for the terminal."""
        lines = [f"archive: {self.archive}", f"rule:    {self.rule}"]
        lines.append(f"would remove {len(self.remove)} records:")
        lines += [f"  {_describe(c)}" for c in self.remove]
        if self.referenced:
            lines.append(
                "kept, a report and the records it refers to stay together: "
                f"{len(self.referenced)}"
            )
            lines += [f"  {_describe(c)}" for c in self.referenced]
        lines += [f"left alone, unreadable sidecar: {p}" for p in self.left_alone]
        lines.append(
            f"before-images no remaining record needs: {len(self.before_images)}"
        )
        return lines


@dataclass(frozen=True)
class PruneResult:
    """What happened at the gate: dry-run, not-needed, refused or applied."""

    plan: PrunePlan
    outcome: str
    detail: str
    removed: tuple[str, ...] = field(default=())


def plan_prune(
    records_dir: str | Path,
    *,
    older_than: datetime.timedelta | None = None,
    keep: int | None = None,
    now: datetime.datetime | None = None,
) -> PrunePlan:
    """List what a retention rule would remove; nothing changes.

    Args:
        records_dir: the archive folder.
        older_than: records started longer ago than this may go.
        keep: the newest ``keep`` records of each notebook stay.
        now: the moment ages are measured from (default: now).

    Raises:
        RunError: when neither rule is given, ``older_than`` is not above zero
            or beyond ``MAX_AGE``, ``keep`` is below 1, or the archive folder
            is not there.
    """
    if older_than is None and keep is None:
        raise RunError("give --older-than AGE (such as 90d), --keep N, or both")
    if older_than is not None and not (datetime.timedelta(0) < older_than <= MAX_AGE):
        raise RunError(f"--older-than: got {age_text(older_than)}, expected {AGE_FORM}")
    if keep is not None and keep < 1:
        raise RunError(f"--keep: got {keep!r}, expected a whole number of at least 1")
    root = archive_dir(records_dir)
    if not root.is_dir():
        raise RunError(f"--records: got {str(root)!r}, expected an archive folder")
    now = now or datetime.datetime.now(datetime.UTC)
    entries, left_alone = _read_archive(root)
    cutoff = normal_time((now - older_than).isoformat()) if older_than else None
    going = _going(entries, cutoff, keep)
    kept = _kept_together(going, entries, left_alone, report_references(root))
    going.sort(key=_age_order)
    remove = [e for e in going if e.candidate.id not in kept]
    return PrunePlan(
        archive=root,
        older_than=older_than,
        keep=keep,
        now=now,
        remove=tuple(e.candidate for e in remove),
        referenced=tuple(e.candidate for e in going if e.candidate.id in kept),
        left_alone=tuple(left_alone),
        before_images=_unneeded_images(root, remove, entries, left_alone),
    )


def apply_prune(
    plan: PrunePlan,
    *,
    apply: bool = False,
    confirm: str = "",
    operator: str | None = None,
) -> PruneResult:
    """Remove what the plan lists, only with ``apply`` and the exact confirm phrase.

    The plan is made again with the same rule and moment; if the archive no
    longer gives the same list, nothing is removed.
    """
    if not plan.remove:
        return PruneResult(plan, "not-needed", "no record to remove")
    if not apply:
        return PruneResult(
            plan,
            "dry-run",
            f"nothing removed; to apply, confirm with {plan.confirm_phrase!r}",
        )
    if confirm != plan.confirm_phrase:
        return PruneResult(
            plan,
            "refused",
            f"confirm phrase {confirm!r} does not match {plan.confirm_phrase!r}; "
            "nothing removed",
        )
    fresh = plan_prune(
        plan.archive, older_than=plan.older_than, keep=plan.keep, now=plan.now
    )
    if (fresh.remove, fresh.before_images) != (plan.remove, plan.before_images):
        return PruneResult(
            plan,
            "refused",
            "the archive changed since the plan was made (now "
            f"{len(fresh.remove)} records would go); nothing removed; "
            "run the dry run again",
        )
    who = operator or os.environ.get("RUNBOOK_OPERATOR") or _user_at_host()
    return _remove(plan, who)


@dataclass(frozen=True)
class _Entry:
    candidate: Candidate
    sidecar: Path
    text: str


def _read_archive(root: Path) -> tuple[list[_Entry], list[str]]:
    entries: list[_Entry] = []
    left_alone: list[str] = []
    for path in sorted(sidecar_paths(root)):
        entry = _entry(root, path)
        if entry is None:
            left_alone.append(str(path.relative_to(root)))
            logger.warning("prune leaves alone an unreadable sidecar path=%s", path)
        else:
            entries.append(entry)
    return entries, left_alone


def _entry(root: Path, path: Path) -> _Entry | None:
    try:
        text = path.read_text(encoding="utf-8")
        sidecar = json.loads(text)
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("id") != path.stem:
        return None
    started = normal_time(sidecar.get("started_at"))
    if not started.endswith("Z"):
        return None
    runbook = str(sidecar.get("runbook") or sidecar.get("notebook") or "")
    files = (*_record_files(root, path, sidecar), path)
    return _Entry(Candidate(path.stem, runbook, started, files), path, text)


def _record_files(
    root: Path, sidecar_path: Path, sidecar: Mapping[str, Any]
) -> list[Path]:
    """The record's notebook and report beside its sidecar, those that exist."""
    folder = sidecar_path.parent
    names = [f"{sidecar_path.stem}.ipynb", f"{sidecar_path.stem}.report.md"]
    recorded = sidecar.get("record_path")
    if isinstance(recorded, str) and (root / recorded).parent == folder:
        names[0] = Path(recorded).name
    return [folder / name for name in names if (folder / name).is_file()]


def _going(
    entries: Sequence[_Entry], cutoff: str | None, keep: int | None
) -> list[_Entry]:
    """The entries the rule lets go: old enough and beyond the newest ``keep``."""
    by_runbook: dict[str, list[_Entry]] = {}
    for entry in entries:
        by_runbook.setdefault(entry.candidate.runbook, []).append(entry)
    going = []
    for group in by_runbook.values():
        newest_first = sorted(group, key=_age_order, reverse=True)
        for rank, entry in enumerate(newest_first):
            old = cutoff is None or entry.candidate.started_at < cutoff
            beyond = keep is None or rank >= keep
            if old and beyond:
                going.append(entry)
    return going


def _kept_together(
    going: Sequence[_Entry],
    entries: Sequence[_Entry],
    left_alone: Sequence[str],
    references: Mapping[str, set[str]],
) -> set[str]:
    """The records the rule lets go that stay because of a report.

    A report stays when a record it refers to stays; a record stays when a
    report referring to it stays. Repeated until nothing changes, for reports
    that refer to reports. A record no longer in the archive keeps nothing.
    """
    due = {e.candidate.id for e in going}
    present = {e.candidate.id for e in entries} | {Path(p).stem for p in left_alone}
    kept: set[str] = set()
    changed = True
    while changed:
        changed = False
        for report, cited in references.items():
            cited_here = cited & present
            if report in due and report not in kept:
                if any(r not in due or r in kept for r in cited_here):
                    kept.add(report)
                    changed = True
            elif (cited_here & due) - kept:
                kept |= cited_here & due
                changed = True
    return kept


def _age_order(entry: _Entry) -> tuple[str, str]:
    return entry.candidate.started_at, entry.candidate.id


def _unneeded_images(
    root: Path,
    remove: Iterable[_Entry],
    entries: Iterable[_Entry],
    left_alone: Iterable[str],
) -> tuple[Path, ...]:
    """Before-images the removed records name and no record that stays names."""
    removed = {e.candidate.id for e in remove}
    named = {d for e in remove for d in _DIGEST.findall(e.text)}
    staying = [e.text for e in entries if e.candidate.id not in removed]
    staying += [_raw_text(root / name) for name in left_alone]
    still = {d for text in staying for d in _DIGEST.findall(text)}
    folder = root / BEFORE_IMAGES
    paths = [folder / f"{d}.json" for d in sorted(named - still)]
    return tuple(p for p in paths if p.is_file())


def _raw_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _remove(plan: PrunePlan, operator: str) -> PruneResult:
    ids = [c.id for c in plan.remove]
    remove_rows(plan.archive, ids)
    for candidate in plan.remove:
        for path in candidate.files:
            path.unlink(missing_ok=True)
    # a rebuild of the index meanwhile may have put some rows back
    remove_rows(plan.archive, ids)
    for path in plan.before_images:
        path.unlink(missing_ok=True)
    _log(plan, operator, ids)
    logger.info("pruned archive=%s records=%d", plan.archive, len(ids))
    images = len(plan.before_images)
    return PruneResult(
        plan,
        "applied",
        f"removed {len(ids)} records and {images} before-images from {plan.archive}",
        tuple(ids),
    )


def _log(plan: PrunePlan, operator: str, ids: Sequence[str]) -> None:
    line = {
        "at": normal_time(datetime.datetime.now(datetime.UTC).isoformat()),
        "operator": operator,
        "rule": plan.rule,
        "removed": list(ids),
        "before_images": [p.stem for p in plan.before_images],
    }
    descriptor = os.open(
        plan.archive / PRUNE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    try:
        os.write(descriptor, (json.dumps(line) + "\n").encode("utf-8"))
    finally:
        os.close(descriptor)


def age_text(age: datetime.timedelta) -> str:
    """An age in the form ``--older-than`` takes: ``90d``, ``12h``, ``30m``.

    The largest unit that gives a whole number; seconds only when no minute does.
    """
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{age.total_seconds():g}s"


def _describe(candidate: Candidate) -> str:
    return (
        f"{candidate.id}  {candidate.runbook}  {candidate.started_at[:10]}  "
        f"({len(candidate.files)} files)"
    )
