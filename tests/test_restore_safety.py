"""A backup is data, not a script: the restore runs only what the export writes.

Doctored dumps (statements the platform's backup worker never writes) are
refused with the statement's kind and line, nothing of them runs, and the
restore runbook's verdict says so.
"""

import datetime
import gzip
import io
import sqlite3

import pytest

from opslib import R2Client, Status, diagnose_restore, restore_backup, run_notebook
from opslib._dump import write_dump
from opslib._restore import DumpRejected, _scratch_connection, restore_dump
from opslib._restoreflow import check_restored_counts

WHEN = datetime.datetime(2026, 11, 27, 3, 0, 0, tzinfo=datetime.UTC)
BUCKET = "manuscript-platform-backups"


def _dump_text() -> str:
    db = sqlite3.connect(":memory:")
    db.executescript(
        """
        CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, "created at" INTEGER);
        CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
        CREATE INDEX idx_notes_body ON notes(body);
        """
    )
    db.executemany(
        "INSERT INTO users VALUES (?, ?, ?)",
        [("u1", "a@example.com", 1), ("u;2", "it's; fine", 2)],
    )
    db.executemany("INSERT INTO notes VALUES (?, ?)", [(1, "one"), (2, "two; three")])
    out = io.StringIO()
    write_dump(db, out, generated_at=WHEN, database="manuscript-platform")
    return out.getvalue()


def _outside_db(path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
    db.executemany("INSERT INTO notes VALUES (?, ?)", [(1, "keep"), (2, "me")])
    db.commit()
    db.close()


def _outside_rows(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM notes").fetchone()[0]
    finally:
        db.close()


def _doctor(text: str, injected: str, before: str = "COMMIT;") -> str:
    """Put lines into a dump just before the given line."""
    return text.replace(before + "\n", injected + before + "\n", 1)


def _line_of(text: str, needle: str) -> int:
    """The line of the last place a text holds ``needle`` (injections come last)."""
    return text[: text.rindex(needle)].count("\n") + 1


def test_a_faithful_dump_with_quoted_names_restores(tmp_path):
    report = restore_dump(_dump_text().encode(), tmp_path / "copy.sqlite", views="")

    assert report.inserts == {"notes": 2, "users": 2}
    assert report.tables == ["notes", "users"]
    assert report.indexes == ["idx_notes_body"]


def test_attach_and_delete_is_refused_and_the_outside_file_keeps_its_rows(tmp_path):
    outside = tmp_path / "x.db"
    _outside_db(outside)
    text = _doctor(
        _dump_text(), f"ATTACH DATABASE '{outside}' AS v;\nDELETE FROM v.notes;\n"
    )
    target = tmp_path / "copy.sqlite"

    with pytest.raises(DumpRejected) as caught:
        restore_dump(gzip.compress(text.encode()), target, views="")

    assert caught.value.statement == "ATTACH"
    assert caught.value.line == _line_of(text, "ATTACH")
    assert f"line {caught.value.line}: ATTACH" in str(caught.value)
    assert _outside_rows(outside) == 2
    assert not target.exists()
    assert not (tmp_path / "copy.sqlite.partial").exists()


def test_attach_that_would_create_a_file_creates_none(tmp_path):
    planted = tmp_path / "pwn.db"
    text = _doctor(
        _dump_text(),
        f"ATTACH '{planted}' AS pwn;\nCREATE TABLE pwn.t (a);\n",
        before="-- Table: notes",
    )

    with pytest.raises(DumpRejected, match="ATTACH"):
        restore_dump(text.encode(), tmp_path / "copy.sqlite", views="")

    assert not planted.exists()


@pytest.mark.parametrize(
    ("injected", "kind"),
    [
        ("DROP TABLE users;\n", "DROP TABLE"),
        ("DROP TABLE IF EXISTS users;\n", "DROP TABLE of a table already loaded"),
        ("UPDATE users SET email = NULL;\n", "UPDATE"),
        ("DELETE FROM notes;\n", "DELETE FROM"),
        ("VACUUM;\n", "VACUUM"),
        ("DETACH v;\n", "DETACH"),
        ("CREATE VIEW v AS SELECT * FROM users;\n", "CREATE VIEW"),
        (
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM users; END;\n",
            "CREATE TRIGGER",
        ),
        ("INSERT INTO v.notes (id) VALUES (3);\n", "INSERT other than"),
        ('INSERT INTO "main".notes (id) VALUES (3);\n', "INSERT other than"),
        ("INSERT INTO notes SELECT * FROM users;\n", "INSERT other than"),
        ("INSERT INTO missing (id) VALUES (3);\n", "INSERT into a table the dump"),
        ("CREATE TEMP TABLE users (a);\n", "CREATE TABLE in a form"),
        ("CREATE TABLE copy AS SELECT * FROM users;\n", "CREATE TABLE in a form"),
        ("CREATE INDEX i ON missing (a);\n", "CREATE INDEX on a table the dump"),
        # hidden after a string that holds a semicolon, on the same line
        (
            "INSERT INTO notes (id, body) VALUES (7, 'a;b'); DELETE FROM users;\n",
            "DELETE",
        ),
        # behind a comment, across lines
        ("/* routine cleanup; */\n-- nothing to see\nDELETE\nFROM users;\n", "DELETE"),
        ("SELECT load_extension('/tmp/evil.so');\n", "SELECT"),
    ],
)
def test_statements_outside_the_format_are_refused_by_kind_and_line(
    tmp_path, injected, kind
):
    text = _doctor(_dump_text(), injected)
    marker = injected.split("\n")[0][:12]

    with pytest.raises(DumpRejected) as caught:
        restore_dump(text.encode(), tmp_path / "copy.sqlite", views="")

    assert caught.value.statement.startswith(kind), caught.value.statement
    expected_line = _line_of(text, marker)
    if "DELETE\n" in injected:
        expected_line = _line_of(text, "DELETE\nFROM")
    assert caught.value.line == expected_line
    assert not (tmp_path / "copy.sqlite").exists()


def test_the_scratch_connection_refuses_other_databases_and_extensions(tmp_path):
    outside = tmp_path / "x.db"
    _outside_db(outside)
    connection = _scratch_connection(tmp_path / "scratch.sqlite")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            connection.execute(f"ATTACH DATABASE '{outside}' AS v")
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            connection.execute("PRAGMA journal_mode = DELETE")
        with pytest.raises(sqlite3.OperationalError):
            connection.execute("SELECT load_extension('/nonexistent/lib')")
        connection.execute("CREATE TABLE t (a)")
        connection.execute("CREATE TEMP TABLE u (a)")
        connection.execute("INSERT INTO temp.u SELECT a FROM main.t")
    finally:
        connection.close()
    assert _outside_rows(outside) == 2


def _doctored_backup(sandbox, tmp_path, injected: str) -> tuple[object, str]:
    from opslib import load_environment

    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    key = "backup-2026-01-02-1767322800417.sql.gz"
    client = R2Client(environment)
    try:
        healthy = sorted(
            o["key"] for o in client.list_objects(BUCKET) if o["key"] != key
        )[-1]
        text = gzip.decompress(client.get_bytes(BUCKET, healthy)).decode()
        body = gzip.compress(_doctor(text, injected).encode())
        client.put_bytes(
            BUCKET, key, body, content_type="application/gzip", metadata={}
        )
    finally:
        client.close()
    return environment, key


def test_restore_step_refuses_a_doctored_backup_and_the_verdict_says_so(
    sandbox, tmp_path
):
    outside = tmp_path / "x.db"
    _outside_db(outside)
    environment, key = _doctored_backup(
        sandbox, tmp_path, f"ATTACH DATABASE '{outside}' AS v;\nDELETE FROM v.notes;\n"
    )
    try:
        restored = restore_backup(environment, key=key, folder=tmp_path / "scratch")
    finally:
        sandbox.reset("healthy")
    counts = check_restored_counts(restored)
    verdict = diagnose_restore([restored, counts])

    assert restored.status is Status.FAIL
    assert restored.facts["statement"] == "ATTACH"
    assert "line " in restored.summary and "ATTACH" in restored.summary
    assert counts.status is Status.UNKNOWN
    assert verdict.cause == "backup-unsafe"
    assert verdict.status is not Status.OK
    assert _outside_rows(outside) == 2


def test_restore_notebook_on_a_doctored_backup_is_not_ok(sandbox, tmp_path):
    outside = tmp_path / "x.db"
    _outside_db(outside)
    environment, key = _doctored_backup(
        sandbox, tmp_path, f"ATTACH DATABASE '{outside}' AS v;\nDELETE FROM v.notes;\n"
    )
    try:
        record = run_notebook(
            "restore",
            parameters={"incident_id": "INC-9", "backup_key": key},
            environment="sandbox",
            records_dir=tmp_path / "records",
        )
    finally:
        sandbox.reset("healthy")

    assert record.verdict["status"] != "ok"
    assert record.verdict["cause"] == "backup-unsafe"
    restore = next(f for f in record.verdict["findings"] if f["name"] == "restore")
    assert "ATTACH" in restore["summary"]
    assert _outside_rows(outside) == 2


FIRST_NOTE = "INSERT INTO notes (id, body) VALUES (1, 'one');\n"


@pytest.mark.parametrize(
    ("injected", "kind"),
    [
        ("INSERT INTO notes (id, body) SELECT id, email FROM users;\n", "INSERT other"),
        (
            "INSERT INTO users (id, email, \"created at\") VALUES ('u3', 'x', 3);\n",
            "INSERT into a table the dump lacks",
        ),
    ],
)
def test_a_foreign_line_inside_a_run_of_inserts_is_refused(tmp_path, injected, kind):
    text = _dump_text().replace(FIRST_NOTE, FIRST_NOTE + injected, 1)

    with pytest.raises(DumpRejected) as caught:
        restore_dump(text.encode(), tmp_path / "copy.sqlite", views="")

    assert caught.value.statement.startswith(kind)
    assert caught.value.line == _line_of(text, injected.strip())


def test_an_insert_with_other_columns_inside_a_run_is_loaded(tmp_path):
    injected = "INSERT INTO notes (id) VALUES (9);\n"
    text = _dump_text().replace(FIRST_NOTE, FIRST_NOTE + injected, 1)

    report = restore_dump(text.encode(), tmp_path / "copy.sqlite", views="")

    assert report.inserts["notes"] == 3
