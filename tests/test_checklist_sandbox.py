"""The checklist checks against the sandbox: all pass on the healthy platform, and
each one fails (or cannot look) under a scenario that breaks what it checks."""

import datetime
import gzip
import io
import sqlite3
import time

import pytest

import opslib
from opslib import R2Client, Status, load_environment
from opslib._dump import write_dump


@pytest.fixture
def env(sandbox):
    sandbox.reset("healthy")
    return load_environment("sandbox")


def scenario(sandbox, name):
    sandbox.reset(name)
    return load_environment("sandbox")


def d1_write(env, sql, params=()):
    client = opslib.CloudflareClient(env)
    try:
        client.d1_query(sql, list(params), read_only=False)
    finally:
        client.close()


def test_every_checked_item_passes_on_the_healthy_sandbox(env):
    findings = [
        opslib.probe_api(env),
        opslib.check_cloudflare_status(env),
        opslib.check_error_share(env),
        opslib.check_backups(env),
        opslib.check_d1_size(env),
        opslib.check_r2_storage(env),
        opslib.check_registrations(env),
        opslib.check_queue_backlog(env),
        opslib.check_queue_consumers(env),
        opslib.check_dead_letters(env),
    ]
    assert [(f.name, f.status) for f in findings if f.status is not Status.OK] == []


@pytest.mark.parametrize(
    ("name", "check", "status"),
    [
        ("bad-deployment", opslib.probe_api, Status.FAIL),
        ("bad-deployment", opslib.check_error_share, Status.FAIL),
        ("endpoint-broken-after-deploy", opslib.check_error_share, Status.FAIL),
        ("cloudflare-outage", opslib.check_cloudflare_status, Status.FAIL),
        ("d1-unavailable", opslib.check_backups, Status.UNKNOWN),
        ("d1-unavailable", opslib.check_registrations, Status.UNKNOWN),
        ("consumer-missing", opslib.check_queue_consumers, Status.FAIL),
        ("jobs-failing-to-dlq", opslib.check_dead_letters, Status.FAIL),
    ],
)
def test_a_broken_system_fails_its_item(sandbox, name, check, status):
    assert check(scenario(sandbox, name)).status is status


def test_error_rate_names_the_failing_route(sandbox):
    finding = opslib.check_error_share(
        scenario(sandbox, "endpoint-broken-after-deploy")
    )
    assert "GET /payments/subscription" in finding.summary
    assert finding.facts["server_error_rate"] >= 0.05


def test_backups_fail_when_the_last_day_and_a_half_has_no_success(env):
    since = int(time.time() - 36 * 3600)
    d1_write(env, "DELETE FROM backup_logs WHERE created_at >= ?", [since])
    finding = opslib.check_backups(env)
    assert finding.status is Status.FAIL
    assert "no successful backup in 36 h" in finding.summary


def test_backups_fail_without_the_log_table(env):
    d1_write(env, "DROP TABLE backup_logs")
    finding = opslib.check_backups(env)
    assert finding.status is Status.FAIL
    assert "never run" in finding.summary


def test_r2_storage_fails_over_its_budget(env):
    assert opslib.check_r2_storage(env, budget_bytes=1_000).status is Status.FAIL


def empty_backups(env):
    bucket = env.r2_buckets["BACKUPS"]
    client = R2Client(env)
    try:
        for key in client.list_keys(bucket):
            client._s3.delete_object(Bucket=bucket, Key=key)
    finally:
        client.close()
    return bucket


def put_backup(env, key, data):
    client = R2Client(env)
    try:
        client._s3.put_object(Bucket=env.r2_buckets["BACKUPS"], Key=key, Body=data)
    finally:
        client.close()


def dump_of_d1(sandbox, tamper=""):
    """A gzip dump of the sandbox's D1 as the backup worker writes it, after
    running ``tamper`` on the copy (foreign keys off)."""
    source = sqlite3.connect(sandbox.state_dir / "d1.sqlite")
    copy = sqlite3.connect(":memory:")
    source.backup(copy)
    source.close()
    if tamper:
        copy.execute("PRAGMA foreign_keys = OFF")
        copy.execute(tamper)
    out = io.StringIO()
    now = datetime.datetime.now(datetime.UTC)
    write_dump(copy, out, generated_at=now, database="manuscript-platform")
    return gzip.compress(out.getvalue().encode())


def test_restore_test_fails_with_no_backup_object(env):
    empty_backups(env)
    finding = opslib.check_backup_restore(env)
    assert finding.status is Status.FAIL
    assert "no backup object" in finding.summary


def test_restore_test_restores_a_real_dump_and_finds_no_orphans(sandbox, env):
    empty_backups(env)
    put_backup(env, "backup-2026-11-27-1795000000000.sql.gz", dump_of_d1(sandbox))
    finding = opslib.check_backup_restore(env)
    assert finding.status is Status.OK, finding.summary
    assert finding.facts["rows"] > 300
    assert "no orphans" in finding.summary


def test_restore_test_fails_on_a_dump_with_orphans(sandbox, env):
    empty_backups(env)
    orphan = "UPDATE manuscripts SET user_id = 'gone' WHERE rowid = 1"
    put_backup(
        env, "backup-2026-11-27-1795000000000.sql.gz", dump_of_d1(sandbox, orphan)
    )
    finding = opslib.check_backup_restore(env)
    assert finding.status is Status.FAIL
    assert "break" in finding.summary


def test_restore_test_fails_on_a_broken_dump(env):
    empty_backups(env)
    put_backup(env, "backup-2026-11-27-1795000000000.sql.gz", b"not a dump")
    finding = opslib.check_backup_restore(env)
    assert finding.status is Status.FAIL
    assert "does not restore" in finding.summary
