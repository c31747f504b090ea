"""The checklist checks against the sandbox: all pass on the healthy platform, and
each one fails (or cannot look) under a scenario that breaks what it checks."""

import time

import pytest

import opslib
from opslib import R2Client, Status, load_environment


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
        opslib.check_backup_log(env),
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


def test_the_backup_log_item_fails_when_no_backup_ran_for_36_hours(env):
    since = int(time.time() - 36 * 3600)
    d1_write(env, "DELETE FROM backup_logs WHERE created_at >= ?", [since])
    assert opslib.check_backup_log(env).status is Status.FAIL


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


def restore_item(env):
    """The monthly checklist's restore test, as its notebook runs it."""
    bucket = opslib.check_backup_bucket(env, log=opslib.check_backup_log(env))
    restored = opslib.restore_backup(env, key=opslib.pick_backup(bucket, age_days=7))
    return restored, opslib.check_restored_integrity(restored)


def test_restore_test_passes_on_a_week_old_sandbox_backup(env):
    restored, integrity = restore_item(env)
    assert restored.status is Status.OK, restored.summary
    assert integrity.status is Status.OK, integrity.summary


def test_restore_test_fails_with_an_empty_bucket(env):
    empty_backups(env)
    restored, integrity = restore_item(env)
    assert restored.status is Status.FAIL
    assert integrity.status is Status.UNKNOWN
