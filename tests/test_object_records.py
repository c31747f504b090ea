"""Records in object storage: ``--records s3://bucket/prefix`` against a real
S3-compatible server (moto's, as a child process on loopback).

One run of a fixture notebook that prints the storage credentials is shared by
the tests that read it back; the others check what is refused, and when.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import papermill  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner
from papermill.iorw import S3Handler  # type: ignore[import-untyped]
from papermill.s3 import S3  # type: ignore[import-untyped]

from opslib._cli import main
from opslib._config import SECRET_VARIABLES
from opslib._errors import RunError
from opslib._objectrecords import parse_archive, write_record
from opslib._records import RecordQuery, list_records, load_record
from opslib._runner import RunRecord, check_run_request, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "tests" / "notebooks"
BUCKET = "incident-records"
KEY_ID = "AKIA" + secrets.token_hex(8).upper()
SECRET = "storage/canary+" + secrets.token_hex(12)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server as a child process on a free loopback port."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1"]
        + ["-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "moto_server exited at start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _storage_environment(
    monkeypatch: pytest.MonkeyPatch, tmp: Path, endpoint: str
) -> Path:
    """A project root, the AWS variables for the endpoint, a fresh papermill session.

    papermill builds one boto3 session per process from the environment it
    finds then; each test starts with none so its own variables count.
    """
    root = tmp / "project"
    environments = root / "parameters" / "environments"
    environments.mkdir(parents=True)
    shutil.copy(ROOT / "parameters" / "environments" / "sandbox.yaml", environments)
    (root / "notebooks" / "incidents").mkdir(parents=True)
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(environments))
    monkeypatch.setenv("RUNBOOK_OPERATOR", "oncall-7")
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ENDPOINT_URL_S3", "BOTO3_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(S3, "s3_session", (None, None, None))
    return root


def _bucket_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


def _objects(endpoint: str, prefix: str) -> dict[str, str]:
    client = _bucket_client(endpoint)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"]
        .read()
        .decode()
        for item in listed
    }


@pytest.fixture(scope="module")
def stored(
    endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunRecord, list[str], Path]]:
    """One run into s3://incident-records/team/records; papermill's writes noted."""
    _bucket_client(endpoint).create_bucket(Bucket=BUCKET)
    written: list[str] = []
    real_write = S3Handler.write

    def noting_write(buf: str, path: str) -> Any:
        written.append(path)
        return real_write(buf, path)

    with pytest.MonkeyPatch.context() as monkeypatch:
        root = _storage_environment(
            monkeypatch, tmp_path_factory.mktemp("stored"), endpoint
        )
        monkeypatch.setattr(S3Handler, "write", noting_write)
        record = run_notebook(
            NOTEBOOKS / "prints_storage_keys.ipynb",
            parameters={"incident_id": "INC-77"},
            records_dir=f"s3://{BUCKET}/team/records",
        )
        yield record, written, root


@pytest.fixture
def storage(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    _storage_environment(monkeypatch, tmp_path, endpoint)
    yield endpoint


def test_a_run_writes_its_notebook_through_papermill_and_its_sidecar_beside_it(
    stored: tuple[RunRecord, list[str], Path], endpoint: str
) -> None:
    record, written, root = stored
    month = f"{datetime.datetime.now(datetime.UTC):%Y/%m}"
    base = f"team/records/{month}/{record.id}"

    objects = _objects(endpoint, "team/records/")

    assert sorted(objects) == [f"{base}.ipynb", f"{base}.json"]
    assert written == [f"s3://{BUCKET}/{base}.ipynb"]
    assert record.record_path == f"s3://{BUCKET}/{base}.ipynb"
    sidecar = json.loads(objects[f"{base}.json"])
    notebook = json.loads(objects[f"{base}.ipynb"])
    assert sidecar["id"] == record.id and sidecar["incident_id"] == "INC-77"
    assert sidecar["status"] == "succeeded"
    assert sidecar["record_path"] == f"{month}/{record.id}.ipynb"
    assert sidecar["verdict"]["cause"] == "fixture-cause"
    assert notebook["metadata"]["opslib"]["record_id"] == record.id
    assert not (root / "records").exists()


def test_the_stored_record_holds_no_storage_credential(
    stored: tuple[RunRecord, list[str], Path], endpoint: str
) -> None:
    text = "\n".join(_objects(endpoint, "team/records/").values())

    assert "[redacted:AWS_SECRET_ACCESS_KEY]" in text
    assert "[redacted:AWS_ACCESS_KEY_ID]" in text
    assert SECRET not in text and KEY_ID not in text
    assert re.findall(r"storage/canary|AKIA[0-9A-F]{16}", text) == []


def test_records_lists_and_show_reads_the_bucket(
    stored: tuple[RunRecord, list[str], Path], storage: str
) -> None:
    record = stored[0]
    url = f"s3://{BUCKET}/team/records"
    runner = CliRunner()

    listed = runner.invoke(main, ["records", "--records", url])
    filtered = runner.invoke(main, ["records", "--records", url, "--status", "warn"])
    shown = runner.invoke(main, ["show", record.id[:22], "--records", url])

    assert listed.exit_code == 0, listed.output
    assert record.id in listed.output and "fixture-cause" in listed.output
    assert filtered.exit_code == 0 and record.id in filtered.output
    assert shown.exit_code == 0, shown.output
    assert f"record:      {record.id}" in shown.output
    assert "verdict:     warn — cause: fixture-cause" in shown.output
    assert load_record(url, record.id)["incident_id"] == "INC-77"
    assert list_records(f"s3://{BUCKET}/other-team") == []


@pytest.mark.parametrize(
    ("filters", "found"),
    [
        ({"runbook": "prints_storage_keys"}, True),
        ({"status": "warn", "cause": "fixture-cause"}, True),
        ({"status": "failed"}, False),
        ({"incident_id": "INC-77", "words": "stored"}, True),
        ({"incident_id": "INC-78"}, False),
        ({"until": "2020-01-01"}, False),
    ],
)
def test_records_in_the_bucket_are_searched_like_a_local_archive(
    stored: tuple[RunRecord, list[str], Path],
    storage: str,
    filters: dict[str, str],
    found: bool,
) -> None:
    rows = list_records(f"s3://{BUCKET}/team/records", RecordQuery(**filters))

    assert [row["id"] for row in rows] == ([stored[0].id] if found else [])


def test_show_names_the_bucket_when_no_record_matches(
    stored: tuple[RunRecord, list[str], Path], storage: str
) -> None:
    url = f"s3://{BUCKET}/team/records"

    with pytest.raises(RunError, match="most recent: " + stored[0].id):
        load_record(url, "20991231T")


def test_a_stored_record_is_never_written_again(
    stored: tuple[RunRecord, list[str], Path],
    storage: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = stored[0]
    archive = parse_archive(f"s3://{BUCKET}/team/records")
    sidecar = str(record.sidecar["record_path"]).removesuffix(".ipynb") + ".json"
    before = _objects(storage, "team/records/")
    fresh = "2026/12/20261204T000000Z-fresh-0000.ipynb"

    with pytest.raises(RunError, match="exists already; records are never rewritten"):
        write_record(archive, (fresh, "{}"), (sidecar, "{}"))
    assert _objects(storage, "team/records/") == before

    # Even when the look-up misses it, the storage refuses the sidecar's put.
    monkeypatch.setattr("opslib._objectrecords._exists", lambda *args: False)
    with pytest.raises(RunError, match="exists already"):
        write_record(archive, (fresh, "{}"), (sidecar, "{}"))
    after = _objects(storage, "team/records/")
    assert after[f"team/records/{sidecar}"] == before[f"team/records/{sidecar}"]


def _must_not_run(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("papermill must not start a kernel")


@pytest.mark.parametrize(
    ("records_dir", "variables", "expected"),
    [
        (
            "s3://no-such-bucket/records",
            {},
            r"--records: got 's3://no-such-bucket/records', but no bucket "
            r"'no-such-bucket' at http://127\.0\.0\.1:\d+; expected an existing bucket",
        ),
        (
            f"s3://{BUCKET}/records",
            {"AWS_ENDPOINT_URL": "unset"},
            r"neither AWS_ENDPOINT_URL_S3 nor AWS_ENDPOINT_URL is set; expected the "
            r"S3 endpoint",
        ),
        (
            f"s3://{BUCKET}/records",
            {"AWS_ENDPOINT_URL": "closed", "AWS_MAX_ATTEMPTS": "1"},
            r"the storage at http://127\.0\.0\.1:\d+ could not be reached "
            r"\(EndpointConnectionError\); expected an S3 endpoint",
        ),
        ("s3://Bad_Bucket/records", {}, r"--records: got .*, expected s3://BUCKET"),
        (f"s3://{BUCKET}/a/../b", {}, r"--records: got .*, expected s3://BUCKET"),
        ("gs://bucket/records", {}, r"expected a local folder here; an s3://"),
    ],
)
def test_a_bad_archive_is_refused_before_the_kernel_starts(
    storage: str,
    monkeypatch: pytest.MonkeyPatch,
    records_dir: str,
    variables: dict[str, str],
    expected: str,
) -> None:
    _bucket_client(storage).create_bucket(Bucket=BUCKET)
    for name, value in variables.items():
        if value == "unset":
            monkeypatch.delenv(name)
        elif value == "closed":
            monkeypatch.setenv(name, f"http://127.0.0.1:{_free_port()}")
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(papermill, "execute_notebook", _must_not_run)

    with pytest.raises(RunError, match=expected):
        run_notebook(NOTEBOOKS / "ok.ipynb", records_dir=records_dir)
    result = CliRunner().invoke(
        main, ["run", str(NOTEBOOKS / "ok.ipynb"), "--records", records_dir]
    )
    assert result.exit_code == 2
    assert re.search(expected, result.output.replace("\n", " "))
    assert SECRET not in result.output


@pytest.mark.parametrize("runbook", ["undo", "post-incident-report"])
def test_runbooks_reading_records_need_a_local_archive(
    storage: str, runbook: str
) -> None:
    notebook = ROOT / "notebooks" / "procedures" / f"{runbook}.ipynb"

    with pytest.raises(RunError, match=r"reads records \(record_ids?\) from a local"):
        check_run_request(notebook, {}, records_dir=f"s3://{BUCKET}/records")


@pytest.mark.parametrize(
    "command",
    [["reindex"], ["prune", "--keep", "3"], ["site"], ["lab", "--no-browser"]],
)
def test_commands_for_local_archives_refuse_a_bucket_by_name(
    command: list[str],
) -> None:
    result = CliRunner().invoke(main, [*command, "--records", f"s3://{BUCKET}/x"])

    assert result.exit_code == 2, result.output
    assert f"got 's3://{BUCKET}/x', expected a local folder" in result.output


def test_a_batch_writes_each_record_to_the_bucket(storage: str) -> None:
    _bucket_client(storage).create_bucket(Bucket=BUCKET)
    notebooks = [
        str(NOTEBOOKS / name) for name in ("ok.ipynb", "prints_storage_keys.ipynb")
    ]
    runbook = str(Path(sys.executable).parent / "runbook")

    refused = subprocess.run(
        [runbook, "run", *notebooks, "--records", "s3://no-such-bucket/batch"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    ran = subprocess.run(
        [
            runbook,
            "run",
            *notebooks,
            "--jobs",
            "2",
            "--records",
            f"s3://{BUCKET}/batch",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert refused.returncode == 2 and "no bucket 'no-such-bucket'" in refused.stderr
    assert "running" not in refused.stdout
    assert ran.returncode == 0, ran.stdout + ran.stderr
    sidecars = [
        json.loads(text)
        for key, text in _objects(storage, "batch/").items()
        if key.endswith(".json")
    ]
    assert sorted(s["runbook"] for s in sidecars) == ["ok", "prints_storage_keys"]
    assert {s["status"] for s in sidecars} == {"succeeded"}
    assert len(_objects(storage, "batch/")) == 4
