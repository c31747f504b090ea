"""The archive's index: one SQLite file beside the records, to list and search them.

The sidecars are the truth; ``records/index.sqlite`` only makes them quick to
find. Every run adds its row in a short transaction of its own; the file is in
WAL mode with a busy timeout, so runs finishing together on one machine wait
for each other instead of losing a row. The index can always be rebuilt from
the sidecars (``runbook reindex``), and is, without being asked, when it is
missing, is no SQLite file at all, or is SQLite with other tables, columns or
``user_version`` than this version makes (the damaged file is kept aside as
``index.sqlite.damaged-<time>``): the first run or search to open the new file
builds it from every sidecar. ``runbook reindex`` always builds a new file
beside the old one and renames it over; only an old file that was damaged is
kept aside. An archive
that still has the older ``index.jsonl`` is migrated by that rebuild; the old
file is left as it was and no longer written.

Words are searched in the findings: a verdict's summary and evidence and its
findings' summaries. A word is whatever stands between spaces, taken as text:
quotes, stars, parentheses, ``%``, ``_``, SQL and FTS5's own keywords (NEAR,
OR, AND) search for themselves. With SQLite's FTS5 (most builds have it) a
word of letters and digits matches the words starting with it, ignoring case
and accents; a word holding any other character must also appear as written
(ignoring case for ASCII letters only). Without FTS5 every word matches any
text containing it as written, ignoring case for ASCII letters only.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import RunError

logger = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite"
LEGACY_INDEX_NAME = "index.jsonl"
INDEX_FIELDS = (
    "id",
    "runbook",
    "environment",
    "incident_id",
    "status",
    "gate",
    "verdict_status",
    "cause",
    "started_at",
    "record_path",
)
BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = "1"
USER_VERSION = 1
"""SQLite's ``user_version`` of an index this version makes (0: made before it was set)."""
_COLUMNS = (*INDEX_FIELDS, "notebook", "started", "findings")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    runbook TEXT, environment TEXT, incident_id TEXT, status TEXT, gate TEXT,
    verdict_status TEXT, cause TEXT, started_at TEXT, record_path TEXT,
    notebook TEXT, started TEXT NOT NULL, findings TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_time ON records (started, id);
CREATE INDEX IF NOT EXISTS records_by_runbook ON records (runbook, started);
CREATE INDEX IF NOT EXISTS records_by_environment ON records (environment, started);
CREATE INDEX IF NOT EXISTS records_by_cause ON records (cause, started);
CREATE INDEX IF NOT EXISTS records_by_incident ON records (incident_id, started);
"""
# The text table mirrors records.findings through triggers, so every writer
# keeps it in step without knowing it is there.
_TEXT_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS records_text
    USING fts5(findings, content='records', content_rowid='rowid');
CREATE TRIGGER IF NOT EXISTS records_text_insert AFTER INSERT ON records BEGIN
    INSERT INTO records_text (rowid, findings) VALUES (new.rowid, new.findings);
END;
CREATE TRIGGER IF NOT EXISTS records_text_delete AFTER DELETE ON records BEGIN
    INSERT INTO records_text (records_text, rowid, findings)
        VALUES ('delete', old.rowid, old.findings);
END;
CREATE TRIGGER IF NOT EXISTS records_text_update AFTER UPDATE ON records BEGIN
    INSERT INTO records_text (records_text, rowid, findings)
        VALUES ('delete', old.rowid, old.findings);
    INSERT INTO records_text (rowid, findings) VALUES (new.rowid, new.findings);
END;
"""
_UPSERT = (
    f"INSERT INTO records ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)
# What FTS5's default tokenizer keeps of a word: runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+")
_NAME_COLUMNS = ("runbook", "environment", "cause", "notebook")
_TEXT_OBJECTS = {
    ("table", "records_text"),
    ("trigger", "records_text_insert"),
    ("trigger", "records_text_delete"),
    ("trigger", "records_text_update"),
}


class SchemaMismatch(sqlite3.DatabaseError):
    """An index that is SQLite but not laid out as this version makes it."""


@dataclass(frozen=True)
class IndexQuery:
    """A ``RecordQuery`` checked, as the index compares it; None keeps everything.

    Attributes:
        runbook: a runbook name (``api-down``) or a notebook path.
        environment: an environment name.
        status: a run status (succeeded, failed) or a verdict status (ok, fail...).
        cause: a verdict's cause.
        incident_id: the incident id the run was given.
        since: records started at or after this time (UTC, ISO form).
        until: records started before this time (UTC, ISO form).
        words: words that must all appear in the findings.
    """

    runbook: str | None = None
    environment: str | None = None
    status: str | None = None
    cause: str | None = None
    incident_id: str | None = None
    since: str | None = None
    until: str | None = None
    words: tuple[str, ...] = field(default=())


@dataclass
class ReindexReport:
    """What a rebuild of the index found, for the person who asked for it."""

    indexed: int = 0
    unreadable: list[str] = field(default_factory=list)
    dropped: int = 0
    legacy_lines: int = 0
    legacy_without_sidecar: list[str] = field(default_factory=list)
    replaced_corrupt: str | None = None

    def lines(self, root: Path) -> list[str]:
        """Describe the rebuild in a few plain lines."""
        lines = [f"indexed {self.indexed} records in {root / INDEX_NAME}"]
        if self.replaced_corrupt:
            lines.append(f"the old index was damaged; kept as {self.replaced_corrupt}")
        if self.legacy_lines:
            lines.append(
                f"migrated from {LEGACY_INDEX_NAME} ({self.legacy_lines} lines; "
                "left in place, no longer written)"
            )
        if self.legacy_without_sidecar:
            lines.append(
                f"{len(self.legacy_without_sidecar)} {LEGACY_INDEX_NAME} lines name "
                "a record without a sidecar, left out: "
                + ", ".join(self.legacy_without_sidecar[:5])
            )
        if self.dropped:
            lines.append(f"dropped {self.dropped} rows whose record is gone")
        lines += [f"unreadable sidecar left out: {p}" for p in self.unreadable]
        return lines


def sidecar_paths(root: Path) -> Iterator[Path]:
    """Every record sidecar of an archive: ``YYYY/MM/<id>.json``."""
    for path in root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/*.json"):
        if not path.name.startswith("."):
            yield path


def index_row(sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """The index row of a sidecar: its ``INDEX_FIELDS``, notebook and findings."""
    verdict = sidecar.get("verdict") or {}
    verdict = verdict if isinstance(verdict, Mapping) else {}
    outcomes = [
        f"{a.get('action')}:{a.get('outcome')}"
        for a in sidecar.get("actions") or []
        if isinstance(a, Mapping) and a.get("kind") == "result"
    ]
    # a row made earlier (no verdict or actions in it) keeps its own values
    return {
        **{key: sidecar.get(key) for key in INDEX_FIELDS},
        "gate": ", ".join(outcomes) or sidecar.get("gate"),
        "verdict_status": verdict.get("status", sidecar.get("verdict_status")),
        "cause": verdict.get("cause", sidecar.get("cause")),
        "notebook": sidecar.get("notebook"),
        "findings": findings_text(verdict) or sidecar.get("findings") or "",
    }


def findings_text(verdict: Mapping[str, Any]) -> str:
    """The searchable text of a verdict: summary, evidence, findings' summaries."""
    findings = verdict.get("findings") or []
    parts = [
        verdict.get("summary"),
        *_leaves(verdict.get("evidence") or []),
        *(f.get("summary") for f in findings if isinstance(f, Mapping)),
    ]
    return "\n".join(str(part) for part in parts if part not in (None, ""))


def _leaves(value: object) -> Iterator[object]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def normal_time(text: object) -> str:
    """An ISO time as the index sorts it (UTC, milliseconds, ``Z``); else as given."""
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text or "")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    moment = moment.astimezone(datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_row(root: Path, row: Mapping[str, Any]) -> None:
    """Add or replace one record's row.

    Raises:
        RunError: when the index cannot be written (after waiting up to
            ``BUSY_TIMEOUT_S`` for other writers).
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _usable(root) as db, _transaction(db):
            db.execute(_UPSERT, _values(row))
    except sqlite3.Error as error:
        raise RunError(
            f"could not add record {row.get('id')!r} to the index "
            f"{str(root / INDEX_NAME)!r} ({error}); `runbook reindex` rebuilds it "
            "from the records"
        ) from error


def remove_rows(root: Path, record_ids: Iterable[str]) -> None:
    """Remove these records' rows (the records themselves are not touched)."""
    ids = list(record_ids)
    if not ids or not (root / INDEX_NAME).exists():
        return
    with _usable(root) as db, _transaction(db):
        db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])


def search(root: Path, query: IndexQuery, limit: int) -> list[dict[str, Any]]:
    """Return the rows matching ``query``, newest first, at most ``limit``.

    Builds the index first when it is missing, incomplete or damaged.

    Raises:
        RunError: when the index can be neither read nor rebuilt (a folder
            without write permission, a disk error).
    """

    def read(db: sqlite3.Connection) -> list[Any]:
        where, values = _where(query, _text_mode(db))
        return db.execute(
            f"SELECT {', '.join(INDEX_FIELDS)} FROM records {where} "
            "ORDER BY started DESC, id DESC LIMIT ?",
            [*values, max(limit, 0)],
        ).fetchall()

    rows = _read(root, read)
    return [dict(zip(INDEX_FIELDS, row, strict=True)) for row in rows]


def known_values(root: Path, column: str) -> set[str]:
    """The distinct values of one filter column in the index (none when empty)."""
    if column not in _NAME_COLUMNS:
        raise ValueError(f"column: got {column!r}, expected a filter column")

    def read(db: sqlite3.Connection) -> list[Any]:
        return db.execute(f"SELECT DISTINCT {column} FROM records").fetchall()

    return {str(value) for (value,) in _read(root, read) if value is not None}


def absent_values(root: Path, wanted: Mapping[str, str]) -> set[str]:
    """The filter columns whose wanted value no row has; none for an empty index.

    A runbook is found as a runbook name or as a notebook path.
    """
    if any(column not in _NAME_COLUMNS for column in wanted):
        raise ValueError(f"wanted: got {sorted(wanted)}, expected filter columns")

    def read(db: sqlite3.Connection) -> list[Any]:
        if db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None:
            return []
        return [
            column for column, value in wanted.items() if not _has(db, column, value)
        ]

    return set(_read(root, read)) if wanted else set()


def _has(db: sqlite3.Connection, column: str, value: str) -> bool:
    where = "runbook = ? OR notebook = ?" if column == "runbook" else f"{column} = ?"
    values = [value, value] if column == "runbook" else [value]
    found = db.execute(f"SELECT 1 FROM records WHERE {where} LIMIT 1", values)
    return found.fetchone() is not None


def _read(root: Path, read: Any) -> list[Any]:
    """Run a read on a usable index; a file found damaged midway is rebuilt once."""
    if not root.is_dir():
        return []
    for attempt in (1, 2):
        try:
            with _usable(root) as db:
                return list(read(db))
        except sqlite3.OperationalError as error:
            raise RunError(
                f"could not read the index {str(root / INDEX_NAME)!r} ({error}); "
                "check that the records folder is writable"
            ) from error
        except sqlite3.DatabaseError as error:
            if attempt == 2:
                raise RunError(
                    f"the index {str(root / INDEX_NAME)!r} stays damaged ({error})"
                ) from error
            _move_aside(root, error)
    return []


def rebuild(root: Path) -> ReindexReport:
    """Build a new index from the sidecars and put it in place of the old one.

    The new file is built beside the old one and renamed over it, so a search
    meanwhile reads the old one. An old file that is damaged (no SQLite, or
    another layout) is kept aside as ``index.sqlite.damaged-<time>``. Rows of
    the old index whose sidecar is gone are counted as dropped; records a run
    finished while the new file was being built are added after the rename.

    Raises:
        RunError: when the index cannot be written.
    """
    report = ReindexReport()
    fresh = root / f"{INDEX_NAME}.new-{os.getpid()}"
    try:
        _remove_files(fresh)
        with contextlib.closing(_open(fresh)) as db:
            _fill(db, root, report)
            new_ids = {i for (i,) in db.execute("SELECT id FROM records")}
        old_ids = _settle_old(root, report)
        report.dropped = len(old_ids - new_ids)
        os.replace(fresh, root / INDEX_NAME)
        _catch_up(root, new_ids)
    except (sqlite3.Error, OSError) as error:
        with contextlib.suppress(OSError):
            _remove_files(fresh)
        raise RunError(
            f"could not rebuild the index {str(root / INDEX_NAME)!r} ({error}); "
            "check that the records folder is writable"
        ) from error
    return report


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _settle_old(root: Path, report: ReindexReport) -> set[str]:
    """The ids of the old index, emptied of its log; a damaged one is kept aside."""
    if not (root / INDEX_NAME).exists():
        return set()
    try:
        db = sqlite3.connect(root / INDEX_NAME, timeout=BUSY_TIMEOUT_S)
        try:
            _check_schema(db)
            ids = {i for (i,) in db.execute("SELECT id FROM records")}
            # an empty log (or none, once this last connection closes) cannot
            # be applied to the new file renamed over this one
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
    except sqlite3.OperationalError:
        raise  # locked, or cannot be opened: not a damaged file
    except sqlite3.DatabaseError as error:
        report.replaced_corrupt = _move_aside(root, error)
        return set()
    return ids


def _catch_up(root: Path, indexed: set[str]) -> None:
    """Add the records whose sidecar appeared while the new file was built."""
    late = [p for p in sidecar_paths(root) if p.stem not in indexed]
    if not late:
        return
    report = ReindexReport()
    rows = [row for row in _sidecar_rows(root, report)[0] if row["id"] not in indexed]
    with _usable(root) as db, _transaction(db):
        db.executemany(_UPSERT, [_values(row) for row in rows])


@contextlib.contextmanager
def _usable(root: Path) -> Iterator[sqlite3.Connection]:
    """Open the index, replacing a damaged one and building an incomplete one."""
    report = ReindexReport()
    db = _open_or_replace(root, report)
    try:
        if _meta(db, "complete") != SCHEMA_VERSION:
            logger.info("building the index from the sidecars root=%s", root)
            _fill(db, root, report, only_if_incomplete=True)
        yield db
    finally:
        db.close()


def _open_or_replace(root: Path, report: ReindexReport) -> sqlite3.Connection:
    try:
        return _open(root)
    except sqlite3.OperationalError:
        raise  # locked, or cannot be opened: not a damaged file
    except sqlite3.DatabaseError as error:
        report.replaced_corrupt = _move_aside(root, error)
    return _open(root)


def _open(where: Path) -> sqlite3.Connection:
    """Open an index (an archive folder's, or this file), checking its layout.

    Raises:
        SchemaMismatch: when the file holds other tables or columns than an
            index has, or another ``user_version``.
    """
    path = where / INDEX_NAME if where.is_dir() else where
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if db.execute("PRAGMA journal_mode").fetchone() != ("wal",):
            _retry_locked(lambda: db.execute("PRAGMA journal_mode = WAL"))
        db.execute("PRAGMA synchronous = NORMAL")
        if _meta(db, "schema") is None:
            _create_schema(db)
        _check_schema(db)
    except BaseException:
        db.close()
        raise
    return db


def _create_schema(db: sqlite3.Connection) -> None:
    # Each statement is idempotent and commits on its own (executescript ends
    # any transaction first), so runs creating the file together all succeed.
    db.executescript(_SCHEMA)
    if _user_version(db) == 0 and _meta(db, "schema") is None:
        db.execute(f"PRAGMA user_version = {USER_VERSION}")
    text = "fts5" if fts5_available() else "like"
    if text == "fts5":
        db.executescript(_TEXT_SCHEMA)
    db.executemany(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
        [("schema", SCHEMA_VERSION), ("text", text)],
    )


def _check_schema(db: sqlite3.Connection) -> None:
    """Refuse an index whose version, tables or columns are not this version's.

    The meta row ``schema`` is written last when a file is made, so a file
    without it may be being made by another run right now: that is no mismatch.

    Raises:
        SchemaMismatch: naming what differs.
    """
    version = _user_version(db)
    if version not in (0, USER_VERSION):
        raise SchemaMismatch(f"user_version {version}, expected {USER_VERSION}")
    schema = _meta(db, "schema")
    if schema is None:
        return
    if schema != SCHEMA_VERSION:
        raise SchemaMismatch(f"schema {schema!r}, expected {SCHEMA_VERSION!r}")
    columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    if columns != {"rowid", *_COLUMNS}:
        raise SchemaMismatch(
            f"records columns {sorted(columns)}, expected {sorted(('rowid', *_COLUMNS))}"
        )
    if _meta(db, "text") == "fts5":
        found = set(
            db.execute(
                "SELECT type, name FROM sqlite_master WHERE name LIKE 'records_text%'"
            )
        )
        missing = sorted(name for _, name in _TEXT_OBJECTS - found)
        if missing:
            raise SchemaMismatch(f"missing {', '.join(missing)}")


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    try:
        found = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return None
        raise
    return None if found is None else str(found[0])


def _text_mode(db: sqlite3.Connection) -> str:
    return "fts5" if _meta(db, "text") == "fts5" and fts5_available() else "like"


@functools.cache
def fts5_available() -> bool:
    """Whether this Python's SQLite has the FTS5 full-text module."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        try:
            db.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
        except sqlite3.OperationalError:
            return False
    return True


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """An IMMEDIATE transaction: take the write lock first, so no upgrade deadlocks."""
    _retry_locked(lambda: db.execute("BEGIN IMMEDIATE"))
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _retry_locked(step: Any, attempts: int = 5) -> None:
    """Run a step SQLite may refuse while the file is being set up by another run."""
    for attempt in range(attempts):
        try:
            step()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _fill(
    db: sqlite3.Connection,
    root: Path,
    report: ReindexReport,
    *,
    only_if_incomplete: bool = False,
) -> None:
    rows, seen = _sidecar_rows(root, report)
    _note_legacy(root, seen, report)
    with _transaction(db):
        # Runs opening a new index together all find it incomplete; the first to
        # take the write lock builds it. A later one must not build it again: by
        # then rows of runs finishing meanwhile may be in, and a second build
        # would drop the ones whose sidecar it did not see.
        if only_if_incomplete and _meta(db, "complete") == SCHEMA_VERSION:
            return
        db.executemany(_UPSERT, [_values(row) for row in rows])
        report.dropped = _drop_gone(db, root, seen)
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('complete', ?)",
            (SCHEMA_VERSION,),
        )
    report.indexed = len(rows)


def _sidecar_rows(
    root: Path, report: ReindexReport
) -> tuple[list[dict[str, Any]], set[str]]:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in sidecar_paths(root):
        seen.add(path.stem)
        try:
            sidecar = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            sidecar = None
        if not isinstance(sidecar, dict) or sidecar.get("id") != path.stem:
            report.unreadable.append(str(path.relative_to(root)))
            logger.warning("sidecar left out of the index path=%s", path)
            continue
        rows.append(index_row(sidecar))
    return rows, seen


def _drop_gone(db: sqlite3.Connection, root: Path, seen: set[str]) -> int:
    """Drop rows whose record has no sidecar, unless it appeared meanwhile."""
    gone = [
        record_id
        for record_id, record_path in db.execute("SELECT id, record_path FROM records")
        if record_id not in seen and not _sidecar_exists(root, record_id, record_path)
    ]
    db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in gone])
    return len(gone)


def _sidecar_exists(root: Path, record_id: str, record_path: object) -> bool:
    if not isinstance(record_path, str) or not record_path:
        return False
    return (root / record_path).with_name(f"{record_id}.json").is_file()


def _note_legacy(root: Path, seen: set[str], report: ReindexReport) -> None:
    """Count the lines of an older ``index.jsonl``, and the records they lack."""
    path = root / LEGACY_INDEX_NAME
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            row = _legacy_row(line)
            if row is None:
                logger.warning(
                    "skipping malformed index line path=%s line=%d", path, number
                )
            elif row:
                report.legacy_lines += 1
                if row["id"] not in seen:
                    report.legacy_without_sidecar.append(row["id"])


def _legacy_row(line: str) -> dict[str, Any] | None:
    """The row of an ``index.jsonl`` line, {} for a blank one, None if malformed."""
    if not line.strip():
        return {}
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("id"), str) else None


def _move_aside(root: Path, error: sqlite3.DatabaseError) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = f"{INDEX_NAME}.damaged-{stamp}"
    # a second damaged file within the same second keeps the first one too
    for number in range(2, 1000):
        if not (root / kept).exists():
            break
        kept = f"{INDEX_NAME}.damaged-{stamp}-{number}"
    logger.warning(
        "index damaged, rebuilding path=%s error=%s", root / INDEX_NAME, error
    )
    for suffix in ("", "-wal", "-shm"):
        source = root / f"{INDEX_NAME}{suffix}"
        if source.exists():
            source.replace(root / f"{kept}{suffix}")
    return kept


def _values(row: Mapping[str, Any]) -> list[Any]:
    full = {
        **{column: row.get(column) for column in _COLUMNS},
        "started": normal_time(row.get("started_at")),
        "findings": str(row.get("findings") or ""),
    }
    return [_scalar(full[column]) for column in _COLUMNS]


def _scalar(value: object) -> object:
    if value is None or isinstance(value, (str, int, float)):
        return value
    return json.dumps(value, ensure_ascii=False)


def _where(query: IndexQuery, text_mode: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    values: list[Any] = []
    if query.runbook:
        clauses.append("(runbook = ? OR notebook = ?)")
        values += [query.runbook, query.runbook]
    if query.status:
        clauses.append("(status = ? OR verdict_status = ?)")
        values += [query.status, query.status]
    for column in ("environment", "cause", "incident_id"):
        if getattr(query, column):
            clauses.append(f"{column} = ?")
            values.append(getattr(query, column))
    if query.since:
        clauses.append("started >= ?")
        values.append(query.since)
    if query.until:
        clauses.append("started < ?")
        values.append(query.until)
    if query.words:
        clause, words = _words_clause(query.words, text_mode)
        clauses.append(clause)
        values += words
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), values


def _words_clause(words: Sequence[str], text_mode: str) -> tuple[str, list[str]]:
    """Every word must be in the findings; each is text, never search syntax.

    FTS5 gets each word as a quoted phrase (a quote in it doubled), matching
    words that start so. FTS5 drops what is not a letter or digit, so a word
    holding such characters must also be found as written by LIKE, its
    wildcards escaped; a word of nothing else is found by LIKE alone.
    """
    clauses: list[str] = []
    values: list[str] = []
    phrases = []
    for word in words:
        plain = bool(_TOKEN.fullmatch(word))
        if text_mode == "fts5" and _TOKEN.search(word):
            phrases.append('"' + word.replace('"', '""') + '"*')
        if text_mode != "fts5" or not plain:
            clauses.append("findings LIKE ? ESCAPE '\\'")
            values.append(f"%{_escape_like(word)}%")
    if phrases:
        clauses.insert(
            0, "rowid IN (SELECT rowid FROM records_text WHERE records_text MATCH ?)"
        )
        values.insert(0, " ".join(phrases))
    return " AND ".join(clauses), values


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def split_words(text: str) -> tuple[str, ...]:
    """The words of a search text: what stands between spaces, as written."""
    return tuple(text.split())
