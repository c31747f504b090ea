"""Restoring platform dumps into scratch SQLite files, and checking the copy."""

import datetime
import gzip
import io
import sqlite3

import pytest

from opslib._dump import write_dump
from opslib._finding import Status
from opslib._restore import read_views, restore_dump, table_rows
from opslib._restorecheck import (
    check_backup_log_copy,
    check_data_loss_window,
    check_integrity,
    check_restore_counts,
    check_schema_objects,
)

WHEN = datetime.datetime(2026, 11, 27, 3, 0, 0, 417_000, tzinfo=datetime.UTC)
HARD_TEXTS = [
    "semi; colon; ",
    "new\nline;\n",
    "windows\r\nline end",
    "it's ''quoted'' \"twice\"",
    "-- not a comment; /* nor this */",
    "ünïcødé ✓ 日本語 🙂",
    "END; COMMIT; BEGIN TRANSACTION;",
    "",
    "123",
    "trailing backslash \\",
]
HARD_NUMBERS = [0, -1, 2**62, 3.141592653589793, -0.5, 1e-300, 12345678901234567]


def _hard_database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(
        """
        CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, created_at INTEGER);
        CREATE TABLE manuscripts (
            id TEXT PRIMARY KEY, user_id TEXT NOT NULL, title TEXT,
            word_count INTEGER, score REAL, metadata TEXT,
            FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
        );
        CREATE INDEX idx_manuscripts_user ON manuscripts(user_id);
        CREATE VIEW user_manuscripts AS
            SELECT m.*, u.email FROM manuscripts m JOIN users u ON m.user_id = u.id;
        CREATE TRIGGER touch AFTER INSERT ON users BEGIN
            UPDATE users SET created_at = created_at WHERE id = NEW.id;
        END;
        """
    )
    db.execute("INSERT INTO users VALUES ('u1', 'a@example.com', 1700000000)")
    db.execute("INSERT INTO users VALUES ('u;2', NULL, NULL)")
    for index, text in enumerate(HARD_TEXTS):
        number = HARD_NUMBERS[index % len(HARD_NUMBERS)]
        db.execute(
            "INSERT INTO manuscripts VALUES (?, ?, ?, ?, ?, ?)",
            (f"m{index}", "u1" if index % 2 else "u;2", text, number, number / 3, None),
        )
    return db


def _dump_bytes(db: sqlite3.Connection) -> tuple[bytes, object]:
    out = io.StringIO()
    stats = write_dump(db, out, generated_at=WHEN, database="manuscript-platform")
    return gzip.compress(out.getvalue().encode("utf-8")), stats


def _rows(db: sqlite3.Connection, table: str) -> list[tuple]:
    return db.execute(
        f"SELECT *, {', '.join(f'typeof({c})' for c in _columns(db, table))} "
        f"FROM {table} ORDER BY rowid"
    ).fetchall()


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def test_restore_round_trips_every_hard_case_exactly(tmp_path):
    original = _hard_database()
    data, _ = _dump_bytes(original)
    view = "CREATE VIEW user_manuscripts AS SELECT m.*, u.email FROM manuscripts m JOIN users u ON m.user_id = u.id;"

    report = restore_dump(data, tmp_path / "copy.sqlite", views=view)

    copy = sqlite3.connect(tmp_path / "copy.sqlite")
    for table in ("users", "manuscripts"):
        assert _rows(copy, table) == _rows(original, table)
    assert report.inserts == {"manuscripts": len(HARD_TEXTS), "users": 2}
    assert report.generated_at == "2026-11-27T03:00:00.417Z"
    assert report.recreated == ["user_manuscripts"]
    assert report.triggers == []
    assert report.skipped == {"pragma foreign_keys": 2, "BEGIN": 1, "COMMIT": 1}
    assert copy.execute("SELECT COUNT(*) FROM user_manuscripts").fetchone()[0] == len(
        HARD_TEXTS
    )


def test_restore_reads_plain_sql_files_too(tmp_path):
    data, _ = _dump_bytes(_hard_database())
    path = tmp_path / "dump.sql"
    path.write_bytes(gzip.decompress(data))

    report = restore_dump(path, tmp_path / "copy.sqlite", views="")

    assert report.total_inserts == len(HARD_TEXTS) + 2
    assert report.bytes_read == path.stat().st_size


def test_restore_of_a_truncated_dump_fails_and_keeps_the_old_target(tmp_path):
    data, _ = _dump_bytes(_hard_database())
    text = gzip.decompress(data).decode("utf-8")
    cut = text.index("semi; colon") + 4
    target = tmp_path / "copy.sqlite"
    target.write_bytes(b"previous")

    with pytest.raises(ValueError, match="restore: .*truncated"):
        restore_dump(text[:cut].encode("utf-8"), target, views="")

    assert target.read_bytes() == b"previous"
    assert not (tmp_path / "copy.sqlite.partial").exists()


def test_checks_pass_on_a_faithful_restore(tmp_path):
    original = _hard_database()
    data, stats = _dump_bytes(original)
    report = restore_dump(data, tmp_path / "copy.sqlite", views="")

    counts = check_restore_counts(report, logged_stats=stats.to_json())
    integrity = check_integrity(report.target)

    assert counts.status is Status.OK, counts.summary
    assert "logged stats" in counts.summary
    assert integrity.status is Status.OK, integrity.summary
    assert "manuscripts.user_id -> users.id" in str(integrity.evidence)


def test_counts_check_fails_when_the_logged_stats_disagree(tmp_path):
    data, stats = _dump_bytes(_hard_database())
    report = restore_dump(data, tmp_path / "copy.sqlite", views="")
    logged = stats.to_json()
    logged["tables"][0]["rows"] += 3

    finding = check_restore_counts(report, logged_stats=logged)

    assert finding.status is Status.FAIL
    assert finding.facts["mismatched"] == [logged["tables"][0]["name"]]


def test_integrity_check_counts_orphans_by_the_real_column(tmp_path):
    original = _hard_database()
    original.execute("DELETE FROM users WHERE id = 'u1'")
    data, _ = _dump_bytes(original)
    report = restore_dump(data, tmp_path / "copy.sqlite", views="")

    finding = check_integrity(report.target)

    assert finding.status is Status.FAIL
    assert finding.evidence[0]["rule"] == "manuscripts.user_id -> users.id"
    assert finding.evidence[0]["rows"] == len(HARD_TEXTS) // 2


def test_integrity_check_finds_orphans_when_a_parent_key_is_null(tmp_path):
    original = _hard_database()
    original.execute("DELETE FROM users WHERE id = 'u1'")
    # SQLite lets a TEXT primary key hold NULL; a broken backup may carry one.
    original.execute("UPDATE users SET id = NULL WHERE id = 'u;2'")
    data, _ = _dump_bytes(original)
    report = restore_dump(data, tmp_path / "copy.sqlite", views="")

    finding = check_integrity(report.target)

    orphans = [
        e for e in finding.evidence if e["rule"] == "manuscripts.user_id -> users.id"
    ]
    assert finding.status is Status.FAIL
    assert orphans and orphans[0]["rows"] == len(HARD_TEXTS)
    assert any(e["rule"] == "users.id IS NULL" for e in finding.evidence)


def test_schema_check_names_views_recreated_from_the_project_schema(tmp_path):
    db = sqlite3.connect(":memory:")
    db.executescript(
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, subscription_tier TEXT);"
        "CREATE TABLE subscriptions (id TEXT PRIMARY KEY, user_id TEXT, "
        "stripe_subscription_id TEXT, stripe_customer_id TEXT, plan_type TEXT, "
        "status TEXT, current_period_start INTEGER, current_period_end INTEGER, "
        "cancel_at_period_end INTEGER);"
        "CREATE TABLE usage_tracking (id TEXT PRIMARY KEY, user_id TEXT, "
        "billing_period_start INTEGER, billing_period_end INTEGER);"
        "CREATE TABLE audit_log (id TEXT, user_id TEXT, timestamp INTEGER);"
        "CREATE TABLE dmca_requests (id TEXT, manuscript_id TEXT, status TEXT, "
        "submitted_at INTEGER);"
        "CREATE TABLE manuscripts (id TEXT, user_id TEXT, title TEXT);"
        "CREATE INDEX idx_users_email ON users(email);"
    )
    data, _ = _dump_bytes(db)
    report = restore_dump(data, tmp_path / "copy.sqlite")

    finding = check_schema_objects(report)

    assert finding.status is Status.OK, finding.summary
    assert "user_subscriptions_with_usage" in finding.summary
    assert "recreated from the project's schema" in finding.summary
    assert "CREATE VIEW user_subscriptions_with_usage" in read_views()


def test_backup_log_check_flags_rows_newer_than_the_dump(tmp_path):
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE backup_logs (id TEXT PRIMARY KEY, filename TEXT, "
        "backup_date TEXT, timestamp TEXT, original_size INTEGER, "
        "compressed_size INTEGER, duration INTEGER, status TEXT, error TEXT, "
        "stats TEXT, created_at INTEGER)"
    )
    day = int(WHEN.timestamp())
    rows = [
        ("a", "backup-x.sql.gz", 100, 2000, "success", None, day - 86400),
        ("b", "backup-y-failed", None, None, "failed", "R2 put failed", day - 3600),
        ("c", "backup-z.sql.gz", 100, 2000, "success", None, day + 3600),
    ]
    db.executemany(
        "INSERT INTO backup_logs (id, filename, compressed_size, duration, status, "
        "error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    data, _ = _dump_bytes(db)
    report = restore_dump(data, tmp_path / "copy.sqlite", views="")

    finding = check_backup_log_copy(report)

    assert finding.status is Status.WARN
    assert [r["problem"] for r in finding.evidence] == ["newer than the dump"]


@pytest.mark.parametrize(
    ("incident", "status", "hours"),
    [
        ("2026-11-27T15:00:00Z", Status.OK, 12.0),
        ("2026-11-29T03:00:00Z", Status.WARN, 48.0),
    ],
)
def test_data_loss_window_runs_from_backup_to_incident(incident, status, hours):
    finding = check_data_loss_window("2026-11-27T03:00:00.417Z", incident_time=incident)
    assert finding.status is status
    assert round(finding.facts["hours"], 1) == hours


def test_data_loss_window_is_unknown_for_an_unreadable_time():
    finding = check_data_loss_window("yesterday")
    assert finding.status is Status.UNKNOWN


def test_a_million_row_dump_restores_and_its_checks_pass(tmp_path):
    users, per_user = 1_000, 999
    path = tmp_path / "big.sql.gz"
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
        out.write(
            "-- Generated: 2026-11-27T03:00:00.417Z\nPRAGMA foreign_keys = OFF;\n"
        )
        out.write("BEGIN TRANSACTION;\nCREATE TABLE users (id TEXT PRIMARY KEY);\n")
        out.write(
            "CREATE TABLE manuscripts (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
            "title TEXT, FOREIGN KEY (user_id) REFERENCES users(id));\n"
        )
        out.writelines(
            f"INSERT INTO users (id) VALUES ('u{u}');\n" for u in range(users)
        )
        for u in range(users):
            out.writelines(
                f"INSERT INTO manuscripts (id, user_id, title) VALUES "
                f"('m{u}-{m}', 'u{u}', 'Title; {m} it''s');\n"
                for m in range(per_user)
            )
        out.write(
            "CREATE INDEX idx_manuscripts_user ON manuscripts(user_id);\nCOMMIT;\n"
        )

    report = restore_dump(path, tmp_path / "big.sqlite", views="")

    assert report.total_inserts == users + users * per_user == 1_000_000
    assert table_rows(report.target) == {"manuscripts": 999_000, "users": 1_000}
    logged = {
        "tables": [
            {"name": "manuscripts", "rows": 999_000},
            {"name": "users", "rows": 1_000},
        ]
    }
    assert check_restore_counts(report, logged_stats=logged).status is Status.OK
    assert check_integrity(report.target).status is Status.OK
    assert report.indexes == ["idx_manuscripts_user"]
