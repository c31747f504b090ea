"""Several runbooks in one command: `runbook run A B C` and `runbook run --all GROUP`."""

import datetime
import json
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from opslib._batch import (
    NOT_BLIND,
    batch_exit_code,
    batch_id,
    plan_batch,
    select_group,
)
from opslib._cli import main
from opslib._errors import ParameterError
from opslib._notebook import find_notebooks_dir, runbook_name
from opslib._records import list_records

NOTEBOOKS = Path(__file__).parent / "notebooks"
STARTED = datetime.datetime(2026, 12, 4, 22, 15, 3, tzinfo=datetime.UTC)


def plan(notebooks, parameters, raw=None):
    return plan_batch(
        notebooks,
        parameters,
        raw=frozenset(parameters) if raw is None else raw,
        environment="sandbox",
        started=STARTED,
    )


def sidecars(folder):
    return {
        json.loads(path.read_text())["runbook"]: json.loads(path.read_text())
        for path in Path(folder).rglob("*.json")
    }


def test_all_incidents_is_every_incident_notebook():
    names = [runbook_name(path) for path in select_group("incidents")]
    on_disk = sorted((find_notebooks_dir() / "incidents").glob("*.ipynb"))
    assert names == [runbook_name(path) for path in on_disk]
    assert "api-down" in names and len(names) == len(on_disk)


def test_all_procedures_leaves_out_those_that_need_a_target():
    procedures = {p.stem for p in (find_notebooks_dir() / "procedures").glob("*.ipynb")}
    assert set(NOT_BLIND) <= procedures  # every exclusion names a real procedure
    chosen = {runbook_name(path) for path in select_group("procedures")}
    assert chosen == procedures - set(NOT_BLIND)


def test_unknown_group_names_the_groups():
    with pytest.raises(ParameterError, match="incidents, procedures"):
        select_group("everything")


def test_parameter_goes_to_each_runbook_that_declares_it():
    planned = dict(plan(["api-down", "checklist-weekly"], {"lookback": "2h"}))
    by_name = {runbook_name(path): given for path, given in planned.items()}
    assert by_name["api-down"]["lookback"] == "2h"
    assert "lookback" not in by_name["checklist-weekly"]


def test_runs_without_incident_id_get_the_batch_id_and_a_given_one_is_kept():
    derived = {runbook_name(p): g for p, g in plan(["api-down", "queue-delays"], {})}
    assert {g["incident_id"] for g in derived.values()} == {"BATCH-20261204T221503Z"}
    assert batch_id(STARTED) == "BATCH-20261204T221503Z"
    given = plan(["api-down", "checklist-weekly"], {"incident_id": "INC-7"})
    by_name = {runbook_name(p): g for p, g in given}
    assert by_name["api-down"]["incident_id"] == "INC-7"
    assert "incident_id" not in by_name["checklist-weekly"]  # it declares none


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"apply": "true"}, "apply: got True for a batch run"),
        ({"confirm": "x"}, "confirm: got 'x' for a batch run"),
        ({"lookbak": "2h"}, "lookbak: no runbook of this batch"),
        ({"lookback": "6 hours"}, "api-down: lookback"),
    ],
)
def test_bad_batch_parameters_are_refused_before_anything_runs(parameters, message):
    with pytest.raises(ParameterError, match=message):
        plan(["api-down", "queue-delays"], parameters)


def test_an_example_file_with_the_gate_off_is_accepted():
    values = {"apply": False, "confirm": "", "lookback": "6h"}  # as -f reads YAML
    planned = plan(["api-down", "queue-delays"], values, raw=frozenset())
    assert all(given["apply"] is False for _, given in planned)
    with pytest.raises(ParameterError, match="apply: got True"):
        plan(["api-down", "queue-delays"], {"apply": True}, raw=frozenset())


def test_a_runbook_named_twice_is_refused():
    with pytest.raises(ParameterError, match="'api-down' named 2 times"):
        plan(["api-down", "01-api-down"], {})


@pytest.mark.parametrize(
    ("codes", "worst"),
    [([0, 0], 0), ([0, 4, 0], 4), ([4, 3, 0], 3), ([3, 1, 4], 1), ([], 0)],
)
def test_exit_code_is_the_worst_outcome(codes, worst):
    assert batch_exit_code(codes) == worst


def test_batch_into_an_unknown_kind_of_storage_exits_2_before_running():
    args = ["run", "api-down", "queue-delays", "--records", "gs://bucket/records"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "records_dir: got 'gs://bucket/records'" in result.output
    assert "running" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--all", "incidents", "api-down"],
        ["--all", "everything"],
        ["--all", "incidents", "-p", "apply", "true"],
        ["api-down", "queue-delays", "-p", "lookback", "6 hours"],
    ],
)
def test_bad_batch_command_lines_exit_2_and_write_nothing(tmp_path, args):
    records = tmp_path / "records"
    result = CliRunner().invoke(main, ["run", "--records", str(records), *args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert not records.exists()


def _environment_probe(folder: Path) -> Path:
    """A notebook that shows what its kernel was given and had loaded at start."""
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(
        'incident_id: str = "INC-1"  # the incident this run belongs to'
    )
    parameters.metadata["tags"] = ["parameters"]
    probe = nbformat.v4.new_code_cell(
        "import json, os, sys\n"
        "print(json.dumps({'record_id': os.environ.get('RUNBOOK_RECORD_ID'),\n"
        "    'headless': os.environ.get('RUNBOOK_HEADLESS'), 'cwd': os.getcwd(),\n"
        "    'preloaded': 'pandas' in sys.modules, 'pid': os.getpid(),\n"
        "    'incident_id': incident_id}))"
    )
    nb.cells = [parameters, probe]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    path = folder / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def _printed(sidecar, folder):
    record = nbformat.read(Path(folder) / sidecar["record_path"], as_version=4)
    return json.loads(record.cells[-1].outputs[0]["text"])


def test_batch_runs_each_notebook_into_its_own_record_and_exits_with_the_worst(
    tmp_path,
):
    records = tmp_path / "records"
    probe = _environment_probe(tmp_path)
    copy = tmp_path / "probe-again.ipynb"
    copy.write_text(probe.read_text())
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(NOTEBOOKS / "ok.ipynb"),
            str(NOTEBOOKS / "raises_in_second_cell.ipynb"),
            str(probe),
            str(copy),
            "--jobs",
            "2",
            "--records",
            str(records),
        ],
    )
    assert result.exit_code == 1, result.output  # one run failed: the worst
    found = sidecars(records)
    assert set(found) == {"ok", "raises_in_second_cell", "probe", "probe-again"}
    assert found["ok"]["status"] == "succeeded"
    assert found["ok"]["verdict"]["cause"] == "bad-deployment"
    assert found["raises_in_second_cell"]["status"] == "failed"
    assert found["raises_in_second_cell"]["error"]["ename"] == "ValueError"
    table = result.output.split("\n\n")[-1]
    for name, sidecar in found.items():
        row = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert sidecar["id"] in row and sidecar["status"] in row
        assert (records / sidecar["record_path"]).exists()
    assert "bad-deployment" in table
    index = list_records(records)
    assert sorted(row["id"] for row in index) == sorted(s["id"] for s in found.values())
    # every kernel saw its own run's record id and ran in the project, warm
    seen = [_printed(found[name], records) for name in ("probe", "probe-again")]
    assert [s["record_id"] for s in seen] == [
        found["probe"]["id"],
        found["probe-again"]["id"],
    ]
    assert seen[0]["pid"] != seen[1]["pid"]
    assert all(s["headless"] == "1" and s["preloaded"] for s in seen)
    assert {s["cwd"] for s in seen} == {str(Path(__file__).parent.parent)}
    assert {s["incident_id"] for s in seen} == {found["probe"]["incident_id"]}
    assert found["probe"]["incident_id"].startswith("BATCH-")


@pytest.fixture()
def bad_deployment(sandbox):
    sandbox.reset("bad-deployment")
    return sandbox.truth()["details"]


def test_two_runbooks_against_the_sandbox_find_the_bad_deployment(
    bad_deployment, tmp_path
):
    records = tmp_path / "records"
    args = ["run", "api-down", "high-error-rate", "-p", "incident_id", "INC-B-1"]
    args += ["--records", str(records)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    found = sidecars(records)
    assert found["api-down"]["verdict"]["cause"] == "bad-deployment"
    assert found["api-down"]["incident_id"] == "INC-B-1"
    assert found["high-error-rate"]["incident_id"] == "INC-B-1"
    assert found["high-error-rate"]["verdict"]["status"] != "ok"
    failing = CliRunner().invoke(main, [*args, "--fail-on-verdict"])
    assert failing.exit_code == 4, failing.output


@pytest.mark.parametrize(
    ("notebooks", "parameters", "message"),
    [
        # the same checks as a single run: a value a record hides, pairings
        (
            ["database", "checklist-daily"],
            {"sql": "DELETE FROM users WHERE email = '<email:1f3a9c2e>'"},
            "database: sql: holds <email:1f3a9c2e>",
        ),
        (
            ["database", "checklist-daily"],
            {"sql": "DELETE FROM users WHERE id = 1", "cleanup_test_accounts": "true"},
            "database: sql, cleanup_test_accounts: both given",
        ),
        (["stripe", "api-down"], {"operation": "refund"}, "stripe: charge: empty"),
    ],
)
def test_batch_checks_each_run_as_a_single_run_would(notebooks, parameters, message):
    with pytest.raises(ParameterError, match=message):
        plan(notebooks, parameters)


def test_batch_refuses_a_bucket_to_a_runbook_that_reads_records():
    with pytest.raises(ParameterError, match="post-incident-report: --records"):
        plan_batch(
            ["post-incident-report", "api-down"],
            {},
            raw=frozenset(),
            environment="sandbox",
            started=STARTED,
            records_dir="s3://bucket/records",
        )


def test_an_interrupt_after_every_run_ended_changes_nothing_and_does_not_hang(
    tmp_path, monkeypatch
):
    """Ctrl-C while the kernel template closes, once the pool's workers have
    exited: the batch ends with the runs' own outcome. A stop that waited on the
    exited workers would never return."""
    import threading

    from opslib import _kernelforks

    closing = _kernelforks.KernelTemplate.__exit__

    def interrupted_close(self, *exc):
        closing(self, *exc)
        raise KeyboardInterrupt

    monkeypatch.setattr(_kernelforks.KernelTemplate, "__exit__", interrupted_close)
    records = tmp_path / "records"
    copy = tmp_path / "ok-again.ipynb"
    copy.write_text((NOTEBOOKS / "ok.ipynb").read_text())
    outcome = {}

    def batch():
        outcome["result"] = CliRunner().invoke(
            main,
            ["run", str(NOTEBOOKS / "ok.ipynb"), str(copy), "--records", str(records)],
        )

    worker = threading.Thread(target=batch, daemon=True)
    worker.start()
    worker.join(timeout=180)
    assert not worker.is_alive(), "the batch hung after the interrupt"
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    assert "interrupted after every run ended: that changed nothing" in result.output
    found = sidecars(records)
    assert {s["status"] for s in found.values()} == {"succeeded"}
    table = result.output.split("\n\n")[-1]
    assert all(s["id"] in table for s in found.values())
