"""The platform's dump format: splitting statements and writing dumps."""

import datetime
import io
import sqlite3

import pytest

from opslib._dump import (
    DumpHeader,
    classify,
    iter_statements,
    merge_inserts,
    sql_literal,
    unquote_name,
    write_dump,
)

TRIGGER = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET a = 1; DELETE FROM u;\nEND;"
WHEN = datetime.datetime(2026, 11, 27, 3, 0, 0, 417_000, tzinfo=datetime.UTC)


def _split(script: str) -> list[tuple[str, str, str]]:
    lines = io.StringIO(script, newline="")
    return [tuple(s) for s in iter_statements(lines)]


@pytest.mark.parametrize(
    ("script", "expected_sql"),
    [
        ("INSERT INTO t VALUES ('a;b');\n", ["INSERT INTO t VALUES ('a;b');"]),
        (
            "INSERT INTO t VALUES ('line one;\nline two');\n",
            ["INSERT INTO t VALUES ('line one;\nline two');"],
        ),
        (
            "INSERT INTO t VALUES ('it''s; fine'); INSERT INTO t VALUES (2);\n",
            ["INSERT INTO t VALUES ('it''s; fine');", "INSERT INTO t VALUES (2);"],
        ),
        (
            "-- a comment; with a semicolon\nINSERT INTO t VALUES (1);\n",
            ["INSERT INTO t VALUES (1);"],
        ),
        (
            "/* block; comment\n spanning */ INSERT INTO t VALUES (1);\n",
            ["INSERT INTO t VALUES (1);"],
        ),
        (
            'INSERT INTO "we;ird" VALUES (1);\n',
            ['INSERT INTO "we;ird" VALUES (1);'],
        ),
        (
            "INSERT INTO t VALUES ('ünïcødé ✓ 日本; ok');\n",
            ["INSERT INTO t VALUES ('ünïcødé ✓ 日本; ok');"],
        ),
        (
            TRIGGER + "\n",
            [TRIGGER],
        ),
    ],
)
def test_iter_statements_splits_only_at_real_statement_ends(script, expected_sql):
    assert [sql for _, _, sql in _split(script)] == expected_sql


def test_iter_statements_names_kinds_and_tables():
    script = (
        "PRAGMA foreign_keys = OFF;\nBEGIN TRANSACTION;\n"
        'DROP TABLE IF EXISTS "users";\nCREATE TABLE users (id TEXT);\n'
        "INSERT INTO users (id) VALUES ('a');\nINSERT INTO users (id) VALUES ('b');\n"
        "INSERT INTO users_archive (id) VALUES ('c');\n"
        "CREATE UNIQUE INDEX IF NOT EXISTS idx ON users(id);\n"
        "CREATE VIEW v AS SELECT 1;\nCOMMIT;\n"
    )
    assert [(kind, name) for kind, name, _ in _split(script)] == [
        ("pragma", "foreign_keys"),
        ("transaction", "BEGIN"),
        ("drop", "users"),
        ("create-table", "users"),
        ("insert", "users"),
        ("insert", "users"),
        ("insert", "users_archive"),
        ("create-index", "idx"),
        ("create-view", "v"),
        ("transaction", "COMMIT"),
    ]


def test_iter_statements_reads_the_header_comments():
    header = DumpHeader()
    script = "-- Title\n-- Generated: 2026-11-27T03:00:00.417Z\n\nCREATE TABLE t (a);\n"
    list(iter_statements(io.StringIO(script), header))
    assert header.generated_at == "2026-11-27T03:00:00.417Z"
    assert header.comments[0] == "-- Title"


@pytest.mark.parametrize(
    "script",
    [
        "INSERT INTO t VALUES ('never closed;\n",
        "INSERT INTO t VALUES (1)\n",
        "/* open comment; INSERT INTO t VALUES (1);\n",
    ],
)
def test_iter_statements_rejects_a_truncated_script(script):
    with pytest.raises(ValueError, match="unfinished statement.*truncated"):
        list(iter_statements(io.StringIO(script)))


@pytest.mark.parametrize(
    ("quoted", "plain"),
    [('"a""b"', 'a"b'), ("[my table]", "my table"), ("`x``y`", "x`y"), ("t", "t")],
)
def test_unquote_name_removes_each_quote_style(quoted, plain):
    assert unquote_name(quoted) == plain


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "NULL"),
        (42, "42"),
        (-1.5, "-1.5"),
        ("O'Brien", "'O''Brien'"),
        (b"\x00\xff", "X'00FF'"),
    ],
)
def test_sql_literal_writes_values_as_the_worker_does(value, literal):
    assert sql_literal(value) == literal


def test_write_dump_follows_the_worker_layout():
    db = sqlite3.connect(":memory:")
    db.executescript(
        "CREATE TABLE b (id TEXT PRIMARY KEY, n INTEGER);"
        "CREATE TABLE a (id TEXT PRIMARY KEY);"
        "CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB);"
        "CREATE INDEX idx_b_n ON b(n);"
        "CREATE VIEW v AS SELECT * FROM b;"
        "INSERT INTO b VALUES ('x', 1), ('y', NULL);"
    )
    out = io.StringIO()
    stats = write_dump(db, out, generated_at=WHEN, database="manuscript-platform")
    text = out.getvalue()
    kinds = [(kind, name) for kind, name, _ in _split(text)]

    assert "-- Generated: 2026-11-27T03:00:00.417Z" in text
    assert kinds[:2] == [("pragma", "foreign_keys"), ("transaction", "BEGIN")]
    assert [n for k, n in kinds if k == "create-table"] == ["a", "b"]
    assert ("create-index", "idx_b_n") in kinds
    assert not any(k == "create-view" or n == "_cf_KV" for k, n in kinds)
    assert kinds[-2:] == [("transaction", "COMMIT"), ("pragma", "foreign_keys")]
    assert stats.to_json() == {
        "tables": [{"name": "a", "rows": 0}, {"name": "b", "rows": 2}],
        "totalRows": 2,
    }
    assert stats.size == len(text.encode("utf-8"))


def test_classify_leaves_unknown_statements_as_other():
    assert classify("UPDATE t SET a = 1;").kind == "other"


MIXED_INSERTS = [
    "INSERT INTO t (a, b) VALUES (1, 'x');\n",
    "INSERT INTO t (a, b) VALUES (-2, 'it''s (not) a; row');\n",
    "INSERT INTO t (a, b) VALUES (3.5e-3, X'00FF');\n",
    "INSERT INTO t (a, b) VALUES (4, 'line one\nline two');\n",
    "INSERT INTO t (b, a) VALUES ('swapped', 5);\n",
    "INSERT INTO t (a, b) VALUES (6, NULL) ON CONFLICT DO NOTHING;\n",
    "INSERT INTO t (a, b) VALUES (7, upper('f'));\n",
    "INSERT INTO t (a, b) VALUES (8, 'x') /* a comment */;\n",
    "INSERT INTO t (a, b) VALUES (9, 1 -- a comment\n);\n",
    "INSERT INTO u VALUES ('other table');\n",
    "INSERT INTO t (a, b) VALUES (10, 'last');\n",
    "INSERT INTO t (a, b) VALUES (11, 'last');\n",
]


def _load(statements: list[str]) -> list[tuple]:
    db = sqlite3.connect(":memory:")
    db.executescript(
        "CREATE TABLE t (a, b); CREATE TABLE u (c);"
        "CREATE UNIQUE INDEX t_a ON t(a);" + "".join(statements)
    )
    return db.execute(
        "SELECT 't', rowid, a, typeof(a), b, typeof(b) FROM t UNION ALL "
        "SELECT 'u', rowid, c, typeof(c), NULL, NULL FROM u ORDER BY 1, 2"
    ).fetchall()


def test_merge_inserts_keeps_every_row_value_type_and_order():
    merged = merge_inserts(MIXED_INSERTS, rows=4)

    assert _load(merged) == _load(MIXED_INSERTS)
    assert len(merged) == len(MIXED_INSERTS) - 4


def test_merge_inserts_joins_only_plain_rows_with_the_same_start():
    merged = merge_inserts(MIXED_INSERTS, rows=4)

    assert merged == [
        "INSERT INTO t (a, b) VALUES (1, 'x'),\n(-2, 'it''s (not) a; row'),\n"
        "(3.5e-3, X'00FF'),\n(4, 'line one\nline two');\n",
        *MIXED_INSERTS[4:10],
        "INSERT INTO t (a, b) VALUES (10, 'last'),\n(11, 'last');\n",
    ]


def test_merge_inserts_passes_other_statements_through_in_place():
    statements = [
        "CREATE TABLE t (a);\n",
        "INSERT INTO t VALUES (1);\n",
        "INSERT INTO t VALUES (2);\n",
        "DELETE FROM t WHERE a = 1;\n",
        "INSERT INTO t VALUES (1);\n",
        "INSERT INTO t DEFAULT VALUES;\n",
    ]

    assert merge_inserts(statements) == [
        "CREATE TABLE t (a);\n",
        "INSERT INTO t VALUES (1),\n(2);\n",
        "DELETE FROM t WHERE a = 1;\n",
        "INSERT INTO t VALUES (1);\n",
        "INSERT INTO t DEFAULT VALUES;\n",
    ]
