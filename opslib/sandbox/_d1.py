"""D1's REST query semantics over a real SQLite file.

A call's statements (``;``-separated ``sql`` or a ``batch`` list) run as one implicit
transaction. As on D1, explicit transactions and most PRAGMAs are refused with
SQLITE_AUTH; ``PRAGMA defer_foreign_keys`` and the read-only schema commands D1
documents (``table_list``, ``table_info``, ``index_list`` and the like) are allowed.
The internal ``_cf_KV`` table cannot be read, bound parameters are positional and at most 100, and a failing
statement fails the whole call with code 7500 and HTTP 400 (CLOUDFLARE.md section 2).

``meta.rows_read`` is an approximation: SQLite does not report scanned rows, so the
stand-in counts rows returned or changed.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MAX_PARAMS = 100
MAX_STATEMENT_BYTES = 100_000
INTERNAL_TABLE = "_cf_KV"
UNAVAILABLE_MESSAGE = (
    "D1_ERROR: Cannot resolve D1 DB due to transient issue on remote node."
)
ALLOWED_PRAGMAS = frozenset(
    {
        "defer_foreign_keys",
        "table_list",
        "table_info",
        "table_xinfo",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "quick_check",
    }
)
_TRANSACTION_WORDS = ("BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE")
_WRITE_WORDS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
_PRIMARY_CODES = {
    1: "SQLITE_ERROR",
    5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    8: "SQLITE_READONLY",
    11: "SQLITE_CORRUPT",
    13: "SQLITE_FULL",
    18: "SQLITE_TOOBIG",
    19: "SQLITE_CONSTRAINT",
    20: "SQLITE_MISMATCH",
    23: "SQLITE_AUTH",
    25: "SQLITE_RANGE",
}


class D1Error(Exception):
    """A D1 call that fails as a whole.

    Attributes:
        status: HTTP status of the answer.
        code: Cloudflare error code.
    """

    def __init__(self, message: str, *, status: int = 400, code: int = 7500) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class _Statement:
    sql: str
    params: list[Any]


def run(path: Path, body: Any, *, raw: bool) -> list[dict[str, Any]]:
    """Execute a ``/query`` or ``/raw`` body and return the per-statement results.

    Raises:
        D1Error: for a malformed body, a refused or failing statement.
    """
    statements = parse_body(body)
    connection = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("BEGIN")
        try:
            results = [_execute(connection, s, raw) for s in statements]
        except sqlite3.Error as error:
            connection.set_authorizer(None)
            connection.execute("ROLLBACK")
            raise _as_d1_error(error, statements) from error
        connection.set_authorizer(None)
        connection.execute("COMMIT")
        return results
    finally:
        connection.close()


def parse_body(body: Any) -> list[_Statement]:
    """Turn a request body into statements with their parameters.

    Raises:
        D1Error: when the body has neither ``sql`` nor ``batch``, or bad params.
    """
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        items = body["batch"]
    elif isinstance(body, dict) and "sql" in body:
        items = [body]
    else:
        raise D1Error(
            "The request is malformed: expected {sql, params} or {batch}", code=7400
        )
    statements: list[_Statement] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("sql"), str):
            raise D1Error(
                "The request is malformed: every entry needs a sql string", code=7400
            )
        statements += _split_item(item["sql"], _check_params(item.get("params")))
    if not statements:
        raise D1Error("No SQL statements detected.: SQLITE_ERROR")
    return statements


def split_sql(sql: str) -> list[str]:
    """Split SQL text into complete statements (trigger bodies stay whole)."""
    parts = sql.replace("\r\n", "\n").split(";")
    statements, buffer = [], ""
    for index, part in enumerate(parts):
        buffer += part
        if index < len(parts) - 1:
            buffer += ";"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return [s for s in statements if s.strip(" ;\n\t")]


def database_info(path: Path, uuid: str, name: str, created_at: str) -> dict[str, Any]:
    """Describe the database as ``GET /d1/database/{id}`` does."""
    connection = sqlite3.connect(path)
    try:
        tables = connection.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
    finally:
        connection.close()
    return {
        "uuid": uuid,
        "name": name,
        "created_at": created_at,
        "version": "production",
        "num_tables": tables,
        "file_size": path.stat().st_size,
        "running_in_region": "ENAM",
        "read_replication": {"mode": "disabled"},
        "jurisdiction": None,
    }


def _check_params(params: Any) -> list[Any]:
    if params is None:
        return []
    if not isinstance(params, list):
        raise D1Error("The request is malformed: params must be a list", code=7400)
    if len(params) > MAX_PARAMS:
        raise D1Error(
            f"too many SQL variables ({len(params)} > {MAX_PARAMS}): SQLITE_ERROR"
        )
    checked = []
    for value in params:
        if isinstance(value, (list, dict)):
            raise D1Error(
                "Type 'object' not supported for value in params: SQLITE_MISMATCH"
            )
        checked.append(int(value) if isinstance(value, bool) else value)
    return checked


def _split_item(sql: str, params: list[Any]) -> list[_Statement]:
    pieces = split_sql(sql)
    for piece in pieces:
        if len(piece.encode("utf-8")) > MAX_STATEMENT_BYTES:
            raise D1Error("statement too long: SQLITE_TOOBIG")
    if params and len(pieces) > 1:
        raise D1Error("params can only be bound to a single statement: SQLITE_RANGE")
    return [_Statement(piece, params) for piece in pieces]


def _authorize(
    action: int,
    arg1: str | None,
    arg2: str | None,
    _db: str | None,
    _trigger: str | None,
) -> int:
    if action in (
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        sqlite3.SQLITE_ATTACH,
        sqlite3.SQLITE_DETACH,
    ):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA:
        allowed = (arg1 or "").lower() in ALLOWED_PRAGMAS
        return sqlite3.SQLITE_OK if allowed else sqlite3.SQLITE_DENY
    if (
        action
        in (
            sqlite3.SQLITE_READ,
            sqlite3.SQLITE_UPDATE,
            sqlite3.SQLITE_INSERT,
            sqlite3.SQLITE_DELETE,
        )
        and arg1 == INTERNAL_TABLE
    ):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _execute(
    connection: sqlite3.Connection, statement: _Statement, raw: bool
) -> dict[str, Any]:
    before = connection.total_changes
    connection.set_authorizer(_authorize)
    started = time.perf_counter()
    cursor = connection.execute(statement.sql, statement.params)
    rows = cursor.fetchall()
    duration = (time.perf_counter() - started) * 1000
    connection.set_authorizer(None)

    columns = [d[0] for d in cursor.description or ()]
    values = [[_json_value(v) for v in row] for row in rows]
    changes = connection.total_changes - before
    first = statement.sql.lstrip("( \n\t").split(None, 1)[0].upper()
    meta = _meta(connection, duration, changes, len(rows), cursor.lastrowid or 0)
    meta["changed_db"] = changes > 0 or first in _WRITE_WORDS
    if raw:
        result: Any = {"columns": columns, "rows": values}
    else:
        result = [dict(zip(columns, row)) for row in values]
    return {"results": result, "success": True, "meta": meta}


def _meta(
    connection: sqlite3.Connection,
    duration: float,
    changes: int,
    returned: int,
    last_row_id: int,
) -> dict[str, Any]:
    """A statement's ``meta``; rows_read counts rows returned or changed."""
    return {
        "served_by": "v3-prod",
        "served_by_region": "ENAM",
        "served_by_primary": True,
        "served_by_colo": "EWR",
        "duration": round(duration, 4),
        "changes": changes,
        "last_row_id": last_row_id,
        "changed_db": changes > 0,
        "size_after": _size(connection),
        "rows_read": max(returned, changes),
        "rows_written": changes,
        "timings": {"sql_duration_ms": round(duration, 4)},
    }


def _size(connection: sqlite3.Connection) -> int:
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(page_size)


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, bytes) else value


def _as_d1_error(error: sqlite3.Error, statements: list[_Statement]) -> D1Error:
    code = getattr(error, "sqlite_errorcode", 1) or 1
    name = _PRIMARY_CODES.get(code & 0xFF, "SQLITE_ERROR")
    if name == "SQLITE_AUTH" and any(_is_transaction(s.sql) for s in statements):
        message = (
            "D1_ERROR: explicit transactions are not allowed: use the batch "
            "API or state.storage.transaction() instead: SQLITE_AUTH"
        )
    else:
        message = f"{error}: {name}"
    logger.debug("d1 statement refused message=%s", message)
    return D1Error(message)


def _is_transaction(sql: str) -> bool:
    words = sql.split(None, 1)
    return bool(words) and words[0].upper().rstrip(";") in _TRANSACTION_WORDS
