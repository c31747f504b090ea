"""Which SQL a runbook may send to D1, decided by a parser, not by patterns.

Every statement an operator types is parsed with sqlglot's SQLite dialect, so a
``;`` or a ``WHERE`` inside a string literal or a comment counts for nothing. A
statement is classified as a *read* (``SELECT``, ``WITH ... SELECT``, ``EXPLAIN``,
a ``PRAGMA`` that sets nothing) or a *write*. Only these writes are let through,
and only one per call:

- ``INSERT INTO table (columns) VALUES (...)``, plain (no ``OR REPLACE`` or
  ``OR IGNORE``: they change or skip rows the preview cannot foresee);
- ``UPDATE table SET ... WHERE ...`` and ``DELETE FROM table WHERE ...``, without
  ``FROM``, ``LIMIT``, ``ORDER BY``, ``RETURNING`` or a ``WITH`` clause;
- ``CREATE INDEX``.

Everything else is refused: ``DROP``, ``ALTER``, ``ATTACH``, ``VACUUM``,
``REPLACE``, a ``PRAGMA`` that assigns, transactions, and writes to the internal
tables (``sqlite_*``, ``_cf_*``, ``d1_*``). An ``UPDATE`` or ``DELETE`` needs a
``WHERE`` that reads at least one column: ``WHERE 1=1`` or ``WHERE true`` is the
same as no ``WHERE`` and is refused. A tautology that names a column
(``WHERE id = id``) cannot be told apart from a real condition; the gated write
shows the rows it would touch and caps their number instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.errors import ParseError, TokenError

from ._errors import ConfigError

logger = logging.getLogger(__name__)

DIALECT = "sqlite"
MAX_SQL_LENGTH = 4000
INTERNAL_PREFIXES = ("sqlite_", "_cf_", "d1_")
READ = "read"
# The schema and check PRAGMAs that D1 answers and that change nothing.
READ_PRAGMAS = frozenset(
    {
        "foreign_key_check",
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "quick_check",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)
WRITE = "write"


class SQLRefusedError(ConfigError):
    """A statement is not one runbooks may send, or cannot be parsed.

    Attributes:
        sql: the statement as given (shortened in the message).
        reason: why it was refused.
    """

    def __init__(self, sql: str, reason: str) -> None:
        self.sql = sql
        self.reason = reason
        shown = sql if len(sql) <= 80 else f"{sql[:60]}… ({len(sql)} characters)"
        super().__init__(f"sql: refused {shown!r}: {reason}")

    def __repr__(self) -> str:
        return f"SQLRefusedError(sql={self.sql!r}, reason={self.reason!r})"


@dataclass(frozen=True)
class Statement:
    """One classified statement.

    Attributes:
        sql: the statement as given.
        kind: ``read`` or ``write``.
        verb: ``select``, ``explain``, ``pragma``, ``insert``, ``update``,
            ``delete`` or ``create-index``.
        table: the table written (or indexed); empty for reads.
        tree: the parsed statement (None for ``EXPLAIN``, kept as text).
    """

    sql: str
    kind: str
    verb: str
    table: str = ""
    tree: exp.Expr | None = None

    @property
    def is_read(self) -> bool:
        """True for a statement that changes nothing."""
        return self.kind == READ


def classify_sql(sql: str) -> Statement:
    """Parse one statement and say whether runbooks may send it, and as what.

    Args:
        sql: exactly one SQL statement (a trailing ``;`` is allowed).

    Returns:
        The classified statement.

    Raises:
        SQLRefusedError: for text that does not parse, more than one statement,
            or a statement outside the allowed set.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise SQLRefusedError(str(sql), "expected one SQL statement, got none")
    if len(sql) > MAX_SQL_LENGTH:
        raise SQLRefusedError(sql, f"longer than {MAX_SQL_LENGTH} characters")
    tree = _parse_one(sql)
    if isinstance(tree, exp.Command):
        return _classify_command(sql, tree)
    if isinstance(tree, (exp.Select, exp.Union)):
        _refuse_nested_change(sql, tree)
        return Statement(sql, READ, "select", tree=tree)
    if isinstance(tree, exp.Pragma):
        return _classify_pragma(sql, tree)
    if isinstance(tree, exp.Insert):
        return _classify_insert(sql, tree)
    if isinstance(tree, (exp.Update, exp.Delete)):
        return _classify_change(sql, tree)
    if isinstance(tree, exp.Create) and str(tree.args.get("kind")).upper() == "INDEX":
        return _classify_create_index(sql, tree)
    raise SQLRefusedError(sql, f"{_verb(tree)} statements are not allowed; {_ALLOWED}")


def require_read(sql: str) -> Statement:
    """Classify ``sql`` and refuse anything but a read.

    Raises:
        SQLRefusedError: for a write, or for SQL ``classify_sql`` refuses.
    """
    statement = classify_sql(sql)
    if not statement.is_read:
        raise SQLRefusedError(
            sql, f"a {statement.verb} changes data; use a gated write for it"
        )
    return statement


# Nodes that change data or schema; a read holds none of them anywhere, not even in
# a common table expression (``WITH x AS (DELETE ... RETURNING *) SELECT ...``).
_CHANGES = (
    exp.Alter,
    exp.Attach,
    exp.Command,
    exp.Create,
    exp.Delete,
    exp.Detach,
    exp.Drop,
    exp.Insert,
    exp.Merge,
    exp.Pragma,
    exp.Transaction,
    exp.Update,
)


def _refuse_nested_change(sql: str, tree: exp.Expr) -> None:
    for node in tree.walk():
        if isinstance(node, _CHANGES):
            raise SQLRefusedError(
                sql, f"a SELECT with {_verb(node)} inside is not a read; {_ALLOWED}"
            )


_ALLOWED = (
    "expected SELECT, EXPLAIN, a read-only PRAGMA, or one INSERT ... VALUES, "
    "UPDATE ... WHERE, DELETE ... WHERE or CREATE INDEX"
)


def _parse_one(sql: str) -> exp.Expr:
    # sqlglot logs a warning when it falls back to a raw Command; we judge those.
    sqlglot_logger = logging.getLogger("sqlglot")
    level = sqlglot_logger.level
    sqlglot_logger.setLevel(logging.ERROR)
    try:
        trees = [t for t in sqlglot.parse(sql, read=DIALECT) if t is not None]
    except (ParseError, TokenError) as error:
        first = str(error).splitlines()[0]
        raise SQLRefusedError(sql, f"does not parse as SQLite ({first})") from error
    finally:
        sqlglot_logger.setLevel(level)
    if len(trees) != 1:
        raise SQLRefusedError(
            sql, f"expected exactly one statement, found {len(trees)}"
        )
    return trees[0]


def _verb(tree: exp.Expr) -> str:
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    return tree.key.upper()


def _classify_command(sql: str, tree: exp.Command) -> Statement:
    word = str(tree.this).upper()
    rest = tree.expression
    rest = str(getattr(rest, "this", rest) or "")
    if word == "EXPLAIN":
        inner = rest.strip()
        if inner.upper().startswith("QUERY PLAN"):
            inner = inner[len("QUERY PLAN") :]
        if classify_sql(inner).is_read:
            return Statement(sql, READ, "explain")
        raise SQLRefusedError(sql, "EXPLAIN is allowed for reads only")
    raise SQLRefusedError(sql, f"{word} statements are not allowed; {_ALLOWED}")


def _classify_pragma(sql: str, tree: exp.Pragma) -> Statement:
    name = tree.this.this if isinstance(tree.this, exp.EQ) else tree.this
    if str(getattr(name, "name", name)).lower() not in READ_PRAGMAS:
        raise SQLRefusedError(
            sql, f"expected a read-only PRAGMA: {', '.join(sorted(READ_PRAGMAS))}"
        )
    # The parser stores ``PRAGMA f(x)`` and ``PRAGMA f = x`` alike; the tokens differ.
    tokens = sqlglot.tokenize(sql, read=DIALECT)
    if any(token.token_type == TokenType.EQ for token in tokens):
        raise SQLRefusedError(sql, "a PRAGMA that assigns a value is not allowed")
    return Statement(sql, READ, "pragma", tree=tree)


def _classify_insert(sql: str, tree: exp.Insert) -> Statement:
    if tree.args.get("alternative") or tree.args.get("conflict"):
        raise SQLRefusedError(
            sql,
            "INSERT OR REPLACE/IGNORE and ON CONFLICT change or skip rows the "
            "preview cannot show; use a plain INSERT",
        )
    if _clause(tree, "with") or _clause(tree, "returning"):
        raise SQLRefusedError(sql, "INSERT with WITH or RETURNING is not allowed")
    target = tree.this
    if not isinstance(target, exp.Schema) or not target.expressions:
        raise SQLRefusedError(sql, "INSERT must list its columns: INSERT INTO t (a, b)")
    if not isinstance(tree.expression, exp.Values):
        raise SQLRefusedError(sql, "INSERT must take VALUES, not a SELECT")
    return Statement(sql, WRITE, "insert", _table_name(sql, target.this), tree)


def _classify_change(sql: str, tree: exp.Update | exp.Delete) -> Statement:
    verb = tree.key
    for clause in ("from", "limit", "order", "returning", "with"):
        if _clause(tree, clause):
            raise SQLRefusedError(
                sql, f"{verb.upper()} with {clause.upper()} is not allowed"
            )
    where = tree.args.get("where")
    if where is None:
        raise SQLRefusedError(sql, f"{verb.upper()} without WHERE touches every row")
    if not list(where.find_all(exp.Column)):
        raise SQLRefusedError(
            sql,
            f"the WHERE of this {verb.upper()} reads no column, so it holds for "
            "every row (as no WHERE at all)",
        )
    return Statement(sql, WRITE, verb, _table_name(sql, tree.this), tree)


def _clause(tree: exp.Expr, name: str) -> bool:
    # sqlglot names some arguments with a trailing underscore (``from_``, ``with_``).
    return bool(tree.args.get(name) or tree.args.get(f"{name}_"))


def _classify_create_index(sql: str, tree: exp.Create) -> Statement:
    index = tree.this
    table = index.args.get("table") if isinstance(index, exp.Index) else None
    if table is None:
        raise SQLRefusedError(sql, "CREATE INDEX must name its table")
    return Statement(sql, WRITE, "create-index", _table_name(sql, table), tree)


def _table_name(sql: str, table: exp.Expr | None) -> str:
    if not isinstance(table, exp.Table) or table.args.get("db"):
        raise SQLRefusedError(sql, "expected a plain table name (no schema prefix)")
    if table.alias:
        raise SQLRefusedError(sql, "write to the table by its name, without an alias")
    name = table.name
    if name.lower().startswith(INTERNAL_PREFIXES):
        raise SQLRefusedError(sql, f"{name} is an internal table")
    return name
