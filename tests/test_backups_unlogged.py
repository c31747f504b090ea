"""Empty dumps, objects the backup log does not know, and counts the log lacks.

An empty or 0-byte backup never passes, an object without a log row is listed
as such and never taken for the newest backup, and a restore says "counts
match the log" only when the log has counts.
"""

import datetime
import gzip
import io
import sqlite3

from opslib import (
    Status,
    check_backup_bucket,
    check_backup_log,
    diagnose_backups,
    diagnose_restore,
    load_environment,
    pick_backup,
    restore_backup,
)
from opslib._dump import write_dump
from opslib._finding import Finding
from opslib._restore import restore_dump
from opslib._restorecheck import check_restore_counts
from opslib._restoreflow import check_restored_counts

WHEN = datetime.datetime(2026, 11, 27, 3, 0, 0, tzinfo=datetime.UTC)


def _dump(db: sqlite3.Connection) -> bytes:
    out = io.StringIO()
    write_dump(db, out, generated_at=WHEN, database="manuscript-platform")
    return gzip.compress(out.getvalue().encode())


def _small_db(rows: int) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT)")
    db.executemany(
        "INSERT INTO users VALUES (?, ?)", [(f"u{i}", f"{i}@x") for i in range(rows)]
    )
    return db


def test_a_dump_without_tables_fails_its_counts(tmp_path):
    report = restore_dump(b"", tmp_path / "copy.sqlite", views="")

    counts = check_restore_counts(report)
    verdict = diagnose_restore(
        [Finding("restore", Status.OK, "", facts={"report": report}), counts]
    )

    assert counts.status is Status.FAIL
    assert "no tables" in counts.summary
    assert counts.facts["empty"] is True
    assert verdict.cause == "backup-empty"
    assert verdict.status is Status.FAIL


def test_a_dump_with_tables_but_no_rows_fails_even_without_a_log(tmp_path):
    report = restore_dump(_dump(_small_db(0)), tmp_path / "copy.sqlite", views="")

    counts = check_restore_counts(report)

    assert counts.status is Status.FAIL
    assert "no rows" in counts.summary


def test_an_empty_dump_names_the_rows_the_log_expected(tmp_path):
    report = restore_dump(_dump(_small_db(0)), tmp_path / "copy.sqlite", views="")

    counts = check_restore_counts(
        report, logged_stats={"tables": [{"name": "users", "rows": 5}], "totalRows": 5}
    )

    assert counts.status is Status.FAIL
    assert "the log counts 5 rows" in counts.summary


def test_null_logged_counts_are_not_called_a_match(tmp_path):
    report = restore_dump(_dump(_small_db(3)), tmp_path / "copy.sqlite", views="")
    nulls = {"tables": [{"name": "users", "rows": None}], "totalRows": None}

    counts = check_restore_counts(report, logged_stats=nulls)
    unlogged = check_restore_counts(report)
    logged = check_restore_counts(
        report, logged_stats={"tables": [{"name": "users", "rows": 3}]}
    )
    restored = Finding("restore", Status.OK, "", facts={"report": report})

    assert counts.status is Status.WARN
    assert "has no counts" in counts.summary
    assert unlogged.status is Status.WARN
    assert logged.status is Status.OK and "logged stats" in logged.summary
    unvouched = diagnose_restore([restored, counts])
    vouched = diagnose_restore([restored, logged])
    assert "has no counts" in unvouched.summary
    assert unvouched.status is Status.WARN
    assert "counts match the log" in vouched.summary
    assert vouched.status is Status.OK


def test_planted_objects_are_not_backups_nor_the_newest(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    log = check_backup_log(environment)
    healthy = check_backup_bucket(environment, log=log)
    sandbox.reset("backup-planted")
    try:
        planted = sandbox.truth()["details"]["planted"]
        log = check_backup_log(environment)
        bucket = check_backup_bucket(environment, log=log)
        unlogged_log = check_backup_bucket(environment, log=None)
    finally:
        sandbox.reset("healthy")
    verdict = diagnose_backups([log, bucket], environment=environment)

    assert healthy.status is Status.OK and not healthy.facts["unlogged"]
    assert sorted(bucket.facts["unlogged"]) == sorted(planted)
    assert bucket.facts["count"] == healthy.facts["count"]
    assert bucket.facts["newest"]["key"] == healthy.facts["newest"]["key"]
    assert bucket.facts["newest"]["key"] not in planted
    assert pick_backup(bucket) == healthy.facts["newest"]["key"]
    assert bucket.status is Status.WARN
    assert "not counted" in bucket.summary
    problems = {p["key"]: p["problem"] for p in bucket.evidence if "size" in p}
    assert any("0 bytes" in problems[key] for key in planted)
    assert any("not in the backup log" in problems[key] for key in planted)
    # without the log only the 0-byte object can be told apart
    assert len(unlogged_log.facts["unlogged"]) == 1
    assert verdict.cause == "unlogged-objects"
    assert verdict.status is Status.WARN


def test_restoring_a_planted_object_by_name_never_passes(sandbox, tmp_path):
    environment = load_environment("sandbox")
    sandbox.reset("backup-planted")
    try:
        empty, dump = sandbox.truth()["details"]["planted"]
        log = check_backup_log(environment)
        bucket = check_backup_bucket(environment, log=log)
        zero = restore_backup(
            environment, key=pick_backup(bucket, key=empty), folder=tmp_path / "a"
        )
        tiny = restore_backup(
            environment, key=pick_backup(bucket, key=dump), folder=tmp_path / "b"
        )
        tiny_counts = check_restored_counts(tiny, log=log)
    finally:
        sandbox.reset("healthy")

    assert zero.status is Status.FAIL
    assert "not gzip (0 bytes)" in zero.summary
    assert diagnose_restore([zero]).cause == "backup-unreadable"
    assert tiny.status is Status.OK
    assert tiny_counts.status is Status.FAIL
    assert diagnose_restore([tiny, tiny_counts]).cause == "backup-empty"
