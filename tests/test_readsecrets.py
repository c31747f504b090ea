"""A read cannot carry the platform's secrets out under another name.

Unit tests of the three layers (refusal by column, refusal by ``*``, hiding by
value shape); the runs on the sandbox's D1 are in test_dbread.py.
"""

import pytest

import opslib
from opslib._params import validate_params
from opslib._readsecrets import (
    HIDDEN_VALUE,
    SECRET_COLUMN,
    hide_secret_values,
    refuse_secret_read,
)
from opslib._sqlguard import SQLRefusedError, classify_sql

NAMED_ELSEWHERE = {
    "alias": "SELECT id, password_hash AS ph FROM users",
    "function": "SELECT id, substr(password_hash, 1, 40) AS p2 FROM users",
    "function without alias": "SELECT lower(password_hash) FROM users",
    "quoted alias": 'SELECT "password_hash" AS x FROM users',
    "bracket quoted": "SELECT [password_hash] || '' AS x FROM users",
    "backtick quoted": "SELECT `Password_Hash` x FROM users",
    "where oracle": "SELECT id FROM users WHERE password_hash LIKE 'a%'",
    "order by": "SELECT id FROM users ORDER BY password_hash",
    "later union arm": "SELECT 1 AS a, 2 AS b UNION ALL SELECT id, password_hash FROM users",
    "subquery": "SELECT x FROM (SELECT password_hash AS x FROM users)",
    "cte column list": "WITH t(x) AS (SELECT password_hash FROM users) SELECT x FROM t",
    "reset token": "SELECT user_id, token AS t FROM verification_tokens",
    "token hash": "SELECT id FROM password_reset_tokens WHERE token_hash = 'ab'",
    "session": "SELECT upper(session_id) AS s FROM sessions",
    "unsubscribe token": "SELECT substr(unsubscribe_token, 1, 9) AS u FROM email_preferences",
    "api key": "SELECT replace(api_key, 'a', 'b') AS k FROM api_keys",
    "webhook secret": "SELECT secret || '' AS s FROM webhooks",
    "join using": "SELECT u.id FROM users u JOIN sessions s USING (session_id)",
}
STAR_ELSEWHERE = {
    "compound arm": "SELECT 1 AS a, 2 AS b, 3 AS c UNION ALL SELECT * FROM users",
    "subquery": "SELECT a FROM (SELECT * FROM users) AS a",
    "cte": "WITH t AS (SELECT * FROM verification_tokens) SELECT * FROM t",
    "qualified": "SELECT 1 AS a UNION SELECT u.* FROM users u",
    "in": "SELECT id FROM sessions WHERE user_id IN (SELECT * FROM users)",
}
ORDINARY = (
    "SELECT id, email, password_hash FROM users",
    "SELECT u.id, u.password_hash FROM users u ORDER BY u.id",
    "SELECT * FROM users",
    "SELECT u.* FROM users u",
    "SELECT count(*) AS n FROM users WHERE email_verified = 1",
    "SELECT token_type, used, expires_at FROM verification_tokens WHERE user_id = 'u-1'",
    "SELECT token, user_id FROM verification_tokens",
    "SELECT feature_name, sum(tokens_input) AS t FROM cost_tracking GROUP BY 1",
    "SELECT 1 AS a UNION ALL SELECT * FROM manuscripts",
    "WITH t AS (SELECT * FROM manuscripts) SELECT count(*) AS n FROM t",
    "SELECT r2_key, status FROM manuscripts WHERE user_id = 'u-1'",
    "SELECT id, r2_key FROM manuscripts WHERE file_hash = 'ab12' ORDER BY file_hash",
    "EXPLAIN QUERY PLAN SELECT * FROM users WHERE password_hash = 'x'",
    "PRAGMA table_info(users)",
)


@pytest.mark.parametrize("sql", NAMED_ELSEWHERE.values(), ids=NAMED_ELSEWHERE.keys())
def test_a_secret_column_named_but_not_shown_plainly_is_refused(sql):
    with pytest.raises(SQLRefusedError, match="holds secrets|USING") as refused:
        refuse_secret_read(classify_sql(sql))
    assert "leave it out" in refused.value.reason


@pytest.mark.parametrize("sql", STAR_ELSEWHERE.values(), ids=STAR_ELSEWHERE.keys())
def test_a_star_below_the_outer_select_over_a_secret_table_is_refused(sql):
    with pytest.raises(SQLRefusedError, match=r"a \* inside .*holding secrets"):
        refuse_secret_read(classify_sql(sql))


@pytest.mark.parametrize("sql", ORDINARY)
def test_ordinary_reads_pass(sql):
    refuse_secret_read(classify_sql(sql))


def test_a_write_naming_a_secret_column_is_left_to_the_gated_write():
    # A manual password reset writes a new hash: the write planning judges it.
    refuse_secret_read(
        classify_sql("UPDATE users SET password_hash = 'ab' WHERE id = 'u-1'")
    )


def test_the_parameter_check_refuses_it_naming_sql_and_what_to_do():
    with pytest.raises(opslib.ParameterError) as refused:
        validate_params(sql=NAMED_ELSEWHERE["alias"])
    text = str(refused.value)
    assert "sql" in text and "password_hash holds secrets" in text
    assert "select the column by its own name" in text


def test_secret_column_names_follow_the_schema():
    for name in (
        "password_hash",
        "token",
        "token_hash",
        "session_id",
        "unsubscribe_token",
        "api_key",
        "secret",
        "signing_secret",
    ):
        assert SECRET_COLUMN.search(name), name
    for name in (
        "token_type",
        "tokens_input",
        "tokens_output",
        "r2_key",
        "id",
        "email",
        "used",
        "user_id",
        "file_hash",
    ):
        assert not SECRET_COLUMN.search(name), name
    assert SECRET_COLUMN.search("profile_hash")


def test_values_shaped_like_secrets_are_hidden_whatever_the_column():
    pbkdf2 = "0f" * 48
    rows = [
        {"a": pbkdf2, "b": "ok", "n": 3},
        {"a": "a" * 32 + ":" + "b" * 64, "b": None, "n": None},
        {"a": "$2b$12$" + "x" * 53, "b": "see " + "c" * 64, "n": 1},
        {"a": "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VySWQiOiJ1In0.c2lnbmF0dXJl", "b": "", "n": 0},
        {"a": "sk_live_" + "Z9" * 12, "b": "whsec_" + "k" * 20, "n": 0},
    ]
    hidden = hide_secret_values(rows)
    assert [row["a"] for row in hidden] == [HIDDEN_VALUE] * 5
    assert [row["b"] for row in hidden] == ["ok", None, HIDDEN_VALUE, "", HIDDEN_VALUE]
    assert [row["n"] for row in hidden] == [3, None, 1, 0, 0]


def test_ordinary_values_are_kept():
    rows = [
        {
            "id": "3f2c9a1e-5b7d-4c2a-9e1f-0a1b2c3d4e5f",
            "r2_key": "u-1/m-1/2026-01-01T00:00:00Z_book.docx",
            "stripe": "cus_NffrFeUfNV2Hib",
            "short_hex": "deadbeef" * 3,
        }
    ]
    assert hide_secret_values(rows) == rows
