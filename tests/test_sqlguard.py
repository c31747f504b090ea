"""The SQL guard: reads and writes told apart by the parser, refusals explained."""

import pytest

from opslib._sqlguard import SQLRefusedError, classify_sql, require_read


@pytest.mark.parametrize(
    ("sql", "verb"),
    [
        ("SELECT COUNT(*) FROM users", "select"),
        ("select email from users where role = 'admin';", "select"),
        ("WITH recent AS (SELECT * FROM users) SELECT * FROM recent", "select"),
        ("SELECT 1 UNION SELECT 2", "select"),
        ("EXPLAIN QUERY PLAN SELECT * FROM manuscripts WHERE user_id = 'x'", "explain"),
        ("PRAGMA table_info(users)", "pragma"),
        ("PRAGMA index_list('users')", "pragma"),
        ("SELECT * FROM users /* ; DROP TABLE users */", "select"),
        ("SELECT 'a;b' AS x -- ; DELETE FROM users", "select"),
        ("SELECT 'é', ñame FROM ünïcode", "select"),
    ],
)
def test_reads_are_classified_as_reads(sql, verb):
    statement = require_read(sql)
    assert statement.is_read
    assert statement.verb == verb


@pytest.mark.parametrize(
    ("sql", "verb", "table"),
    [
        (
            "UPDATE users SET email_verified = 1 WHERE email = 'a@example.com'",
            "update",
            "users",
        ),
        ("update Users set role='x' where id='1'", "update", "Users"),
        (
            "DELETE FROM users WHERE email LIKE 'prodtest%@example.com'",
            "delete",
            "users",
        ),
        ("DELETE FROM users WHERE email = 'semi;colon WHERE'", "delete", "users"),
        ("DELETE FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)", "delete", "t"),
        (
            "INSERT INTO schema_version (version, description) VALUES (9, 'x')",
            "insert",
            "schema_version",
        ),
        (
            "CREATE INDEX IF NOT EXISTS i ON manuscripts(user_id)",
            "create-index",
            "manuscripts",
        ),
        ("UPDATE ünï SET é = 1 WHERE ö = 'x'", "update", "ünï"),
    ],
)
def test_allowed_writes_are_classified_with_their_table(sql, verb, table):
    statement = classify_sql(sql)
    assert (statement.kind, statement.verb, statement.table) == ("write", verb, table)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DELETE FROM users", "without WHERE"),
        ("update users set role = 'admin'", "without WHERE"),
        ("DELETE FROM users WHERE 1=1", "reads no column"),
        ("DELETE FROM users WHERE TRUE", "reads no column"),
        ("UPDATE users SET role = 'x' WHERE 'a' = 'a'", "reads no column"),
        ("SELECT 1; DELETE FROM users", "exactly one statement, found 2"),
        ("SELECT 1 -- note\n; DROP TABLE users", "exactly one statement, found 2"),
        (
            "UPDATE users SET role='x' WHERE id='1'; UPDATE users SET role='y' WHERE id='2'",
            "found 2",
        ),
        ("DROP TABLE users", "DROP statements are not allowed"),
        ("drop index idx_users_email", "DROP statements are not allowed"),
        ("ALTER TABLE users ADD COLUMN x", "not allowed"),
        ("ATTACH DATABASE 'other.db' AS other", "ATTACH statements are not allowed"),
        ("PRAGMA foreign_keys = OFF", "PRAGMA"),
        ("PRAGMA writable_schema", "read-only PRAGMA"),
        ("VACUUM", "VACUUM statements are not allowed"),
        ("BEGIN", "not allowed"),
        ("REPLACE INTO users (id) VALUES ('1')", "REPLACE statements are not allowed"),
        ("INSERT OR REPLACE INTO users (id) VALUES ('1')", "OR REPLACE"),
        ("INSERT INTO users VALUES ('1')", "must list its columns"),
        ("INSERT INTO users (id) SELECT id FROM users", "VALUES, not a SELECT"),
        ("DELETE FROM users WHERE id = '1' LIMIT 1", "with LIMIT"),
        ("DELETE FROM users WHERE id = '1' RETURNING *", "with RETURNING"),
        ("UPDATE users SET role = 'x' FROM t WHERE users.id = t.id", "with FROM"),
        (
            "WITH x AS (SELECT id FROM users) DELETE FROM users WHERE id IN (SELECT id FROM x)",
            "with WITH",
        ),
        ("UPDATE users AS u SET role = 'x' WHERE u.id = '1'", "without an alias"),
        ("DELETE FROM sqlite_master WHERE name = 'users'", "internal table"),
        ("DELETE FROM _cf_KV WHERE key = 'x'", "internal table"),
        ("UPDATE main.users SET role = 'x' WHERE id = '1'", "schema prefix"),
        ("EXPLAIN DELETE FROM users WHERE id = '1'", "reads only"),
        ("CREATE TABLE t (a)", "CREATE statements are not allowed"),
        ("SELEC * FROM users", "does not parse"),
        ("", "got none"),
        (";", "found 0"),
    ],
)
def test_refused_sql_says_why(sql, reason):
    with pytest.raises(SQLRefusedError, match="sql: refused") as caught:
        classify_sql(sql)
    assert reason in caught.value.reason


def test_require_read_refuses_a_write_and_points_to_the_gated_write():
    with pytest.raises(SQLRefusedError, match="use a gated write"):
        require_read("UPDATE users SET role = 'x' WHERE id = '1'")


def test_a_long_statement_is_shown_shortened_in_the_message():
    sql = "SELECT " + ", ".join(["email"] * 40) + " FROM users; DROP TABLE users"
    with pytest.raises(SQLRefusedError) as caught:
        classify_sql(sql)
    assert "characters)" in str(caught.value)
    assert len(str(caught.value)) < 300
