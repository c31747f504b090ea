"""Every fault scenario drilled: the runbook must name the injected cause.

The plan pairs each scenario with its runbook, and the healthy scenario with every
runbook, so a scenario added to the sandbox is drilled here without further edits.
"""

import json
from pathlib import Path

import pytest

from opslib._drill import DrillResult, drill_once, drill_plan, format_table
from opslib.sandbox import SCENARIOS

PLAN = drill_plan(list(SCENARIOS))


@pytest.mark.parametrize(("scenario", "notebook"), PLAN)
def test_drill_names_the_injected_cause(sandbox, scenario, notebook, tmp_path):
    sandbox.reset(scenario)
    result = drill_once(sandbox, records_dir=tmp_path, notebook=notebook)
    expected = (
        SCENARIOS[scenario].cause
        if notebook == SCENARIOS[scenario].notebook
        else "healthy"
    )
    assert result.got == expected, result.detail
    assert result.passed, result.detail


def test_plan_drills_healthy_against_every_runbook():
    runbooks = {s.notebook for s in SCENARIOS.values()}
    assert {
        notebook for scenario, notebook in PLAN if scenario == "healthy"
    } == runbooks


def test_healthy_drill_raises_no_alarm(sandbox, tmp_path):
    sandbox.reset("healthy")
    result = drill_once(sandbox, records_dir=tmp_path)
    sidecar = json.loads(Path(result.record_path).with_suffix(".json").read_text())
    assert sidecar["verdict"]["status"] == "ok"
    assert sidecar["verdict"]["gated_step"] is None


def test_drill_fails_when_the_truth_disagrees(sandbox, tmp_path, monkeypatch):
    sandbox.reset("healthy")
    real_truth = sandbox.truth()
    monkeypatch.setattr(
        sandbox, "truth", lambda: {**real_truth, "cause": "d1-unavailable"}
    )
    result = drill_once(sandbox, records_dir=tmp_path)
    assert not result.passed
    assert "verdict named 'healthy'" in result.detail


def test_table_has_one_row_per_drill_and_marks_failures():
    results = [
        DrillResult("healthy", "api-down", "healthy", "healthy", True, 1.5, "a"),
        DrillResult(
            "d1-unavailable", "api-down", "d1-unavailable", "healthy", False, 2.0, "b"
        ),
    ]
    lines = format_table(results).splitlines()
    assert lines[0].split() == [
        "scenario",
        "notebook",
        "expected",
        "cause",
        "verdict",
        "cause",
        "pass",
        "seconds",
    ]
    assert len(lines) == 4
    assert lines[2].split()[-2:] == ["yes", "1.5"]
    assert lines[3].split()[-2] == "NO"
