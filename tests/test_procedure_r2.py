"""The r2-recovery procedure on the sandbox: missing files found against D1, copies
accepted only when their SHA-256 is the row's file_hash, the gated re-upload (dry
run, refused, stale, applied and read back) and what stays lost."""

import hashlib

import pytest
from procedure_helpers import result_of, run

import opslib
from opslib import load_environment, run_notebook

RAW = "manuscripts-raw"


def query(env, sql, params=()):
    client = opslib.CloudflareClient(env)
    try:
        return client.d1_query(sql, list(params))[0]["results"]
    finally:
        client.close()


def raw_keys(env):
    r2 = opslib.R2Client(env)
    try:
        return set(r2.list_keys(RAW, limit=10_000))
    finally:
        r2.close()


def rows_of(env, ids):
    marks = ", ".join("?" * len(ids))
    return query(
        env, f"SELECT id, r2_key, file_hash FROM manuscripts WHERE id IN ({marks})", ids
    )


def sha256_at(env, key):
    r2 = opslib.R2Client(env)
    try:
        data = r2.get_bytes(RAW, key)
    finally:
        r2.close()
    return hashlib.sha256(data).hexdigest() if data is not None else None


@pytest.fixture
def deleted(sandbox):
    sandbox.reset("r2-objects-deleted")
    return load_environment("sandbox"), sandbox.truth()["details"]


def test_healthy_sandbox_misses_nothing(sandbox, tmp_path):
    sandbox.reset("healthy")
    record = run("r2-recovery", tmp_path, incident_id="CHG-0")
    assert record.verdict["cause"] == "healthy"
    assert record.verdict["gated_step"] is None
    assert result_of(record)["outcome"] == "not-needed"


def test_dry_run_finds_what_is_missing_and_changes_nothing(deleted, tmp_path):
    env, truth = deleted
    before = raw_keys(env)
    record = run("r2-recovery", tmp_path, recovery_dir=truth["recovery_dir"])
    result = result_of(record)
    assert result["outcome"] == "dry-run"
    absent = {row["id"] for row in result["plan"]["before"]["absent"]}
    lost = {row["id"] for row in result["plan"]["before"]["lost"]}
    assert absent == set(truth["recoverable"])
    assert lost == set(truth["unrecoverable"])
    assert record.verdict["gated_step"]["confirm"] == (
        "re-upload 5 files to manuscripts-raw in sandbox"
    )
    assert raw_keys(env) == before


def test_without_the_uploaders_folder_one_less_is_recoverable(deleted):
    env, truth = deleted
    missing = opslib.check_missing_objects(env)
    assert {r["id"] for r in missing.facts["missing"]} == set(truth["deleted"])
    sources = opslib.find_recovery_sources(env, missing)
    assert len(sources.facts["recoverable"]) == 4
    assert len(sources.facts["lost"]) == 4


def test_a_copy_with_other_bytes_is_not_used(deleted):
    env, truth = deleted
    missing = opslib.check_missing_objects(env)
    sources = opslib.find_recovery_sources(env, missing, truth["recovery_dir"])
    decoy = {r["id"]: r for r in sources.facts["lost"]}
    assert truth["unrecoverable"][0] in decoy


def test_wrong_phrase_is_refused(deleted, tmp_path):
    env, truth = deleted
    before = raw_keys(env)
    record = run(
        "r2-recovery",
        tmp_path,
        recovery_dir=truth["recovery_dir"],
        apply=True,
        confirm="re-upload everything in sandbox",
    )
    assert result_of(record)["outcome"] == "refused"
    assert raw_keys(env) == before


def test_applied_reupload_restores_the_files_and_cannot_be_undone(deleted, tmp_path):
    env, truth = deleted
    phrase = "re-upload 5 files to manuscripts-raw in sandbox"
    record = run(
        "r2-recovery",
        tmp_path,
        recovery_dir=truth["recovery_dir"],
        apply=True,
        confirm=phrase,
    )
    result = result_of(record)
    assert result["outcome"] == "applied"
    assert result["after"]["status"] == "ok"
    for row in rows_of(env, truth["recoverable"]):
        assert sha256_at(env, row["r2_key"]) == row["file_hash"]
    for row in rows_of(env, truth["unrecoverable"]):
        assert sha256_at(env, row["r2_key"]) is None
    assert "3 files cannot be recovered" in record.verdict["next_action"]

    undo = run("undo", tmp_path, record_id=record.id)
    assert undo.verdict["cause"] == "inconclusive"
    assert "r2-reupload cannot be undone" in undo.verdict["summary"]

    again = run("r2-recovery", tmp_path, recovery_dir=truth["recovery_dir"])
    assert again.verdict["cause"] == "unrecoverable"
    assert again.verdict["status"] == "fail"


def test_a_key_written_since_the_plan_refuses_it(deleted):
    env, truth = deleted
    missing = opslib.check_missing_objects(env)
    sources = opslib.find_recovery_sources(env, missing, truth["recovery_dir"])
    plan = opslib.plan_reupload(env, sources)
    key = plan.before["absent"][0]["r2_key"]
    r2 = opslib.R2Client(env)
    try:
        r2.put_bytes(
            RAW, key, b"uploaded again", content_type="text/plain", metadata={}
        )
    finally:
        r2.close()
    result = opslib.apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "exist again" in result.detail
    others = [r["r2_key"] for r in plan.before["absent"][1:]]
    assert not raw_keys(env) & set(others)


def test_a_missing_recovery_dir_stops_before_the_kernel(sandbox, tmp_path):
    with pytest.raises(opslib.ParameterError, match="recovery_dir: got"):
        run_notebook(
            "r2-recovery",
            parameters={"recovery_dir": str(tmp_path / "no-such-folder")},
            environment="sandbox",
            records_dir=tmp_path,
        )
