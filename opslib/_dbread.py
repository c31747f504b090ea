"""A read an operator gives the database procedure as its ``sql``: run, capped, shown.

The procedure's ``sql`` names either one write (planned and gated by
:mod:`opslib._dbwrite`) or one read. A read is what the SQL guard classifies as
one: a single ``SELECT`` or ``WITH ... SELECT`` with no write anywhere inside it,
an ``EXPLAIN`` of such a read, or a schema ``PRAGMA``. Anything else, including
several statements (``SELECT 1; DELETE ...``) or a write inside a common table
expression, is not run here and goes to the write planning, which refuses or
plans it.

A read needs no gate: it goes through D1's query API like every other read of
the runbooks, with ``row_limit + 1`` as its ``LIMIT`` so that D1 returns no more
than that and the finding can tell a cut answer from a whole one. A read that could
carry a secret out under another name (an alias, a function, a condition, a
``*`` in a subquery over a table holding secrets) is refused before it runs
(:mod:`opslib._readsecrets`). The finding holds the rows, with password, token,
secret, session and hash columns hidden as in write plans and every value shaped
like one of the platform's secrets hidden whatever its column, says how many
came back and whether the limit cut them; the record's scrubber then
pseudonymises addresses and removes credentials as it does for every output.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlglot
from sqlglot import TokenType, exp

from ._beforeimage import SENSITIVE_COLUMN
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check
from ._readsecrets import SECRET_COLUMN, hide_secret_values, refuse_secret_read
from ._sqlguard import DIALECT, SQLRefusedError, Statement, classify_sql

logger = logging.getLogger(__name__)

READ_NAME = "read"
ROW_LIMIT = 200
"""Default for the most rows a read shows."""
HIDDEN = "[hidden: sensitive column]"


def as_read(sql: str) -> Statement | None:
    """The classified statement when ``sql`` is one read, else None.

    None for empty text, a write, several statements or SQL the guard refuses:
    none of them is run as a read.
    """
    if not sql.strip():
        return None
    try:
        statement = classify_sql(sql)
    except SQLRefusedError:
        return None
    return statement if statement.is_read else None


def capped_sql(statement: Statement, row_limit: int) -> str:
    """The read as sent: a SELECT asks D1 for at most ``row_limit + 1`` rows.

    A SELECT without a LIMIT of its own gets one appended; one with its own LIMIT
    is wrapped (``SELECT * FROM (...) LIMIT n``), so a smaller LIMIT still holds.
    EXPLAIN and PRAGMA answers are short and are sent as given.
    """
    if statement.verb != "select" or statement.tree is None:
        return statement.sql
    body = _without_trailing_semicolon(statement.sql)
    if isinstance(statement.tree, (exp.Select, exp.Union)) and not (
        statement.tree.args.get("limit")
    ):
        return f"{body} LIMIT {row_limit + 1}"
    return f"SELECT * FROM (\n{body}\n) LIMIT {row_limit + 1}"


def _without_trailing_semicolon(sql: str) -> str:
    """The text up to its last token that is not a ``;`` (trailing comments go)."""
    tokens = [
        token
        for token in sqlglot.tokenize(sql, read=DIALECT)
        if token.token_type != TokenType.SEMICOLON
    ]
    return sql[: tokens[-1].end + 1] if tokens else sql


@check(READ_NAME)
def read_d1(
    environment: Environment, sql: str, *, row_limit: int = ROW_LIMIT
) -> Finding:
    """Run ``sql`` when it is one read, showing at most ``row_limit`` rows.

    When ``sql`` is empty or not one read, nothing runs and the finding says so
    (a write is planned by the procedure's next step).

    Args:
        environment: where D1 is.
        sql: the procedure's ``sql`` parameter.
        row_limit: the most rows shown; when the read returns more, the finding
            names the limit and says the answer was cut.
    """
    if row_limit < 1:
        raise ValueError(f"row_limit: expected a whole number from 1, got {row_limit}")
    statement = as_read(sql)
    if statement is None:
        summary = "nothing read: sql is empty or not one read (writes are planned)"
        return Finding(READ_NAME, Status.OK, summary, facts={"ran": False})
    refuse_secret_read(statement)
    sent = capped_sql(statement, row_limit)
    client = CloudflareClient(environment)
    try:
        answer = client.d1_query(sent)
    finally:
        client.close()
    first: Mapping[str, Any] = answer[0] if answer else {}
    rows = [dict(row) for row in (first.get("results") or [])]
    truncated = len(rows) > row_limit
    shown = hide_secret_values(_hide_secret_columns(rows[:row_limit]))
    facts = {
        "ran": True,
        "rows": len(shown),
        "truncated": truncated,
        "row_limit": row_limit,
        "sql": sent,
    }
    meta = first.get("meta") or {}
    if meta.get("changed_db") or meta.get("changes"):
        # The guard lets only reads through; a change here is a fault to report.
        summary = f"the read changed the database ({meta.get('changes')} changes)"
        return Finding(READ_NAME, Status.FAIL, summary, shown, facts)
    return Finding(
        READ_NAME, Status.OK, _summary(len(shown), truncated, row_limit), shown, facts
    )


def _hide_secret_columns(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            key: HIDDEN
            if value is not None
            and (SENSITIVE_COLUMN.search(key) or SECRET_COLUMN.search(key))
            else value
            for key, value in row.items()
        }
        for row in rows
    ]


def _summary(rows: int, truncated: bool, row_limit: int) -> str:
    if truncated:
        return (
            f"{rows} rows shown, truncated: the read returns more than "
            f"row_limit={row_limit}; raise row_limit or narrow the read"
        )
    return f"{rows} row{'' if rows == 1 else 's'} returned, not truncated"


def rows_frame(finding: Finding) -> Any:
    """All the rows of a read finding as a pandas DataFrame (``.table()`` shows ten)."""
    import pandas as pd  # type: ignore[import-untyped]

    rows: Sequence[Mapping[str, Any]] = finding.evidence
    return pd.DataFrame([dict(row) for row in rows])
