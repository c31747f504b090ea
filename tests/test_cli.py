"""The runbook command, in-process for usage errors and as a real process end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from procedure_helpers import live_version

import opslib._errors as opslib_errors
from opslib import VERDICT_MIME, CloudflareClient, load_environment, plan_d1_write
from opslib._cli import main

BIN = Path(sys.executable).parent
ROOT = Path(__file__).parent.parent
VERBS = [
    "run",
    "records",
    "show",
    "list",
    "drill",
    "sandbox",
    "undo",
    "lab",
    "reindex",
    "prune",
]


def runbook(*args, check_code=None):
    done = subprocess.run(
        [str(BIN / "runbook"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=300,
    )
    if check_code is not None:
        assert done.returncode == check_code, done.stdout + done.stderr
    return done


def files_under(folder):
    return [p for p in Path(folder).rglob("*") if p.is_file()]


def test_help_lists_every_verb():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert verb in result.output


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_explains_itself(verb):
    result = CliRunner().invoke(main, [verb, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "incident", "INC-1"], "unknown parameter 'incident'"),
        (["-p", "apply", "maybe"], "apply"),
        (["-p", "incident_id", ""], "incident_id"),
        (["-p", "incident_id", 'INC"1\nrm -rf /'], "incident_id"),
        (["-p", "lookback", "6 hours"], "lookback"),
        (["-p", "paths", "manuscripts"], "paths"),
        (["--env", "prod"], "prod"),
    ],
)
def test_bad_parameters_exit_2_and_write_nothing(tmp_path, args, message):
    records = tmp_path / "records"
    result = CliRunner().invoke(
        main, ["run", "api-down", "--records", str(records), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not records.exists() or files_under(records) == []


def test_unknown_runbook_exits_2():
    result = CliRunner().invoke(main, ["run", "no-such-runbook"])
    assert result.exit_code == 2
    assert "api-down" in result.output


def test_drill_needs_a_scenario_or_all():
    assert CliRunner().invoke(main, ["drill"]).exit_code == 2
    assert CliRunner().invoke(main, ["drill", "gremlins"]).exit_code == 2


@pytest.fixture()
def bad_deployment(sandbox):
    sandbox.reset("bad-deployment")
    return sandbox.truth()["details"]


def test_run_prints_verdict_and_archives_a_scrubbed_record(
    bad_deployment, sandbox_token, tmp_path
):
    done = runbook(
        "run",
        "api-down",
        "-p",
        "incident_id",
        "INC-CLI-1",
        "--records",
        str(tmp_path),
        check_code=0,
    )
    assert "bad-deployment" in done.stdout
    assert bad_deployment["good_version"] in done.stdout
    sidecars = list(tmp_path.rglob("*-api-down-INC-CLI-1-*.json"))
    assert len(sidecars) == 1
    sidecar = json.loads(sidecars[0].read_text())
    assert sidecar["status"] == "succeeded"
    assert sidecar["verdict"]["cause"] == "bad-deployment"
    assert str(sidecar["record_path"]) in done.stdout
    record = nbformat.read(sidecars[0].with_suffix(".ipynb"), as_version=4)
    assert record.metadata["opslib"]["verdict"]["cause"] == "bad-deployment"
    for path in files_under(tmp_path):
        assert sandbox_token not in path.read_text(errors="replace"), path


def test_rollback_applied_from_the_command_line_heals_the_api(bad_deployment, tmp_path):
    phrase = (
        f"rollback manuscript-upload-api to {bad_deployment['good_version']} in sandbox"
    )
    runbook(
        "run",
        "api-down",
        "-p",
        "incident_id",
        "INC-CLI-2",
        "-p",
        "apply",
        "true",
        "-p",
        "confirm",
        phrase,
        "--records",
        str(tmp_path),
        check_code=0,
    )
    sidecar = json.loads(next(tmp_path.rglob("*.json")).read_text())
    result = [a for a in sidecar["actions"] if a.get("kind") == "result"][-1]
    assert result["outcome"] == "applied"
    assert result["after"]["status"] == "ok"
    assert live_version() == bad_deployment["good_version"]


def test_wrong_confirm_phrase_exits_3_and_changes_nothing(bad_deployment, tmp_path):
    runbook(
        "run",
        "api-down",
        "-p",
        "apply",
        "true",
        "-p",
        "confirm",
        "rollback please",
        "--records",
        str(tmp_path),
        check_code=3,
    )
    assert live_version() == bad_deployment["bad_version"]


def test_fail_on_verdict_exits_4_for_a_failing_verdict(bad_deployment, tmp_path):
    runbook(
        "run", "api-down", "--fail-on-verdict", "--records", str(tmp_path), check_code=4
    )


def test_records_and_show_read_back_a_run(bad_deployment, tmp_path):
    runbook(
        "run",
        "api-down",
        "-p",
        "incident_id",
        "INC-CLI-3",
        "--records",
        str(tmp_path),
        check_code=0,
    )
    listing = runbook("records", "--records", str(tmp_path), check_code=0).stdout
    record_id = listing.split()[0]
    assert "INC-CLI-3" in record_id
    shown = runbook(
        "show", record_id[:24], "--records", str(tmp_path), check_code=0
    ).stdout
    assert "bad-deployment" in shown


def test_notebook_runs_under_plain_papermill(bad_deployment, tmp_path):
    out = tmp_path / "out.ipynb"
    subprocess.run(
        [
            str(BIN / "papermill"),
            str(ROOT / "notebooks/incidents/01-api-down.ipynb"),
            str(out),
            "-p",
            "incident_id",
            "INC-PM",
            "--no-progress-bar",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    bundles = [
        o.get("data", {})
        for c in nbformat.read(out, as_version=4).cells
        for o in c.get("outputs", [])
    ]
    verdicts = [b[VERDICT_MIME] for b in bundles if VERDICT_MIME in b]
    assert verdicts[-1]["cause"] == "bad-deployment"


def test_parameter_given_twice_exits_2(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "run",
            "api-down",
            "--records",
            str(tmp_path),
            "-p",
            "incident_id",
            "A",
            "-p",
            "incident_id",
            "B",
        ],
    )
    assert result.exit_code == 2
    assert "incident_id: given 2 times with -p" in result.output


def test_operator_with_a_newline_exits_2(tmp_path):
    result = CliRunner().invoke(
        main, ["run", "api-down", "--records", str(tmp_path), "--operator", "a\nb"]
    )
    assert result.exit_code == 2
    assert "--operator" in result.output


def test_list_shows_procedures_beside_incidents():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    assert "api-down  (incidents/01-api-down.ipynb)" in result.output
    assert "database  (procedures/database.ipynb)" in result.output
    assert "undo  (procedures/undo.ipynb)" in result.output


@pytest.mark.parametrize(
    ("args", "environment", "named"),
    [([], "sandbox", False), (["--env", "sandbox"], "sandbox", True)],
)
def test_run_tells_the_runner_whether_env_was_named(
    monkeypatch, tmp_path, args, environment, named
):
    seen = {}

    def fake_run(notebook, **kwargs):
        seen.update(kwargs)
        raise opslib_errors.RunError("stop here")

    monkeypatch.setattr("opslib._runner.run_notebook", fake_run)
    result = CliRunner().invoke(
        main, ["run", "database", *args, "--records", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert seen["environment"] == environment
    assert seen["named_environment"] is named


def test_undo_from_the_command_line_restores_a_write(sandbox, tmp_path):
    sandbox.reset("healthy")
    sql = "UPDATE users SET role = 'publisher' WHERE email = 'prodtest2@example.com'"
    runbook(
        "run",
        "database",
        "-p",
        "sql",
        sql,
        "-p",
        "apply",
        "true",
        "-p",
        "confirm",
        plan_d1_write(load_environment("sandbox"), sql).confirm_phrase,
        "--records",
        str(tmp_path),
        check_code=0,
    )
    record_id = json.loads(next(tmp_path.rglob("*-database-*.json")).read_text())["id"]
    dry = runbook("undo", record_id[:20], "--records", str(tmp_path), check_code=0)
    assert "DRY RUN" in dry.stdout
    phrase = f"undo d1-write of record {record_id} in sandbox"
    done = runbook(
        "undo",
        record_id,
        "--apply",
        "--confirm",
        phrase,
        "--records",
        str(tmp_path),
        check_code=0,
    )
    assert "APPLIED" in done.stdout
    client = CloudflareClient(load_environment("sandbox"))
    try:
        rows = client.d1_query(
            "SELECT role FROM users WHERE email = 'prodtest2@example.com'"
        )[0]["results"]
    finally:
        client.close()
    assert rows == [{"role": "author"}]


def test_run_with_a_missing_environments_folder_names_it_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone" / "environments"
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(missing))
    result = CliRunner().invoke(
        main,
        ["run", "api-down", "-p", "incident_id", "INC-1", "--records", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert not isinstance(result.exception, opslib_errors.ConfigError)
    assert "RUNBOOK_ENVIRONMENTS" in result.output and str(missing) in result.output
