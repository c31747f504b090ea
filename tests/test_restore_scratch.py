"""A restore leaves no scratch folder behind once the run is done, unless the
user asked to keep the copy; each test runs with a temp folder of its own."""

import gzip
import os
import tempfile

import pytest

from opslib import (
    R2Client,
    Status,
    check_backup_bucket,
    check_backup_log,
    check_restored_integrity,
    clean_up_restore,
    load_environment,
    pick_backup,
    restore_backup,
    run_notebook,
)
from opslib._scratch import SCRATCH_VARIABLE, make_scratch, run_scratch_root

BUCKET = "manuscript-platform-backups"


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temp folder for this test alone, for this process and its kernels."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv(SCRATCH_VARIABLE, raising=False)
    assert tempfile.gettempdir() == str(folder)
    return folder


def listing(folder):
    return sorted(os.listdir(folder))


def newest_key(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    bucket = check_backup_bucket(environment, log=check_backup_log(environment))
    return environment, pick_backup(bucket)


def test_a_checked_restore_leaves_no_folder_after_its_last_step(sandbox, private_tmp):
    environment, key = newest_key(sandbox)
    before = listing(private_tmp)

    restored = restore_backup(environment, key=key, progress=False)
    during = listing(private_tmp)
    integrity = check_restored_integrity(restored)
    cleaned = clean_up_restore(restored)

    assert restored.status is Status.OK, restored.summary
    assert integrity.status is Status.OK, integrity.summary
    assert [name for name in during if name not in before] != []
    assert cleaned.facts["kept"] is False
    assert listing(private_tmp) == before


def test_a_backup_that_cannot_be_restored_leaves_no_folder(sandbox, private_tmp):
    environment, key = newest_key(sandbox)
    broken_key = "backup-2026-01-01-1767236400417.sql.gz"
    client = R2Client(environment)
    try:
        text = gzip.decompress(client.get_bytes(BUCKET, key))
        client.put_bytes(
            BUCKET,
            broken_key,
            gzip.compress(text[: len(text) // 2]),
            content_type="application/gzip",
            metadata={},
        )
        before = listing(private_tmp)
        restored = restore_backup(environment, key=broken_key, progress=False)
    finally:
        client.close()
        sandbox.reset("healthy")

    assert restored.status is Status.FAIL
    assert listing(private_tmp) == before


def test_an_unreachable_bucket_leaves_no_folder(sandbox, private_tmp):
    environment, key = newest_key(sandbox)
    broken = environment.__class__(
        **{**environment.__dict__, "r2_endpoint_url": "http://127.0.0.1:9"}
    )
    before = listing(private_tmp)

    restored = restore_backup(broken, key=key, progress=False)

    assert restored.status is Status.UNKNOWN
    assert listing(private_tmp) == before


def test_a_kept_copy_stays_and_the_findings_say_where(sandbox, private_tmp):
    environment, key = newest_key(sandbox)
    before = listing(private_tmp)

    restored = restore_backup(environment, key=key, keep=True, progress=False)
    cleaned = clean_up_restore(restored)

    copy = cleaned.facts["copy"]
    assert cleaned.facts["kept"] is True
    assert os.path.isfile(copy)
    assert copy in cleaned.summary
    assert "kept after the run" in restored.summary
    assert str(os.path.dirname(copy)) in restored.summary
    assert len(listing(private_tmp)) == len(before) + 1


def test_the_runs_scratch_root_goes_even_when_the_run_fails(private_tmp):
    before = listing(private_tmp)

    with pytest.raises(RuntimeError), run_scratch_root() as root:
        folder = make_scratch("runbook-restore-")
        (folder / "restored.sqlite").write_bytes(b"copy")
        assert folder.parent == root
        raise RuntimeError("a cell failed")

    assert listing(private_tmp) == before
    assert SCRATCH_VARIABLE not in os.environ


def test_a_headless_restore_run_leaves_no_folder(sandbox, private_tmp, tmp_path):
    _, key = newest_key(sandbox)
    before = listing(private_tmp)

    record = run_notebook(
        "restore",
        parameters={"incident_id": "INC-8", "backup_key": key},
        environment="sandbox",
        records_dir=tmp_path / "records",
    )

    assert record.status == "succeeded", record.error
    assert record.verdict["cause"] == "healthy"
    assert "scratch copy removed" in record.record_path.read_text()
    assert listing(private_tmp) == before
