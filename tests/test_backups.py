"""Backup status checks, the restore procedure's steps and the gated manual backup,
against the sandbox's backups bucket and its D1 log."""

import datetime
import gzip

import pytest

from opslib import (
    CloudflareClient,
    R2Client,
    Status,
    apply_action,
    check_backup_bucket,
    check_backup_log,
    check_loss_window,
    check_restored_counts,
    check_restored_integrity,
    diagnose_backups,
    diagnose_restore,
    load_environment,
    pick_backup,
    plan_manual_backup,
    plan_restore_into,
    restore_backup,
    run_notebook,
)
from opslib._backupaction import manual_backup_phrase
from opslib._finding import Finding
from opslib._params import check_value

BUCKET = "manuscript-platform-backups"


def status_of(sandbox, scenario):
    sandbox.reset(scenario)
    environment = load_environment("sandbox")
    log = check_backup_log(environment)
    bucket = check_backup_bucket(environment, log=log)
    return environment, log, bucket


def test_healthy_log_and_bucket_agree(sandbox):
    _, log, bucket = status_of(sandbox, "healthy")

    assert log.status is Status.OK, log.summary
    assert log.facts["last_success_age_h"] < 24
    assert bucket.status is Status.OK, bucket.summary
    assert bucket.facts["problems"] == []
    newest = bucket.facts["objects"][0]
    assert newest["key"] == log.facts["successes"][0]["filename"]
    assert newest["size"] == log.facts["successes"][0]["size"]


def test_sandbox_objects_carry_the_workers_metadata(sandbox):
    environment, _, bucket = status_of(sandbox, "healthy")
    client = R2Client(environment)
    try:
        head = client.head(BUCKET, bucket.facts["objects"][0]["key"])
    finally:
        client.close()

    assert head["content_type"] == "application/gzip"
    assert head["metadata"]["backuptype"] == "daily"
    assert int(head["metadata"]["compressedsize"]) == head["size"]
    assert int(head["metadata"]["originalsize"]) > head["size"]


@pytest.mark.parametrize(
    ("scenario", "rule", "status", "cause"),
    [
        ("backup-failed", "failed", Status.FAIL, "backup-failed"),
        ("backups-stale", "none-in-36h", Status.FAIL, "backups-stale"),
        ("backup-oversized", "size-over-2x", Status.WARN, "backup-oversized"),
    ],
)
def test_alert_rules_name_the_scenarios_fault(sandbox, scenario, rule, status, cause):
    environment, log, bucket = status_of(sandbox, scenario)

    verdict = diagnose_backups([log, bucket], environment=environment)

    assert log.facts["rule"] == rule
    assert log.status is status
    assert verdict.cause == cause


def test_failed_backup_leaves_no_object_and_the_error_is_shown(sandbox):
    _, log, bucket = status_of(sandbox, "backup-failed")

    assert "R2 put failed" in log.summary
    assert log.evidence[0]["status"] == "failed"
    assert not any(o["key"].endswith("-failed") for o in bucket.facts["objects"])


def test_bucket_check_flags_a_logged_backup_without_its_object(sandbox):
    environment, log, bucket = status_of(sandbox, "healthy")
    key = bucket.facts["objects"][2]["key"]
    client = R2Client(environment)
    try:
        client._s3.delete_object(Bucket=BUCKET, Key=key)
        again = check_backup_bucket(environment, log=log)
    finally:
        client.close()
        sandbox.reset("healthy")

    assert again.status is Status.WARN
    assert again.facts["problems"] == [
        {"key": key, "problem": "logged as a success, no object"}
    ]


def test_unreachable_bucket_is_an_unknown_finding(sandbox, monkeypatch):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    broken = environment.__class__(
        **{**environment.__dict__, "r2_endpoint_url": "http://127.0.0.1:9"}
    )

    finding = check_backup_bucket(broken)

    assert finding.status is Status.UNKNOWN
    assert "r2" in finding.summary


def test_pick_backup_takes_the_newest_old_enough_or_the_named_one(sandbox):
    _, _, bucket = status_of(sandbox, "healthy")
    objects = bucket.facts["objects"]

    week_old = pick_backup(bucket, age_days=7)

    assert week_old == next(o["key"] for o in objects if o["age_h"] >= 7 * 24)
    assert pick_backup(bucket, key=objects[3]["key"]) == objects[3]["key"]
    assert pick_backup(bucket, key="backup-1999-01-01-915148800000.sql.gz") == ""
    assert pick_backup(bucket, age_days=365) == ""


def test_restore_steps_pass_on_a_sandbox_backup(sandbox, tmp_path):
    environment, log, bucket = status_of(sandbox, "healthy")
    key = pick_backup(bucket, age_days=7)

    restored = restore_backup(environment, key=key, folder=tmp_path, progress=False)
    counts = check_restored_counts(restored, log=log)
    integrity = check_restored_integrity(restored)
    window = check_loss_window(restored, incident_time="")
    verdict = diagnose_restore([restored, counts, integrity], runbook="restore")

    assert restored.status is Status.OK, restored.summary
    assert "logged stats" in counts.summary
    assert integrity.status is Status.OK, integrity.summary
    assert 7 * 24 <= window.facts["hours"] < 9 * 24
    assert verdict.cause == "healthy"


def test_a_truncated_backup_is_unreadable_and_nothing_is_checked(sandbox, tmp_path):
    environment, _, bucket = status_of(sandbox, "healthy")
    key = "backup-2026-01-01-1767236400417.sql.gz"
    client = R2Client(environment)
    try:
        whole = client.get_bytes(BUCKET, bucket.facts["objects"][0]["key"])
        text = gzip.decompress(whole)
        broken = gzip.compress(text[: len(text) // 2])
        client.put_bytes(
            BUCKET, key, broken, content_type="application/gzip", metadata={}
        )
        restored = restore_backup(environment, key=key, folder=tmp_path)
    finally:
        client.close()
        sandbox.reset("healthy")
    counts = check_restored_counts(restored)
    verdict = diagnose_restore(
        [restored, counts], runbook="monthly-backup-verification"
    )

    assert restored.status is Status.FAIL
    assert "cannot be restored" in restored.summary
    assert counts.status is Status.UNKNOWN
    assert verdict.cause == "backup-unreadable"
    assert not (tmp_path / "restored.sqlite").exists()


def test_no_fitting_backup_is_a_missing_backup():
    restored = restore_backup(None, key="")  # type: ignore[arg-type]

    assert diagnose_restore([restored]).cause == "backup-missing"


def test_backups_verdict_is_inconclusive_when_nothing_could_be_read():
    log = Finding("backup-log", Status.UNKNOWN, "d1 unreachable")
    bucket = Finding("backup-bucket", Status.UNKNOWN, "r2 unreachable")
    environment = load_environment("sandbox")

    verdict = diagnose_backups([log, bucket], environment=environment)

    assert verdict.cause == "inconclusive"
    assert verdict.gated_step is None


def manual_plan(sandbox, scenario="backup-failed", **kwargs):
    environment, log, bucket = status_of(sandbox, scenario)
    verdict = diagnose_backups([log, bucket], environment=environment)
    return environment, plan_manual_backup(environment, verdict, **kwargs)


def test_healthy_backups_plan_no_manual_backup_unless_asked(sandbox):
    _, plan = manual_plan(sandbox, "healthy")
    assert plan.is_noop
    _, wanted = manual_plan(sandbox, "healthy", wanted=True)
    assert wanted.action == "manual-backup"


def test_manual_backup_dry_run_and_wrong_phrase_change_nothing(sandbox):
    environment, plan = manual_plan(sandbox)
    key = plan.before["key"]

    dry = apply_action(plan, environment=environment)
    wrong = apply_action(plan, environment=environment, apply=True, confirm="yes")

    assert dry.outcome == "dry-run"
    assert wrong.outcome == "refused"
    client = R2Client(environment)
    try:
        assert client.head(BUCKET, key) is None
    finally:
        client.close()


def test_manual_backup_uploads_a_restorable_dump_and_logs_it(sandbox, tmp_path):
    moment = datetime.datetime.now(datetime.UTC)
    environment, plan = manual_plan(sandbox, now=moment)
    key = plan.before["key"]
    assert plan.confirm_phrase == manual_backup_phrase(environment)

    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    log = check_backup_log(environment)
    restored = restore_backup(environment, key=key, folder=tmp_path)
    counts = check_restored_counts(restored, log=log)
    again = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    sandbox.reset("healthy")

    assert result.outcome == "applied", result.detail
    assert log.status is Status.OK and log.evidence[0]["filename"] == key
    assert counts.status is Status.OK, counts.summary
    assert "logged stats" in counts.summary
    assert again.outcome == "refused" and "stale" in again.detail


def test_manual_backup_reads_every_table_through_d1(sandbox):
    environment, plan = manual_plan(sandbox)
    apply_action(plan, environment=environment, apply=True, confirm=plan.confirm_phrase)
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(
            "SELECT stats FROM backup_logs WHERE filename = ?", [plan.before["key"]]
        )[0]["results"]
        users = client.d1_query("SELECT COUNT(*) AS n FROM users")[0]["results"]
    finally:
        client.close()
        sandbox.reset("healthy")

    assert f'"name": "users", "rows": {users[0]["n"]}' in rows[0]["stats"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("backup_key", "../etc/passwd", "backup_key: got '../etc/passwd'"),
        ("age_days", 400, "age_days: got 400"),
        ("incident_time", "2026-13-01T00:00:00Z", "incident_time: got"),
    ],
)
def test_bad_backup_parameters_name_the_parameter(name, value, expected):
    assert expected in (check_value(name, value) or "")


def test_restore_run_with_a_bad_key_stops_before_any_kernel(tmp_path):
    from opslib import ParameterError

    with pytest.raises(ParameterError, match="backup_key"):
        run_notebook(
            "restore",
            parameters={"incident_id": "INC-1", "backup_key": "latest"},
            environment="sandbox",
            records_dir=tmp_path,
        )
    assert not list(tmp_path.rglob("*.ipynb"))


def test_restore_runs_headless_with_a_key_and_incident_time(sandbox, tmp_path):
    _, _, bucket = status_of(sandbox, "healthy")
    key = bucket.facts["objects"][1]["key"]

    record = run_notebook(
        "restore",
        parameters={
            "incident_id": "INC-7",
            "backup_key": key,
            "incident_time": "2030-01-01T00:00:00Z",
        },
        environment="sandbox",
        records_dir=tmp_path,
    )

    assert record.status == "succeeded", record.error
    assert record.verdict["cause"] == "healthy"
    window = next(
        f for f in record.verdict["findings"] if f["name"] == "data-loss-window"
    )
    assert window["status"] == "warn"
    assert key in record.record_path.read_text()


def load_plan(sandbox, tmp_path, *, wanted=True, environment=None):
    sandbox_env, log, bucket = status_of(sandbox, "healthy")
    environment = environment or sandbox_env
    key = pick_backup(bucket, age_days=7)
    restored = restore_backup(sandbox_env, key=key, folder=tmp_path)
    checks = [restored, check_restored_counts(restored, log=log)]
    verdict = diagnose_restore(checks + [check_restored_integrity(restored)])
    return (
        sandbox_env,
        restored,
        plan_restore_into(environment, restored, verdict, wanted=wanted),
    )


def test_load_into_d1_is_planned_only_when_asked_and_never_for_production(
    sandbox, tmp_path
):
    _, _, unasked = load_plan(sandbox, tmp_path, wanted=False)
    environment = load_environment("sandbox")
    production = environment.__class__(**{**environment.__dict__, "name": "production"})
    _, _, refused = load_plan(sandbox, tmp_path, environment=production)

    assert unasked.is_noop and "not asked" in unasked.summary
    assert refused.is_noop and "never into production" in refused.summary


def test_load_replaces_the_tables_after_a_fresh_backup(sandbox, tmp_path):
    environment, restored, plan = load_plan(sandbox, tmp_path)
    copy = restored.facts["report"]
    logged_before = len(check_backup_log(environment).facts["successes"])

    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    log_after = check_backup_log(environment)
    fresh = result.response["pre_restore_backup"]["key"]
    client = R2Client(environment)
    try:
        head = client.head(BUCKET, fresh)
    finally:
        client.close()
    users_now = plan_counts(environment, "users")
    sandbox.reset("healthy")

    assert result.outcome == "applied", result.detail
    assert plan.before["counts"]["users"] > users_now == copy.inserts["users"]
    assert head["metadata"]["backuptype"] == "pre-restore"
    assert len(log_after.facts["successes"]) == logged_before + 1
    assert fresh in result.detail


def test_load_is_refused_when_the_target_changed_since_the_plan(sandbox, tmp_path):
    environment, _, plan = load_plan(sandbox, tmp_path)
    client = CloudflareClient(environment)
    try:
        client.d1_query(
            "DELETE FROM audit_log WHERE id = (SELECT id FROM audit_log LIMIT 1)",
            read_only=False,
        )
    finally:
        client.close()

    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    sandbox.reset("healthy")

    assert result.outcome == "refused"
    assert "changed since the plan" in result.detail


def plan_counts(environment, table):
    client = CloudflareClient(environment)
    try:
        return client.d1_query(f"SELECT COUNT(*) AS n FROM {table}")[0]["results"][0][
            "n"
        ]
    finally:
        client.close()


def test_headless_manual_backup_applies_with_the_phrase_of_an_earlier_run(
    sandbox, tmp_path
):
    sandbox.reset("backups-stale")
    first = run_notebook(
        "backups",
        parameters={"incident_id": "CHK-2"},
        environment="sandbox",
        records_dir=tmp_path,
    )
    plan = next(a for a in first.sidecar["actions"] if a["kind"] == "plan")

    second = run_notebook(
        "backups",
        parameters={
            "incident_id": "CHK-2",
            "apply": True,
            "confirm": plan["confirm_phrase"],
        },
        environment="sandbox",
        records_dir=tmp_path,
    )
    log = check_backup_log(load_environment("sandbox"))
    sandbox.reset("healthy")

    outcome = next(a for a in second.sidecar["actions"] if a["kind"] == "result")
    assert first.verdict["cause"] == "backups-stale"
    assert outcome["outcome"] == "applied", outcome["detail"]
    assert log.facts["rule"] == ""
    assert log.evidence[0]["filename"] == outcome["response"]["key"]
