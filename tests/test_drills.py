"""Every fault scenario drilled: the runbook must name the injected cause."""

import json
from pathlib import Path

import pytest

from opslib._drill import drill_once
from opslib.sandbox import SCENARIOS


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_drill_names_the_injected_cause(sandbox, scenario, tmp_path):
    sandbox.reset(scenario)
    result = drill_once(sandbox, records_dir=tmp_path)
    assert result.got == SCENARIOS[scenario].cause, result.detail
    assert result.passed, result.detail


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
