"""bench/run_all.py and the BENCH-RESULT protocol (no timing is asserted here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _protocol():
    spec = importlib.util.spec_from_file_location("_protocol", BENCH / "_protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _line(name: str, figure: float, met: bool) -> str:
    found = {
        "benchmark": name,
        "figure": figure,
        "unit": "ratio",
        "target": "<= 0.5",
        "ratio": figure / 0.5,
        "met": met,
    }
    return "BENCH-RESULT " + json.dumps(found)


def _script(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(body, encoding="utf-8")


def _run_all(folder: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--folder", str(folder), *names],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_result_line_computes_ratio_and_met_from_the_target():
    protocol = _protocol()
    lower = protocol.parse_line(protocol.result_line("a", 0.7, "ratio", "<= 0.35"))
    assert lower["ratio"] == pytest.approx(2.0)
    assert lower["met"] is False
    higher = protocol.parse_line(protocol.result_line("b", 0.9, "ratio", ">= 0.8"))
    assert higher["ratio"] == pytest.approx(1.125)
    assert higher["met"] is True
    assert protocol.parse_line("ratio 0.9") is None


@pytest.mark.parametrize("target", ["0.35", "<=0.35", "== 1", "<= zero", "<= 0"])
def test_result_refuses_a_target_without_comparison_and_number(target):
    with pytest.raises(ValueError, match="target"):
        _protocol().result("a", 1.0, "ratio", target)


def test_parse_line_refuses_an_incomplete_result():
    with pytest.raises(ValueError, match="keys"):
        _protocol().parse_line('BENCH-RESULT {"benchmark": "a", "figure": 1}')


def test_run_all_tables_met_and_missed_targets_and_exits_zero(tmp_path):
    _script(tmp_path, "fast.py", f"print({_line('fast', 0.25, True)!r})\n")
    _script(
        tmp_path, "slow.py", f"print('slow'); print({_line('slow', 0.75, False)!r})\n"
    )
    marker = tmp_path / "helper-ran"
    _script(tmp_path, "_helper.py", f"open({str(marker)!r}, 'w').close()\n")
    done = _run_all(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("\n\n")[-1]
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["fast"][1:] == ["0.25", "ratio", "<=", "0.5", "0.50", "met"]
    assert rows["slow"][-1] == "MISSED"
    assert "MISSED: slow 0.75 ratio (target <= 0.5)" in done.stdout
    assert "  slow\n" in done.stdout  # the script's own output passes through
    assert not marker.exists()


def test_run_all_exits_one_when_a_script_fails_or_prints_no_result(tmp_path):
    _script(tmp_path, "good.py", f"print({_line('good', 0.25, True)!r})\n")
    _script(tmp_path, "broken.py", "raise SystemExit(3)\n")
    _script(tmp_path, "silent.py", "print('nothing to report')\n")
    done = _run_all(tmp_path)
    assert done.returncode == 1
    assert "FAILED: broken.py: exited with 3" in done.stdout
    assert "FAILED: silent.py: printed no BENCH-RESULT line" in done.stdout
    assert any(
        line.split()[:1] == ["good"] and line.split()[-1] == "met"
        for line in done.stdout.splitlines()
    )


def test_run_all_runs_only_the_named_benchmarks(tmp_path):
    _script(tmp_path, "one.py", f"print({_line('one', 0.25, True)!r})\n")
    _script(tmp_path, "two.py", "raise SystemExit(1)\n")
    assert _run_all(tmp_path, "one").returncode == 0
    unknown = _run_all(tmp_path, "three")
    assert unknown.returncode == 2
    assert "unknown benchmark 'three'" in unknown.stderr
