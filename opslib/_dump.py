"""The platform's D1 dump format: written as its backup worker writes it, read back
one statement at a time.

The backup worker (PLATFORM.md section 6) writes a few header comments, wraps the
whole dump in ``PRAGMA foreign_keys = OFF``/``ON`` and ``BEGIN TRANSACTION``/
``COMMIT``, and then, table by table in alphabetical order (``sqlite_%`` and
``_cf_%`` left out): a ``-- Table:`` comment, ``DROP TABLE IF EXISTS``, the stored
``CREATE TABLE`` and one ``INSERT`` per row (NULL as ``NULL``, numbers raw,
everything else single-quoted with quotes doubled). The indexes that are not
automatic follow at the end. Views and triggers are not written.

:func:`iter_statements` reads such a dump (or any SQLite script) from a stream of
lines without holding more than one statement in memory. A line that holds
exactly one complete statement, as nearly every line of a dump does, is taken
whole; anything else goes through a tokenizer that knows single-quoted strings
(doubled quotes, semicolons and newlines inside), double-quoted, backquoted and
bracketed names, ``--`` and ``/* */`` comments and trigger bodies.
"""

from __future__ import annotations

import datetime
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

HEADER_TITLE = "-- Manuscript Platform D1 Backup"
_GENERATED = re.compile(r"--\s*Generated:\s*(\S+)")
_SPECIAL = re.compile(r"""['";`\[]|--|/\*""")
_NAME = r"""("(?:[^"]|"")+"|`(?:[^`]|``)+`|\[[^\]]+\]|[^\s(;,]+)"""
_INSERT = re.compile(
    r"\s*(?:INSERT|REPLACE)\s+(?:OR\s+\w+\s+)?INTO\s+" + _NAME, re.IGNORECASE
)
_CREATE = re.compile(
    r"\s*CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?(?:UNIQUE\s+)?(TABLE|INDEX|VIEW|TRIGGER)"
    r"\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _NAME,
    re.IGNORECASE,
)
_DROP = re.compile(
    r"\s*DROP\s+(TABLE|INDEX|VIEW|TRIGGER)\s+(?:IF\s+EXISTS\s+)?" + _NAME,
    re.IGNORECASE,
)
_TRANSACTION = re.compile(
    r"\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE
)
_PRAGMA = re.compile(r"\s*PRAGMA\s+([\w.]+)", re.IGNORECASE)
# The part of a one-row INSERT before its values: a plain column list at most.
_VALUES_HEAD = re.compile(
    _INSERT.pattern + r"""\s*(?:\([^()'"`\[\];/]*\)\s*)?VALUES\s*(?=\()""",
    re.IGNORECASE,
)
# One parenthesised row of values and the statement's end: strings, or anything
# but parentheses, quotes, brackets, comments and semicolons between them.
_ONE_ROW = re.compile(
    r"""\((?:'[^']*+(?:''[^']*+)*+'|(?:[^'()"`\[/;-]|-(?!-))++)*+\)\s*;\s*"""
)
# The start of an INSERT as the export writes it, up to its values: one name of
# the main schema (no dot after it), a column list of plain or quoted names.
PLAIN_NAME = r"""(?:"(?:[^"]|"")+"|`(?:[^`]|``)+`|\[[^\]]+\]|[A-Za-z_][\w$]*)"""
EXPORT_INSERT_HEAD = re.compile(
    rf"\s*INSERT\s+INTO\s+({PLAIN_NAME})\s*"
    rf"(?:\(\s*{PLAIN_NAME}(?:\s*,\s*{PLAIN_NAME})*\s*\)\s*)?VALUES\s*(?=\()",
    re.IGNORECASE,
)
_LINE_ENDS = (";\n", ";\r\n", ";")
RUN_LENGTH = 5_000
ROWS_PER_INSERT = 50
_CLOSERS = {"'": "'", '"': '"', "`": "`", "[": "]"}


class Statement(NamedTuple):
    """One statement of a dump.

    Attributes:
        kind: "insert", "create-table", "create-index", "create-view",
            "create-trigger", "drop", "transaction", "pragma" or "other".
        name: the table (insert, create-table, drop), index, view, trigger or
            pragma it names; "" for the others.
        sql: the statement's text, ending with its semicolon.
    """

    kind: str
    name: str
    sql: str


def unquote_name(name: str) -> str:
    """Return an SQL name without its quotes (``"a""b"`` reads as ``a"b``)."""
    if len(name) >= 2 and name[0] in _CLOSERS and name[-1] == _CLOSERS[name[0]]:
        inner = name[1:-1]
        return inner if name[0] == "[" else inner.replace(name[0] * 2, name[0])
    return name


def classify(sql: str) -> Statement:
    """Name what one complete statement does."""
    match = _INSERT.match(sql)
    if match:
        return Statement("insert", unquote_name(match[1]), sql)
    match = _CREATE.match(sql)
    if match:
        return Statement(f"create-{match[1].lower()}", unquote_name(match[2]), sql)
    match = _DROP.match(sql)
    if match:
        return Statement("drop", unquote_name(match[2]), sql)
    match = _TRANSACTION.match(sql)
    if match:
        return Statement("transaction", match[1].upper(), sql)
    match = _PRAGMA.match(sql)
    if match:
        return Statement("pragma", match[1].lower(), sql)
    return Statement("other", "", sql)


@dataclass
class DumpHeader:
    """What the comments before the first statement say.

    Attributes:
        generated_at: the time the dump says it was made, as written ("" if none).
        comments: the header's comment lines, without their newlines.
    """

    generated_at: str = ""
    comments: list[str] = field(default_factory=list)


def iter_statements(
    lines: Iterable[str], header: DumpHeader | None = None
) -> Iterator[Statement]:
    """Yield the statements of an SQL script, read line by line.

    Args:
        lines: the script's lines, with their line endings (a text file object).
        header: filled with the comments met before the first statement.

    Raises:
        ValueError: when the script ends inside a string, a comment or an
            unfinished statement (a truncated dump).
    """
    for kind, name, run in iter_runs(lines, header):
        for sql in run:
            yield Statement(kind, name, sql.strip())


@dataclass
class ReadPosition:
    """Where :func:`iter_runs` is in a script.

    Attributes:
        line: the line (from 1) on which the last statement that was not part
            of a run of one-line INSERTs starts.
    """

    line: int = 0


def iter_runs(
    lines: Iterable[str],
    header: DumpHeader | None = None,
    *,
    run_length: int = RUN_LENGTH,
    position: ReadPosition | None = None,
) -> Iterator[tuple[str, str, list[str]]]:
    """Yield the statements of an SQL script in runs of one kind and name.

    Consecutive one-line INSERTs that start as the previous INSERT did, up to
    its values (same table, same columns), come as one run of up to
    ``run_length`` statements; every other statement is a run of its own, and
    ``position`` (when given) says on which line it starts. Each
    item is (kind, name, statements), as in :class:`Statement`, and every
    statement's text ends with a line end. A caller may keep the list.

    Raises:
        ValueError: when the script ends inside a string, a comment or an
            unfinished statement (a truncated dump).
    """
    insert_prefix, insert_table = "\0", ""
    run: list[str] = []
    pending: list[str] = []
    started = False
    first_line = 0
    complete = sqlite3.complete_statement
    for number, line in enumerate(lines, 1):
        if not pending:
            if (
                line.startswith(insert_prefix)
                and line.count(";") == 1
                and line.endswith(_LINE_ENDS)
                and complete(line)
            ):
                run.append(line)
                if len(run) >= run_length:
                    yield "insert", insert_table, run
                    run = []
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("--"):
                if not started and header is not None and stripped:
                    _note_header(header, stripped)
                continue
        if run:
            yield "insert", insert_table, run
            run = []
        if not pending:
            first_line = number
        pending.append(line)
        if ";" not in line:
            continue
        text = "".join(pending)
        pieces, rest = _split(text)
        pending = [rest] if _has_code(rest) else []
        rest_line = first_line + text.count("\n", 0, len(text) - len(rest))
        offset = 0
        for piece in pieces:
            statement = classify(piece)
            started = True
            if position is not None:
                found = max(text.find(piece, offset), offset)
                position.line = first_line + text.count("\n", 0, found)
                offset = found + len(piece)
            if statement.kind == "insert":
                insert_table = statement.name
                insert_prefix = _insert_prefix(piece)
            yield statement.kind, statement.name, [piece + "\n"]
        first_line = rest_line
    if run:
        yield "insert", insert_table, run
    leftover = "".join(pending)
    if _has_code(leftover):
        raise ValueError(
            f"dump: the script ends inside an unfinished statement "
            f"({leftover.strip()[:60]!r}...); the dump is probably truncated"
        )


def merge_inserts(
    statements: Iterable[str], *, rows: int = ROWS_PER_INSERT
) -> list[str]:
    """Join consecutive one-row INSERTs into multi-row INSERTs, order kept.

    ``INSERT INTO t (a) VALUES (1);`` followed by ``INSERT INTO t (a) VALUES (2);``
    becomes ``INSERT INTO t (a) VALUES (1), (2);`` (with a line break after each
    comma): the same rows in the same order, and SQLite parses and plans one
    statement instead of up to ``rows``. Only INSERTs that start with the very
    same text, with a plain column list and one row of values with no
    parentheses, comments or clauses after it (no ``ON CONFLICT``, no
    ``RETURNING``), are joined; every other statement is passed on unchanged, in
    its place.
    """
    joined: list[str] = []
    head, values, start = "\0", [], 0
    for statement in statements:
        if statement.startswith(head) and (
            # the usual row: no parenthesis inside, ");" ends the line
            (
                statement.endswith(");\n")
                and statement.startswith("(", start)
                and statement.count("(", start) == 1
                and statement.count(")", start) == 1
            )
            or _ONE_ROW.fullmatch(statement, start)
        ):
            values.append(statement[start : statement.rindex(")") + 1])
            if len(values) >= rows:
                joined.append(head + ",\n".join(values) + ";\n")
                values = []
            continue
        if values:
            joined.append(head + ",\n".join(values) + ";\n")
            values = []
        match = _VALUES_HEAD.match(statement)
        if match and _ONE_ROW.fullmatch(statement, match.end()):
            head, start = statement[: match.end()], match.end()
            values.append(statement[start : statement.rindex(")") + 1])
        else:
            head = "\0"
            joined.append(statement)
    if values:
        joined.append(head + ",\n".join(values) + ";\n")
    return joined


def _insert_prefix(statement: str) -> str:
    """The text up to its values of a one-row INSERT with a plain column list.

    A line that starts with the very same text inserts into the same table and
    columns; other INSERTs get a prefix no line starts with, so each is read
    and classified on its own.
    """
    match = EXPORT_INSERT_HEAD.match(statement)
    return statement[: match.end()] if match else "\0"


def _note_header(header: DumpHeader, comment: str) -> None:
    header.comments.append(comment)
    match = _GENERATED.match(comment)
    if match and not header.generated_at:
        header.generated_at = match[1]


def _split(text: str) -> tuple[list[str], str]:
    """Cut ``text`` into its complete statements and the unfinished rest."""
    start, position = 0, 0
    found: list[str] = []
    while True:
        end = _next_semicolon(text, position)
        if end < 0:
            break
        position = end + 1
        candidate = text[start:position]
        if sqlite3.complete_statement(candidate):
            statement = _strip_comments_before(candidate)
            if statement:
                found.append(statement)
            start = position
    return found, text[start:]


def _next_semicolon(text: str, position: int) -> int:
    """The index of the next ``;`` outside strings, names and comments, or -1."""
    search = _SPECIAL.search
    while True:
        match = search(text, position)
        if match is None:
            return -1
        token = match[0]
        if token == ";":
            return match.start()
        if token == "--":
            end = text.find("\n", match.end())
        elif token == "/*":
            end = text.find("*/", match.end())
            end = end + 1 if end >= 0 else -1
        else:
            end = _closing(text, match.end(), _CLOSERS[token])
        if end < 0:
            return -1
        position = end + 1


def _closing(text: str, position: int, closer: str) -> int:
    """The index of the quote that closes a string or name (doubled ones skipped)."""
    while True:
        end = text.find(closer, position)
        if end < 0 or closer == "]":
            return end
        if text.startswith(closer, end + 1):
            position = end + 2
            continue
        return end


def _strip_comments_before(statement: str) -> str:
    """Drop blank lines and whole-line comments in front of a statement."""
    text = statement.strip()
    while text.startswith(("--", "/*")):
        if text.startswith("--"):
            cut = text.find("\n")
            text = "" if cut < 0 else text[cut + 1 :].lstrip()
        else:
            cut = text.find("*/")
            if cut < 0:
                return text
            text = text[cut + 2 :].lstrip()
    return text if text.strip(" ;\n\t") else ""


def _has_code(text: str) -> bool:
    return bool(_strip_comments_before(text + "\n").strip())


def sql_literal(value: Any) -> str:
    """Write one value as the backup worker does: NULL, a raw number or a string.

    Bytes, which the worker mishandles, are written as an ``X'..'`` literal.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "X'" + bytes(value).hex().upper() + "'"
    return "'" + str(value).replace("'", "''") + "'"


def quote_name(name: str) -> str:
    """Quote an SQL name with double quotes when it needs them."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class DumpStats:
    """The rows a dump holds, as the backup worker logs them.

    Attributes:
        tables: (table name, rows) in the dump's order.
        size: bytes of UTF-8 text written.
    """

    tables: tuple[tuple[str, int], ...]
    size: int

    @property
    def total_rows(self) -> int:
        """Rows over all tables."""
        return sum(rows for _, rows in self.tables)

    def to_json(self) -> dict[str, Any]:
        """The ``stats`` JSON of a ``backup_logs`` row."""
        return {
            "tables": [{"name": n, "rows": r} for n, r in self.tables],
            "totalRows": self.total_rows,
        }


def write_dump(
    connection: sqlite3.Connection,
    out: TextIO,
    *,
    generated_at: datetime.datetime,
    database: str,
) -> DumpStats:
    """Write a database as the platform's backup worker does.

    Args:
        connection: the database to read.
        out: where the SQL text goes.
        generated_at: the time written into the header.
        database: the database name written into the header.
    """
    written = _Counter(out)
    written(dump_header(generated_at, database))
    tables = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name"
    ).fetchall()
    counts = []
    for name, create in tables:
        cursor = connection.execute(f"SELECT * FROM {quote_name(name)}")
        prefix = insert_prefix(name, [d[0] for d in cursor.description])
        rows = 0
        written(table_opening(name, create))
        for row in cursor:
            written(insert_line(prefix, row))
            rows += 1
        written("\n")
        counts.append((name, rows))
    written(dump_footer(index_statements(connection)))
    return DumpStats(tuple(counts), written.size)


def dump_header(generated_at: datetime.datetime, database: str) -> str:
    """The comments and wrapping statements a dump starts with."""
    stamp = generated_at.astimezone(datetime.UTC)
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    return (
        f"{HEADER_TITLE}\n-- Generated: {iso}\n-- Database: {database}\n\n"
        "PRAGMA foreign_keys = OFF;\nBEGIN TRANSACTION;\n\n"
    )


def table_opening(name: str, create: str) -> str:
    """A table's comment, DROP and CREATE lines; its INSERTs and a blank line follow."""
    return f"-- Table: {name}\nDROP TABLE IF EXISTS {quote_name(name)};\n{create};\n"


def insert_prefix(name: str, columns: Iterable[str]) -> str:
    """The start of every INSERT into a table, up to its values."""
    names = ", ".join(map(quote_name, columns))
    return f"INSERT INTO {quote_name(name)} ({names}) VALUES ("


def insert_line(prefix: str, row: Iterable[Any]) -> str:
    """One row's INSERT line."""
    return prefix + ", ".join(map(sql_literal, row)) + ");\n"


def index_statements(connection: sqlite3.Connection) -> list[str]:
    """The CREATE statements of the indexes a dump carries (not automatic ones)."""
    return [
        sql
        for (sql,) in connection.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name NOT LIKE '_cf_%' ORDER BY tbl_name, name"
        )
    ]


def dump_footer(indexes: Iterable[str]) -> str:
    """The index statements and the closing COMMIT and PRAGMA."""
    lines = "".join(f"{sql};\n" for sql in indexes)
    return f"-- Indexes\n{lines}\nCOMMIT;\nPRAGMA foreign_keys = ON;\n"


class _Counter:
    """Writes text and counts its UTF-8 size."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.size = 0

    def __call__(self, text: str) -> None:
        self.out.write(text)
        self.size += len(text.encode("utf-8"))
