"""Keeping the platform's secrets out of what an operator's read shows.

A read given to the database procedure shows its rows in the record. Hiding the
values of a column by the *result* column's name is not enough: an alias
(``password_hash AS ph``), a function (``substr(password_hash, 1, 40)``), a
later arm of a compound select (its columns take the first arm's names), a
common table expression with its own column list, or a ``WHERE`` that tests a
hash character by character all carry a secret out under another name or none.
Three layers close that, each covering what the one before cannot see:

1. :func:`refuse_secret_read` refuses, before anything runs, a read that names a
   secret-bearing column anywhere but as a plain column of the top-level
   ``SELECT`` (where the result keeps the column's name and is hidden by it);
2. it also refuses a ``*`` anywhere but in the top-level ``SELECT``'s own column
   list when the read touches a table that holds a secret, since such a ``*``
   hands the secret columns to something that may rename them;
3. :func:`hide_secret_values` hides, whatever the column is called, every cell
   whose value is shaped like one of the platform's secrets (a view or any
   other path the first two do not foresee).

Which columns and tables hold secrets, and what the secrets look like, follows
the platform's schema: ``users.password_hash`` (96 hex characters, salt then
PBKDF2 output; the seed admin holds a bcrypt-shaped placeholder),
``verification_tokens.token`` (64 hex characters, in clear),
``password_reset_tokens.token_hash`` (SHA-256 hex), ``sessions.session_id``,
``email_preferences.unsubscribe_token``, the public API's ``api_keys`` and
``webhooks`` (key and signing secret columns), and the Stripe and JWT secrets
that could be pasted into a text column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlglot import exp

from ._sqlguard import SQLRefusedError, Statement

SECRET_COLUMN = re.compile(
    r"password|secret|(?<!^file)_hash$|^hash$|(?:^|_)token$|^session_id$|(?:^|_)api_?key$",
    re.IGNORECASE,
)
"""A column whose values are credentials or hashes of them. ``token_type`` and
``tokens_input`` (counts of model tokens) are not, nor is ``manuscripts.file_hash``
(the SHA-256 of an upload, which R2 recovery looks files up by); its values are
still hidden in the output, being shaped like a hash."""
SECRET_TABLES = frozenset(
    {
        "api_keys",
        "email_preferences",
        "password_reset_tokens",
        "sessions",
        "users",
        "verification_tokens",
        "webhooks",
    }
)
"""Tables holding at least one secret column."""
SECRET_VALUE = re.compile(
    r"[0-9a-fA-F]{32,}"  # PBKDF2 salt and hash, reset tokens, SHA-256 hashes
    r"|\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{20,}"  # bcrypt
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWT
    r"|\b(?:(?:sk|rk)_(?:live|test)|whsec)_[A-Za-z0-9]{8,}"  # Stripe keys
)
"""A value shaped like one of the platform's secrets, anywhere in a text cell."""
HIDDEN_VALUE = "[hidden: looks like a secret]"

_WHAT_TO_DO = (
    "select the column by its own name in the outer SELECT (its values are "
    "hidden there) or leave it out; count or filter rows by other columns"
)


def refuse_secret_read(statement: Statement) -> None:
    """Refuse a read that could show a secret under another name, or reveal it.

    Args:
        statement: a classified read (writes and reads without a parsed tree,
            such as ``EXPLAIN``, show no values and pass).

    Raises:
        SQLRefusedError: naming the column or the ``*`` and what to do instead.
    """
    tree = statement.tree
    if not statement.is_read or tree is None or isinstance(tree, exp.Pragma):
        return
    shown = _top_level_columns(tree)
    for column in tree.find_all(exp.Column):
        name = column.name
        if column.is_star or id(column) in shown or not SECRET_COLUMN.search(name):
            continue
        raise SQLRefusedError(
            statement.sql,
            f"{name} holds secrets and is used other than as a plain column of "
            "the outer SELECT (in a condition, a function, an alias, a subquery "
            "or a later arm of a compound select), which would show or reveal "
            f"it unhidden; {_WHAT_TO_DO}",
        )
    for join in tree.find_all(exp.Join):
        for used in join.args.get("using") or []:
            if SECRET_COLUMN.search(getattr(used, "name", "")):
                raise SQLRefusedError(
                    statement.sql,
                    f"a join USING {used.name} compares secrets; {_WHAT_TO_DO}",
                )
    tables = {table.name.lower() for table in tree.find_all(exp.Table)}
    touched = sorted(tables & SECRET_TABLES)
    if touched and any(id(star) not in shown for star in _stars(tree)):
        raise SQLRefusedError(
            statement.sql,
            f"a * inside a subquery, a common table expression or a compound "
            f"select over {', '.join(touched)} (tables holding secrets) can hand "
            "their secret columns on under other names; name the columns you "
            "need, or use * only in the outer SELECT",
        )


def hide_secret_values(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with every text cell shaped like a secret replaced by a mark."""
    return [
        {
            key: HIDDEN_VALUE
            if isinstance(value, str) and SECRET_VALUE.search(value)
            else value
            for key, value in row.items()
        }
        for row in rows
    ]


def _top_level_columns(tree: exp.Expr) -> set[int]:
    """The nodes listed bare in the outer SELECT's column list (by identity).

    Only a single ``SELECT`` has one: a compound select's columns are named by
    its first arm and filled by the others, so none of its columns counts.
    """
    if not isinstance(tree, exp.Select):
        return set()
    return {
        id(node)
        for node in tree.expressions
        if isinstance(node, (exp.Column, exp.Star))
    }


def _stars(tree: exp.Expr) -> list[exp.Expr]:
    """Every ``*`` and ``t.*`` of the read, except the one inside ``count(*)``."""
    found: list[exp.Expr] = []
    for node in tree.find_all(exp.Star):
        parent = node.parent
        if isinstance(parent, exp.Count):
            continue
        found.append(parent if isinstance(parent, exp.Column) else node)
    return found
