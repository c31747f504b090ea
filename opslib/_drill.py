"""Drills: inject a known fault into a fresh sandbox and score the runbook's verdict.

A drill passes when the runbook names the scenario's true cause (and, for a bad
deployment, the bad and the last good version). It runs the notebook exactly as
``runbook run`` does, so every drill also leaves a record.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config import ENVIRONMENTS_VARIABLE, load_environment
from ._runner import run_notebook
from ._table import render_table


@dataclass(frozen=True)
class DrillResult:
    """How one drill came out.

    Attributes:
        scenario: the scenario injected.
        notebook: the runbook drilled.
        expected: the cause a correct runbook names.
        got: the cause the verdict named ("" when the run failed).
        passed: True when the verdict matches the truth.
        seconds: wall time from starting the run to having the verdict.
        record_path: where the run's record went.
        detail: why it failed, if it did.
    """

    scenario: str
    notebook: str
    expected: str
    got: str
    passed: bool
    seconds: float
    record_path: str
    detail: str = ""

    def __str__(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        text = (
            f"{mark} {self.scenario} ({self.notebook}): cause {self.got or '-'} "
            f"(expected {self.expected}) in {self.seconds:.1f} s  "
            f"record: {self.record_path}"
        )
        return text + (f"\n     {self.detail}" if self.detail else "")


def drill_plan(scenarios: Sequence[str]) -> list[tuple[str, str]]:
    """Pair each scenario with the runbook it drills.

    The healthy scenario is drilled against every runbook that some scenario
    drills, since it must raise no alarm in any of them.
    """
    from .sandbox import SCENARIOS

    runbooks = list(dict.fromkeys(s.notebook for s in SCENARIOS.values()))
    plan = []
    for name in scenarios:
        notebooks = runbooks if name == "healthy" else [SCENARIOS[name].notebook]
        plan += [(name, notebook) for notebook in notebooks]
    return plan


def run_drills(
    scenarios: Sequence[str],
    *,
    records_dir: str | Path,
    echo: Callable[[str], Any] = print,
) -> list[DrillResult]:
    """Drill each scenario in turn on one throw-away sandbox.

    Args:
        scenarios: scenario names, in order.
        records_dir: where the drills' records go.
        echo: called with each result's line as soon as it is known.
    """
    results = []
    plan = drill_plan(scenarios)
    with _drill_sandbox(plan[0][0]) as sandbox:
        for index, (name, notebook) in enumerate(plan):
            if index:
                sandbox.reset(name)
            result = drill_once(sandbox, records_dir=records_dir, notebook=notebook)
            echo(str(result))
            results.append(result)
    return results


def format_table(results: Sequence[DrillResult]) -> str:
    """The drills as a table: scenario, notebook, causes, pass, seconds."""
    header = (
        "scenario",
        "notebook",
        "expected cause",
        "verdict cause",
        "pass",
        "seconds",
    )
    rows = [
        (
            r.scenario,
            r.notebook,
            r.expected,
            r.got or "-",
            "yes" if r.passed else "NO",
            f"{r.seconds:.1f}",
        )
        for r in results
    ]
    return render_table(header, rows)


def drill_once(
    sandbox: Any, *, records_dir: str | Path, notebook: str | None = None
) -> DrillResult:
    """Run a runbook against the sandbox's current scenario and score its verdict.

    Args:
        sandbox: the running sandbox.
        records_dir: where the record goes.
        notebook: the runbook to drill; default the scenario's own. Any other
            runbook must find the healthy scenario healthy.
    """
    truth = sandbox.truth()
    notebook = notebook or truth["notebook"]
    if notebook != truth["notebook"]:
        truth = {**truth, "cause": "healthy", "details": {}}
    started = time.monotonic()
    record = run_notebook(
        notebook,
        parameters={"incident_id": f"DRILL-{truth['scenario']}"},
        environment="sandbox",
        records_dir=records_dir,
    )
    seconds = time.monotonic() - started
    verdict = record.verdict or {}
    detail = (
        _mismatch(truth, verdict)
        if record.status == "succeeded"
        else f"run failed: {record.error}"
    )
    return DrillResult(
        truth["scenario"],
        notebook,
        truth["cause"],
        verdict.get("cause", ""),
        not detail,
        seconds,
        str(record.record_path),
        detail,
    )


def _mismatch(truth: dict[str, Any], verdict: dict[str, Any]) -> str:
    if verdict.get("cause") != truth["cause"]:
        return f"verdict named {verdict.get('cause')!r}: {verdict.get('summary', '')}"
    if truth["cause"] == "healthy" and verdict.get("status") != "ok":
        return f"healthy but the verdict status is {verdict.get('status')!r}"
    details = truth.get("details") or {}
    step = verdict.get("gated_step") or {}
    for truth_key, step_key in (
        ("bad_version", "from_version"),
        ("good_version", "to_version"),
    ):
        if truth_key in details and step.get(step_key) != details[truth_key]:
            return (
                f"{step_key} is {step.get(step_key)!r}, expected {details[truth_key]!r}"
            )
    return ""


@contextmanager
def _drill_sandbox(first_scenario: str) -> Iterator[Any]:
    from .sandbox import Sandbox

    saved = os.environ.get(ENVIRONMENTS_VARIABLE)
    with tempfile.TemporaryDirectory(prefix="runbook-drill-") as folder:
        sandbox = Sandbox(
            Path(folder), load_environment("sandbox"), ephemeral_ports=True, tied=True
        )
        sandbox.start(first_scenario)
        os.environ[ENVIRONMENTS_VARIABLE] = str(sandbox.environments_dir)
        try:
            yield sandbox
        finally:
            sandbox.stop()
            if saved is None:
                os.environ.pop(ENVIRONMENTS_VARIABLE, None)
            else:
                os.environ[ENVIRONMENTS_VARIABLE] = saved
