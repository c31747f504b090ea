"""Restore a platform dump into a scratch SQLite file, fast and streaming.

The dump is read line by line (through gzip when it is compressed), so a dump of
millions of rows never sits in memory at once. Statements go to SQLite in large
batches through ``executescript``, which parses them in C as the ``sqlite3`` shell
does, in a thread of its own while the next batch is read; each batch is one
transaction. Within a batch, runs of one-row INSERTs into the same table are
joined into INSERTs of up to 50 rows (:func:`opslib._dump.merge_inserts`): the
same rows in the same order, with SQLite preparing one statement where the dump
has fifty. The scratch file is built beside its target
with the journal switched off and moved into place only when the whole dump went
in, so a failed restore leaves no half-filled database behind.

As on D1, the dump's own ``BEGIN TRANSACTION``/``COMMIT`` and ``PRAGMA`` lines are
not run (D1 refuses explicit transactions; foreign keys are checked after the load
by the integrity checks instead). The platform's export drops views and triggers:
the restore recreates the views of the project's schema (``opslib/views.sql``)
that the dump lacks, and says which.

A backup is data from a bucket, not a script to trust: the restore runs only the
statements the platform's export writes (``DROP TABLE IF EXISTS`` of a table not
yet created, ``CREATE TABLE``, ``CREATE INDEX`` on a table of the dump, and
``INSERT INTO ... VALUES`` into a table of the dump, none of them naming another
schema). Any other statement (``ATTACH``, ``DELETE``, ``UPDATE``, ``DROP`` of a
table already loaded, a view, a trigger, ...) stops the restore with
:class:`DumpRejected` before it is sent to SQLite, and the scratch file is
removed. Besides, the scratch connection refuses, through an authorizer, to
attach or detach databases, to touch any database but ``main`` and ``temp``, to
run a PRAGMA once set up, and to call ``load_extension``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import queue
import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Self, cast

from ._dump import (
    EXPORT_INSERT_HEAD,
    PLAIN_NAME,
    DumpHeader,
    ReadPosition,
    iter_runs,
    iter_statements,
    merge_inserts,
    quote_name,
    unquote_name,
)

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
BATCH_STATEMENTS = 20_000
# Page cache of the scratch file (KiB): big tables insert without re-reading pages.
CACHE_KIB = 256 * 1024
_Position = Callable[[], int]
_Tick = Callable[..., None]
_NAME = f"({PLAIN_NAME})"
# The statements of the platform's export, each naming one table or index of
# the main schema (a name followed by a dot would name a schema).
_FORMAT = {
    "drop": re.compile(
        r"\s*DROP\s+TABLE\s+IF\s+EXISTS\s+" + _NAME + r"\s*;\s*\Z", re.I
    ),
    "create-table": re.compile(
        r"\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _NAME + r"\s*\(", re.I
    ),
    "create-index": re.compile(
        r"\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?"
        + _NAME
        + r"\s+ON\s+"
        + _NAME
        + r"\s*\(",
        re.I,
    ),
    "insert": EXPORT_INSERT_HEAD,
}
_FIRST_WORDS = re.compile(r"\s*([A-Za-z]+)(?:\s+([A-Za-z]+))?")
# Authorizer action codes the scratch connection refuses outright.
_REFUSED_ACTIONS = frozenset(
    {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA}
)
_REFUSED_FUNCTIONS = frozenset({"load_extension"})
_SCHEMAS = frozenset({"main", "temp"})


class DumpRejected(ValueError):
    """A dump holds a statement the platform's export never writes.

    Attributes:
        statement: what the statement is ("ATTACH", "DELETE FROM", "DROP TABLE
            of a table already loaded", "INSERT into a table the dump lacks",
            ...).
        line: the line of the dump it starts on.
        text: the statement's first characters.
    """

    def __init__(self, statement: str, line: int, text: str) -> None:
        self.statement = statement
        self.line = line
        self.text = text
        super().__init__(
            f"line {line}: {statement} is not part of the platform's dump format "
            f"({text!r}); the restore stopped before running it"
        )


def read_views() -> str:
    """Return the project's view definitions (``opslib/views.sql``)."""
    return resources.files(__package__).joinpath("views.sql").read_text("utf-8")


@dataclass
class RestoreReport:
    """What a restore read and did.

    Attributes:
        target: the restored SQLite file.
        generated_at: the time the dump's header gives ("" if none).
        inserts: INSERT statements per table, as the dump holds them.
        tables: tables the dump creates.
        indexes: indexes the dump creates.
        views: views the dump creates (none: a dump with one is refused).
        triggers: triggers the dump creates (none, as for views).
        recreated: views taken from the project's schema because the dump
            lacks them.
        skipped: statements not run, by what they were ("BEGIN", "COMMIT",
            "pragma foreign_keys", ...).
        other: statements of other kinds that were run (none: a dump with
            one is refused).
        bytes_read: size of the dump as stored (compressed, if it was).
        seconds: time the restore took.
    """

    target: Path
    generated_at: str = ""
    inserts: dict[str, int] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    other: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def total_inserts(self) -> int:
        """INSERT statements over all tables."""
        return sum(self.inserts.values())

    def summary(self) -> str:
        """One line for a person."""
        text = (
            f"restored {self.total_inserts:,} rows in {len(self.tables)} tables and "
            f"{len(self.indexes)} indexes in {self.seconds:.1f} s"
        )
        if self.recreated:
            text += (
                f"; recreated views missing from the dump: {', '.join(self.recreated)}"
            )
        return text

    def __str__(self) -> str:
        return self.summary()


def restore_dump(
    source: str | Path | bytes,
    target: str | Path,
    *,
    progress: bool = False,
    views: str | None = None,
) -> RestoreReport:
    """Load a dump into a new SQLite file at ``target``.

    Args:
        source: the dump: a file path (``.sql`` or gzip-compressed) or its bytes.
        target: the SQLite file to create; an existing file is replaced only
            once the restore succeeded.
        progress: show a progress bar (tqdm.auto: a widget in JupyterLab).
        views: view definitions to recreate when missing; default the project's.

    Raises:
        DumpRejected: when the dump holds a statement its format does not
            have; that statement was not run and the target is left as it was.
        ValueError: when the dump is truncated, not gzip or UTF-8 as it claims,
            or a statement fails; the target is left as it was.
    """
    started = time.monotonic()
    target = Path(target)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    report = RestoreReport(target)
    connection = _scratch_connection(partial)
    try:
        with _open_dump(source) as (lines, size, position):
            report.bytes_read = size
            _load(connection, lines, report, _progress(progress, size, position))
        _recreate_views(connection, read_views() if views is None else views, report)
    except DumpRejected:
        connection.close()
        partial.unlink(missing_ok=True)
        raise
    except (sqlite3.Error, ValueError, EOFError, OSError, zlib.error) as error:
        connection.close()
        partial.unlink(missing_ok=True)
        raise ValueError(f"restore: {error}") from error
    connection.close()
    os.replace(partial, target)
    report.seconds = time.monotonic() - started
    logger.info(
        "restore done target=%s rows=%s seconds=%.2f",
        target,
        report.total_inserts,
        report.seconds,
    )
    return report


def _scratch_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    connection.execute("PRAGMA foreign_keys = OFF")
    connection.set_authorizer(_authorize)
    return connection


def _authorize(
    action: int, first: str | None, second: str | None, schema: str | None, _: object
) -> int:
    """Refuse what a dump has no business doing on this machine."""
    if action in _REFUSED_ACTIONS or (schema is not None and schema not in _SCHEMAS):
        return sqlite3.SQLITE_DENY
    if (
        action == sqlite3.SQLITE_FUNCTION
        and (second or "").lower() in _REFUSED_FUNCTIONS
    ):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _load(
    connection: sqlite3.Connection,
    lines: Iterator[str],
    report: RestoreReport,
    tick: _Tick,
) -> None:
    header = DumpHeader()
    position = ReadPosition()
    batch: list[str] = []
    inserts = report.inserts
    tables: set[str] = set()
    with _BatchWriter(connection) as writer:
        for kind, name, run in iter_runs(lines, header, position=position):
            if kind not in _SKIPPED_KINDS:
                _admit(kind, run[0], tables, position.line)
            if kind == "insert":
                inserts[name] = inserts.get(name, 0) + len(run)
                batch += run
                if len(batch) >= BATCH_STATEMENTS:
                    writer.send(merge_inserts(batch))
                    batch = []
                    tick()
            elif kind == "drop":
                continue  # of a table not created yet: nothing to drop
            elif kind not in _SKIPPED_KINDS:
                _note(report, kind, name)
                batch += run
            else:
                label = name if kind == "transaction" else f"pragma {name}"
                report.skipped[label] = report.skipped.get(label, 0) + len(run)
        writer.send(merge_inserts(batch))
    tick(done=True)
    report.generated_at = header.generated_at


class _BatchWriter:
    """Runs batches of statements in a thread of its own, one transaction each.

    SQLite releases the GIL while it parses and inserts, so reading and splitting
    the next batch overlaps with loading this one. At most two batches wait. An
    error in a batch is raised in the reading thread at the next ``send`` or at
    the end.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.queue: queue.Queue[list[str] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="restore-writer")

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error

    def send(self, batch: list[str]) -> None:
        """Queue a batch (waits while two are queued)."""
        if self.error is not None:
            raise self.error
        if batch:
            self.queue.put(batch)

    def _work(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is None:
                try:
                    _run(self.connection, batch)
                except ValueError as error:
                    self.error = error


_SKIPPED_KINDS = frozenset({"transaction", "pragma"})


def _admit(kind: str, sql: str, tables: set[str], line: int) -> None:
    """Let a statement of the export's kinds through; raise DumpRejected otherwise.

    ``tables`` holds the tables the dump created so far (lower-cased, as SQLite
    compares names); a CREATE TABLE adds to it. An INSERT is checked on the
    first statement of each run: the others start with the same text up to
    their values.
    """
    pattern = _FORMAT.get(kind)
    match = pattern.match(sql) if pattern else None
    if match is None:
        raise DumpRejected(_statement_kind(kind, sql), line, sql.strip()[:80])
    name = unquote_name(match[1]).lower()
    if kind == "create-table":
        problem = "CREATE TABLE of a table already created" if name in tables else ""
        tables.add(name)
    elif kind == "drop":
        problem = "DROP TABLE of a table already loaded" if name in tables else ""
    elif kind == "create-index":
        on = unquote_name(match[2]).lower()
        problem = "" if on in tables else "CREATE INDEX on a table the dump lacks"
    else:
        problem = "" if name in tables else "INSERT into a table the dump lacks"
    if problem:
        raise DumpRejected(problem, line, sql.strip()[:80])


def _statement_kind(kind: str, sql: str) -> str:
    """Name a statement for a person: its first words, or what is wrong with it."""
    if kind == "insert":
        return "INSERT other than INTO a table of the dump with VALUES"
    if kind in ("create-table", "create-index"):
        return f"{kind.replace('-', ' ').upper()} in a form the export never writes"
    match = _FIRST_WORDS.match(sql)
    if match is None:
        return "a statement"
    first, second = match[1].upper(), (match[2] or "").upper()
    if first in ("CREATE", "DROP", "DELETE", "INSERT", "REPLACE") and second:
        return f"{first} {second}"
    return first


def _note(report: RestoreReport, kind: str, name: str) -> None:
    if kind == "create-table":
        report.tables.append(name)
    elif kind == "create-index":
        report.indexes.append(name)


def _run(connection: sqlite3.Connection, batch: list[str]) -> None:
    if not batch:
        return
    try:
        connection.executescript("BEGIN;\n" + "".join(batch) + "COMMIT;")
    except sqlite3.Error as error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise ValueError(f"{error} in a batch starting {batch[0][:80]!r}") from error


def _recreate_views(
    connection: sqlite3.Connection, views: str, report: RestoreReport
) -> None:
    present = {
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('view', 'trigger')"
        )
    }
    for statement in iter_statements(io.StringIO(views)):
        if statement.kind not in ("create-view", "create-trigger"):
            continue
        if statement.name in present:
            continue
        connection.execute(statement.sql)
        report.recreated.append(statement.name)


@contextlib.contextmanager
def _open_dump(
    source: str | Path | bytes,
) -> Iterator[tuple[Iterator[str], int, _Position]]:
    raw: IO[bytes]
    if isinstance(source, bytes):
        raw = io.BytesIO(source)
        size = len(source)
    else:
        raw = open(source, "rb")  # noqa: SIM115  closed below
        size = os.fstat(raw.fileno()).st_size
    try:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        binary: IO[bytes] = raw
        if compressed:
            binary = cast("IO[bytes]", gzip.GzipFile(fileobj=raw))
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        yield iter(text), size, raw.tell
    finally:
        raw.close()


def _progress(show: bool, size: int, position: _Position) -> _Tick:
    """A callable that moves the bar to the dump's read position."""
    if not show:
        return lambda done=False: None
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    bar = tqdm(total=size, unit="B", unit_scale=True, desc="restore")

    def tick(done: bool = False) -> None:
        bar.update((size if done else position()) - bar.n)
        if done:
            bar.close()

    return tick


def table_rows(path: str | Path) -> dict[str, int]:
    """Count the rows of every table in a SQLite file (internal tables left out)."""
    connection = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        names = user_tables(connection)
        return {
            name: connection.execute(count_sql(name)).fetchone()[0] for name in names
        }
    finally:
        connection.close()


def count_sql(table: str) -> str:
    """The query that counts a table's rows (as :func:`table_rows` runs it)."""
    return f"SELECT COUNT(*) FROM {quote_name(table)}"


def user_tables(connection: sqlite3.Connection) -> list[str]:
    """The tables a dump exports: all but ``sqlite_%`` and ``_cf_%``, by name."""
    return [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name"
        )
    ]
