"""The checklists headless, as a scheduler runs them: `runbook run checklist-...
--fail-on-verdict` exits 0 when every checked item passed, 4 when one failed,
warned or could not look, 2 on a bad parameter (nothing written)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_checklist_sandbox import empty_backups

from opslib import load_environment

BIN = Path(sys.executable).parent
ROOT = Path(__file__).parent.parent


def run_checklist(name, records, *args):
    done = subprocess.run(
        [str(BIN / "runbook"), "run", name, "--records", str(records), *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=300,
    )
    sidecars = list(Path(records).rglob(f"*-{name}-*.json"))
    sidecar = json.loads(sidecars[0].read_text()) if sidecars else None
    return done, sidecar


def statuses(sidecar):
    return {f["name"]: f["status"] for f in sidecar["verdict"]["findings"]}


def test_daily_passes_on_the_healthy_sandbox_with_manual_items_listed(
    sandbox, tmp_path
):
    sandbox.reset("healthy")
    done, sidecar = run_checklist("checklist-daily", tmp_path, "--fail-on-verdict")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sidecar["verdict"]["cause"] == "healthy"
    found = statuses(sidecar)
    assert found["sentry"] == found["email-alerts"] == "manual"
    assert found["probe"] == found["backup-log"] == found["error-rate"] == "ok"
    assert "2 manual item(s)" in done.stdout


def test_daily_exits_4_on_a_bad_deployment_only_when_asked(sandbox, tmp_path):
    sandbox.reset("bad-deployment")
    done, sidecar = run_checklist(
        "checklist-daily", tmp_path / "a", "--fail-on-verdict"
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert sidecar["verdict"]["cause"] == "items-failing"
    assert statuses(sidecar)["probe"] == "fail"
    done, _ = run_checklist("checklist-daily", tmp_path / "b")
    assert done.returncode == 0


def test_weekly_fails_on_a_queue_nothing_consumes(sandbox, tmp_path):
    sandbox.reset("consumer-missing")
    done, sidecar = run_checklist("checklist-weekly", tmp_path, "--fail-on-verdict")
    assert done.returncode == 4
    found = statuses(sidecar)
    assert found["queue-consumers"] == "fail"
    assert found["maintenance"] == found["costs"] == "manual"
    assert found["d1-size"] == found["registrations"] == "ok"


def test_weekly_passes_on_the_healthy_sandbox(sandbox, tmp_path):
    sandbox.reset("healthy")
    done, sidecar = run_checklist("checklist-weekly", tmp_path, "--fail-on-verdict")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sidecar["verdict"]["status"] == "ok"


def run_monthly(records):
    """The monthly checklist with a small latency probe, as a scheduler runs it."""
    args = ("--fail-on-verdict", "-p", "requests_per_route", "3")
    return run_checklist("checklist-monthly", records, *args)


def test_monthly_restores_a_week_old_backup_and_passes(sandbox, tmp_path):
    sandbox.reset("healthy")
    done, sidecar = run_monthly(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    found = statuses(sidecar)
    assert found["restore"] == found["integrity"] == found["latency"] == "ok"
    assert [n for n, s in found.items() if s == "manual"] == [
        "security-audit",
        "npm-audit",
        "cost-analysis",
    ]


def test_monthly_fails_when_no_backup_can_be_restored(sandbox, tmp_path):
    sandbox.reset("healthy")
    empty_backups(load_environment("sandbox"))
    done, sidecar = run_monthly(tmp_path)
    assert done.returncode == 4
    assert sidecar["verdict"]["cause"] == "items-failing"
    assert statuses(sidecar)["restore"] == "fail"


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("checklist-daily", ["-p", "window_min", "3"], "window_min: got 3"),
        ("checklist-monthly", ["-p", "requests_per_route", "0"], "requests_per_route"),
        ("checklist-weekly", ["-p", "lookback", "1h"], "lookback"),
    ],
)
def test_bad_parameters_exit_2_and_write_nothing(tmp_path, name, args, message):
    done, sidecar = run_checklist(name, tmp_path, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert sidecar is None and not any(tmp_path.rglob("*.ipynb"))
