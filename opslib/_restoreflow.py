"""The restore procedure's steps as notebook calls, and its verdict.

A backup is fetched from the backups bucket into a scratch folder, restored into
a scratch SQLite file there (never into D1: a restore into an environment is a
separate gated action), and checked. Each check takes the finding of the restore
step, so a notebook passes one value along; when nothing was restored the checks
say so as unknown findings. The last step removes the scratch folder unless the
user asked to keep the copy; a restore that fails removes it at once, and a run
that stops half-way leaves it to the runner (see :mod:`opslib._scratch`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._backups import backup_bucket
from ._config import Environment
from ._finding import Finding, Status, check, unknown
from ._kernel import HEADLESS_VARIABLE
from ._r2 import R2Client
from ._restore import GZIP_MAGIC, DumpRejected, RestoreReport, restore_dump
from ._scratch import discard_scratch, make_scratch
from ._restorecheck import (
    check_backup_log_copy,
    check_data_loss_window,
    check_integrity,
    check_restore_counts,
    check_schema_objects,
    logged_stats,
)
from ._verdict import Verdict

_SUMMARY = {
    "backup-missing": "No backup in the bucket fits the request.",
    "backup-unreadable": "The backup could not be read back: it is truncated or damaged.",
    "backup-unsafe": (
        "The backup holds a statement the platform's export never writes; the "
        "restore stopped before running it and removed the scratch copy."
    ),
    "backup-empty": (
        "The backup holds no tables or no rows: it is not a backup of the "
        "platform's database."
    ),
    "counts-mismatch": (
        "The restored copy's row counts differ from what the backup logged."
    ),
    "integrity-problems": (
        "The restored copy has orphans, NULL keys or missing indexes and views."
    ),
    "healthy": (
        "The backup restores completely: counts match the log, no orphans, "
        "indexes and views in place."
    ),
}
_UNLOGGED_HEALTHY = (
    "The backup restores completely: its rows match its own INSERTs, no orphans, "
    "indexes and views in place; the backup log has no counts for it, so nothing "
    "was held against the log."
)
_NEXT = {
    "backup-missing": (
        "Read the backups runbook's verdict (failed or stale backups); take a "
        "manual backup now with its gated step."
    ),
    "backup-unreadable": (
        "Try the next older backup, and find why this one is damaged (the worker's "
        "log line and the object's size against backup_logs)."
    ),
    "backup-unsafe": (
        "Do not load this object anywhere. Compare it with the worker's log row "
        "(size, time) and find who could write to the backups bucket; restore the "
        "newest backup that passes instead."
    ),
    "backup-empty": (
        "Compare the object with its backup_logs row (size, stats); an object the "
        "log does not know was not written by the worker. Restore the newest "
        "backup that passes instead."
    ),
    "counts-mismatch": (
        "Compare the tables named in step 'restore-counts' with the backup_logs "
        "stats; a backup that lost rows cannot be trusted for a restore."
    ),
    "integrity-problems": (
        "Look at the rows named in the evidence; orphans in a backup mean the live "
        "database has them too (D1 enforces foreign keys only when asked)."
    ),
    "healthy": "Record the result in the backup test log; nothing to repair.",
}


def is_interactive() -> bool:
    """True inside a kernel that a person watches (not under ``runbook run``)."""
    return "ipykernel" in sys.modules and not os.environ.get(HEADLESS_VARIABLE)


@check("restore")
def restore_backup(
    environment: Environment,
    *,
    key: str,
    folder: str | Path | None = None,
    keep: bool = False,
    progress: bool | None = None,
) -> Finding:
    """Fetch a backup from the bucket and restore it into a scratch SQLite file.

    Args:
        environment: whose backups bucket to read.
        key: the backup's object key ("" when none was found: a failing finding).
        folder: where the download and the copy go; default a new scratch
            folder, removed when the run is done (see :mod:`opslib._scratch`).
        keep: keep the copy (and, when it cannot be restored, the download)
            after the run; the finding says where it is.
        progress: show a progress bar; default only when a person watches.
    """
    if not key:
        return Finding(
            "restore", Status.FAIL, "no backup to restore", facts={"missing": True}
        )
    scratch = _Scratch.open(folder, keep)
    download = scratch.add(key)
    size = 0
    try:
        client = R2Client(environment)
        try:
            size = client.download(backup_bucket(environment), key, download)
        finally:
            client.close()
        _check_gzip(download, size)
        shown = is_interactive() if progress is None else progress
        target = scratch.add("restored.sqlite")
        report = restore_dump(download, target, progress=shown)
    except ValueError as error:
        return _not_restored(key, size, error, scratch.finish(keep_files=[download]))
    except BaseException:
        scratch.finish()
        raise
    if not keep:
        download.unlink(missing_ok=True)
    return Finding(
        "restore",
        Status.OK,
        f"{key}: {report.summary()}; copy at {report.target}"
        + (f" (kept after the run, as asked: {scratch.where})" if keep else ""),
        [
            {
                "key": key,
                "bytes": size,
                "rows": report.total_inserts,
                "dump_time": report.generated_at,
                "skipped": dict(report.skipped),
            }
        ],
        {"report": report, "key": key, "scratch": scratch},
    )


def _check_gzip(download: Path, size: int) -> None:
    """Refuse an object that is not the worker's gzip stream (0 bytes, plain text)."""
    with download.open("rb") as stream:
        start = stream.read(2)
    if size == 0 or start != GZIP_MAGIC:
        what = "0 bytes" if size == 0 else f"starts {start!r}"
        raise ValueError(
            f"the object is not gzip ({what}); the backup worker stores every "
            "dump gzip-compressed"
        )


def _not_restored(key: str, size: int, error: ValueError, note: str) -> Finding:
    """The failing restore finding: a refused statement, or a damaged dump."""
    if isinstance(error, DumpRejected):
        where = {"line": error.line, "statement": error.statement}
        return Finding(
            "restore",
            Status.FAIL,
            f"{key} ({size:,} bytes) refused: {error}{note}",
            [{"key": key, **where}],
            {"unsafe": True, "key": key, **where},
        )
    return Finding(
        "restore",
        Status.FAIL,
        f"{key} ({size:,} bytes) cannot be restored: {error}{note}",
        facts={"unreadable": True, "key": key},
    )


@dataclass
class _Scratch:
    """Where a restore puts its files, and whether they outlive the run.

    Attributes:
        folder: the folder the files go in.
        created: the folder was made for this restore (removed whole), not
            given by the caller (only the files put in it are removed).
        keep: the user asked to keep the files.
        files: the files put in it.
    """

    folder: Path
    created: bool
    keep: bool
    files: list[Path] = field(default_factory=list)

    @classmethod
    def open(cls, folder: str | Path | None, keep: bool) -> _Scratch:
        if folder is None:
            return cls(make_scratch("runbook-restore-", keep=keep), True, keep)
        given = Path(folder)
        given.mkdir(parents=True, exist_ok=True)
        return cls(given, False, keep)

    def add(self, name: str) -> Path:
        self.files.append(self.folder / name)
        return self.files[-1]

    @property
    def where(self) -> str:
        """The phrase that says where the kept files are."""
        return f"folder {self.folder}; delete it when done"

    def finish(self, keep_files: list[Path] | None = None) -> str:
        """Remove the files unless kept; return a note for the finding."""
        if self.keep:
            kept = [str(f) for f in keep_files or self.files if f.exists()]
            return f" (kept, as asked: {', '.join(kept)})" if kept else ""
        if self.created:
            discard_scratch(self.folder)
        else:
            for path in self.files:
                path.unlink(missing_ok=True)
        return ""


def clean_up_restore(restored: Finding) -> Finding:
    """Remove the restore's scratch files now, unless the user asked to keep them.

    The procedure's last step: the copy is needed until the checks and the
    gated load are done. A kept copy is named with its path.
    """
    scratch = restored.facts.get("scratch")
    if not isinstance(scratch, _Scratch):
        return Finding("scratch", Status.OK, "no scratch copy is left on this machine")
    if scratch.keep:
        copy = scratch.folder / "restored.sqlite"
        return Finding(
            "scratch",
            Status.OK,
            f"the restored copy is kept at {copy}, as asked: delete "
            f"{scratch.folder if scratch.created else copy} when done",
            [{"copy": str(copy), "folder": str(scratch.folder), "kept": True}],
            {"copy": str(copy), "kept": True},
        )
    scratch.finish()
    return Finding(
        "scratch",
        Status.OK,
        f"scratch copy removed ({scratch.folder})",
        [{"folder": str(scratch.folder), "kept": False}],
        {"kept": False},
    )


def _report(restored: Finding) -> RestoreReport | None:
    report = restored.facts.get("report")
    return report if isinstance(report, RestoreReport) else None


def check_restored_counts(restored: Finding, *, log: Finding | None = None) -> Finding:
    """Row counts of the copy against the dump's INSERTs and the logged stats."""
    report = _report(restored)
    if report is None:
        return unknown("restore-counts", "nothing was restored")
    key = restored.facts.get("key")
    logged = (
        next(
            (
                row
                for row in (log.facts.get("successes") or [])
                if row["filename"] == key
            ),
            None,
        )
        if log is not None
        else None
    )
    return check_restore_counts(
        report, logged_stats=logged_stats(logged["stats"]) if logged else None
    )


def check_restored_integrity(restored: Finding) -> Finding:
    """Orphans along every foreign key and NULL primary keys in the copy."""
    report = _report(restored)
    if report is None:
        return unknown("integrity", "nothing was restored")
    return check_integrity(report.target)


def check_restored_schema(restored: Finding) -> Finding:
    """The dump's indexes and the project's views in the copy."""
    report = _report(restored)
    if report is None:
        return unknown("schema-objects", "nothing was restored")
    return check_schema_objects(report)


def check_restored_backup_log(restored: Finding) -> Finding:
    """The backup_logs rows inside the copy."""
    report = _report(restored)
    if report is None:
        return unknown("backup-log-copy", "nothing was restored")
    return check_backup_log_copy(report)


def check_loss_window(restored: Finding, *, incident_time: str = "") -> Finding:
    """Hours of changes a restore of this backup would lose (backup -> incident)."""
    report = _report(restored)
    if report is None:
        return unknown("data-loss-window", "nothing was restored")
    return check_data_loss_window(
        report.generated_at, incident_time=incident_time or None
    )


def diagnose_restore(
    findings: Iterable[Finding], *, runbook: str = "restore"
) -> Verdict:
    """Say whether the backup restores into a sound copy.

    Args:
        findings: the findings of the steps.
        runbook: "restore" or "monthly-backup-verification".
    """
    found = {f.name: f for f in findings}
    cause = _cause(found)
    evidence = [str(f) for f in found.values() if not f.is_ok]
    if cause == "healthy":
        evidence = [str(f) for f in found.values()]
    status = {"healthy": Status.OK, "inconclusive": Status.UNKNOWN}.get(
        cause, Status.FAIL
    )
    summary = _SUMMARY.get(
        cause, "The checks could not tell whether the backup is sound."
    )
    counts = found.get("restore-counts")
    if cause == "healthy" and (counts is None or not counts.facts.get("logged")):
        # sound as far as it goes, but not vouched for by the backup log
        summary, status = _UNLOGGED_HEALTHY, Status.WARN
    return Verdict(
        runbook,
        status,
        cause,
        summary,
        evidence,
        _NEXT.get(cause, "Re-run when the bucket and D1 can be read."),
        None,
        tuple(found.values()),
    )


def _cause(found: Mapping[str, Finding]) -> str:
    restored = found.get("restore")
    if restored is None or restored.status is Status.UNKNOWN:
        return "inconclusive"
    if restored.facts.get("missing"):
        return "backup-missing"
    if restored.facts.get("unsafe"):
        return "backup-unsafe"
    if restored.facts.get("unreadable"):
        return "backup-unreadable"
    counts = found.get("restore-counts")
    if counts is not None and counts.status is Status.FAIL:
        return "backup-empty" if counts.facts.get("empty") else "counts-mismatch"
    if any(
        found.get(name) is not None and found[name].status is Status.FAIL
        for name in ("integrity", "schema-objects")
    ):
        return "integrity-problems"
    if any(f.status is Status.UNKNOWN for f in found.values()):
        return "inconclusive"
    return "healthy"
