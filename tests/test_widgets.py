"""The gate widget: every click passes the gate and is archived as a record that
``runbook records``, ``runbook show`` and ``runbook undo`` read like a headless one."""

import dataclasses
import json
from pathlib import Path

import pytest
from test_cli import runbook as run_runbook

import opslib._actions
from opslib import (
    ActionPlan,
    CloudflareClient,
    gate_widget,
    load_environment,
    plan_d1_write,
)
from opslib._records import list_records, load_record
from opslib._timeline import record_events

ROOT = Path(__file__).parent.parent
EMAIL = "prodtest2@example.com"
SQL = f"UPDATE users SET role = 'publisher' WHERE email = '{EMAIL}'"


@pytest.fixture
def env(sandbox, monkeypatch, tmp_path):
    sandbox.reset("healthy")
    monkeypatch.setenv("RUNBOOK_RECORDS", str(tmp_path))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    return load_environment("sandbox")


def user(env):
    client = CloudflareClient(env)
    try:
        sql = "SELECT * FROM users WHERE email = ?"
        return client.d1_query(sql, [EMAIL])[0]["results"][0]
    finally:
        client.close()


def click(box, typed):
    box.children[1].value = typed
    box.children[2].click()


def runbook(*args):
    return run_runbook(*args, check_code=0).stdout


def gate_result(sidecar):
    return [a for a in sidecar["actions"] if a["kind"] == "result"]


def test_noop_plan_disables_the_button(env, tmp_path):
    plan = ActionPlan("none", env.name, env.worker_name, "nothing to do")
    box = gate_widget(plan, environment=env)
    assert box.children[2].disabled is True
    assert not list(tmp_path.rglob("*.json"))


def test_wrong_phrase_is_refused_recorded_and_changes_nothing(env, tmp_path):
    before = user(env)
    plan = plan_d1_write(env, SQL)
    box = gate_widget(plan, environment=env, incident_id="CHG-7")
    click(box, "update them all")

    assert [r.outcome for r in box.results] == ["refused"]
    assert user(env) == before
    assert not (tmp_path / "before-images").exists()
    [record] = box.records
    assert record.id in box.children[4].value
    sidecar = load_record(tmp_path, record.id)
    [result] = gate_result(sidecar)
    assert result["outcome"] == "refused"
    assert "does not match" in result["detail"]
    assert sidecar["status"] == "succeeded"
    assert sidecar["source"] == "jupyterlab-gate"
    assert sidecar["incident_id"] == "CHG-7"
    assert sidecar["environment"] == "sandbox"
    assert sidecar["operator"] == result["operator"] != ""
    assert sidecar["started_at"] <= sidecar["finished_at"]
    assert sidecar["parameters"]["confirm"] == "update them all"
    [row] = list_records(tmp_path)
    assert row["id"] == record.id and row["gate"] == "d1-write:refused"
    assert record.record_path.is_file()
    events = record_events(tmp_path, sidecar)
    assert [e.status for e in events if e.kind == "action"] == ["refused"]


def test_applied_click_is_recorded_and_undone_by_runbook_undo(env, tmp_path):
    before = user(env)
    plan = plan_d1_write(env, SQL)
    box = gate_widget(plan, environment=env)
    click(box, plan.confirm_phrase)

    assert [r.outcome for r in box.results] == ["applied"]
    assert user(env)["role"] == "publisher"
    [record] = box.records
    [result] = gate_result(load_record(tmp_path, record.id))
    assert result["outcome"] == "applied" and result["undo"]
    [row] = result["plan"]["before"]["rows"]
    assert row["role"] == "author"
    assert row["password_hash"] != before["password_hash"]
    images = list((tmp_path / "before-images").iterdir())
    assert images and all(p.stat().st_mode & 0o077 == 0 for p in images)
    for path in tmp_path.rglob("*"):
        if path.is_file() and "before-images" not in path.parts:
            text = path.read_bytes().decode("utf-8", "replace")  # the index too
            assert before["password_hash"] not in text, path

    listed = runbook("records", "--records", str(tmp_path))
    assert record.id in listed and "d1-write:applied" in listed
    shown = runbook("show", record.id, "--records", str(tmp_path))
    assert "gate:        d1-write: APPLIED" in shown
    phrase = f"undo d1-write of record {record.id} in sandbox"
    undone = runbook(
        "undo", record.id, "--apply", "--confirm", phrase, "--records", str(tmp_path)
    )
    assert "APPLIED" in undone
    assert user(env) == before


def test_the_record_names_the_notebook_the_server_started_the_kernel_for(
    env, tmp_path, monkeypatch
):
    notebook = ROOT / "notebooks" / "procedures" / "database.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    box = gate_widget(plan_d1_write(env, SQL), environment=env)
    click(box, "no")
    sidecar = load_record(tmp_path, box.records[0].id)
    assert sidecar["runbook"] == "database"
    assert sidecar["notebook"] == "notebooks/procedures/database.ipynb"
    assert "-database-" in sidecar["id"]


def test_nothing_is_applied_when_no_record_can_be_written(env, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RUNBOOK_RECORDS", str(blocker / "records"))
    before = user(env)
    plan = plan_d1_write(env, SQL)
    box = gate_widget(plan, environment=env)
    click(box, plan.confirm_phrase)
    assert box.results == [] and box.records == []
    assert user(env) == before
    assert "nothing applied" in box.children[4].value


def test_a_gate_that_raises_is_recorded_as_failed(env, tmp_path, monkeypatch):
    def broken_applier(plan, environment, operator):
        raise RuntimeError("the applier broke")

    monkeypatch.setitem(opslib._actions._APPLIERS, "broken", broken_applier)
    plan = dataclasses.replace(
        ActionPlan("none", env.name, env.worker_name, "an applier that raises"),
        action="broken",
        confirm_phrase="do it in sandbox",
    )
    box = gate_widget(plan, environment=env)
    click(box, "do it in sandbox")
    assert box.results == []
    sidecar = load_record(tmp_path, box.records[0].id)
    assert sidecar["status"] == "failed"
    assert sidecar["error"]["ename"] == "RuntimeError"
    assert sidecar["error"]["cell_index"] == 2
    assert json.dumps(sidecar["actions"]).count('"kind": "plan"') == 1
