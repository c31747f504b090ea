"""The rollback and deploy-verify procedures on the sandbox: which version they pick,
keep or roll back, and the gated rollback (dry run, refused, applied, probe after)."""

import pytest
from procedure_helpers import live_version, result_of, run

from opslib import (
    Status,
    check_smoke,
    choose_rollback_version,
    load_environment,
    watch_deploy,
)
from opslib._deployverify import _p95, _smoke_rows, _watch_status
from opslib._platform import Probe


@pytest.fixture
def bad_deployment(sandbox):
    sandbox.reset("bad-deployment")
    return sandbox.truth()["details"]


def test_rollback_picks_the_last_healthy_version(bad_deployment):
    choice = choose_rollback_version(load_environment("sandbox"))
    assert choice.facts["live_version"] == bad_deployment["bad_version"]
    assert choice.facts["chosen_version"] == bad_deployment["good_version"]
    assert [r["version"] for r in choice.evidence if r["chosen"]] == [
        bad_deployment["good_version"]
    ]


def test_rollback_skips_a_version_whose_answers_fail(sandbox):
    sandbox.reset("endpoint-broken-after-deploy")
    env = load_environment("sandbox")
    live = live_version()
    named = choose_rollback_version(env, live)
    assert named.status is Status.FAIL
    assert "live version already" in named.summary
    unknown = choose_rollback_version(env, "no-such-version")
    assert unknown.facts["chosen_version"] is None


def test_rollback_dry_run_changes_nothing_and_prints_the_phrase(
    bad_deployment, tmp_path
):
    record = run("rollback", tmp_path, incident_id="INC-77")
    assert record.verdict["cause"] == "rollback-planned"
    command = record.verdict["gated_step"]["command"]
    assert "-p incident_id INC-77 -p version " in command
    assert result_of(record)["outcome"] == "dry-run"
    good = bad_deployment["good_version"]
    assert record.verdict["gated_step"]["confirm"] == (
        f"rollback manuscript-upload-api to {good} in sandbox"
    )
    assert live_version() == bad_deployment["bad_version"]


def test_rollback_with_a_wrong_phrase_is_refused(bad_deployment, tmp_path):
    record = run("rollback", tmp_path, apply=True, confirm="rollback now")
    assert result_of(record)["outcome"] == "refused"
    assert live_version() == bad_deployment["bad_version"]


def test_rollback_applied_makes_the_version_live_and_probes(bad_deployment, tmp_path):
    good = bad_deployment["good_version"]
    phrase = f"rollback manuscript-upload-api to {good} in sandbox"
    record = run("rollback", tmp_path, apply=True, confirm=phrase)
    result = result_of(record)
    assert result["outcome"] == "applied"
    assert result["plan"]["before"]["live_version"] == bad_deployment["bad_version"]
    assert result["after"]["status"] == "ok"
    assert live_version() == good
    assert record.verdict["status"] == "ok"


def test_deploy_verify_keeps_a_healthy_deploy(sandbox, tmp_path):
    sandbox.reset("healthy")
    before = live_version()
    record = run("deploy-verify", tmp_path, watch_s=5)
    assert record.verdict["cause"] == "keep", record.verdict["summary"]
    assert result_of(record)["outcome"] == "not-needed"
    assert live_version() == before


def test_deploy_verify_advises_and_applies_the_rollback(sandbox, tmp_path):
    sandbox.reset("endpoint-broken-after-deploy")
    broken = live_version()
    record = run("deploy-verify", tmp_path, watch_s=5)
    assert record.verdict["cause"] == "roll-back"
    step = record.verdict["gated_step"]
    assert step["from_version"] == broken and step["to_version"] != broken
    assert "runbook run rollback" in step["command"]
    assert live_version() == broken
    applied = run(
        "deploy-verify", tmp_path, watch_s=5, apply=True, confirm=step["confirm"]
    )
    assert result_of(applied)["outcome"] == "applied"
    assert live_version() == step["to_version"]

    # The rollback is a deploy of its own, so a watch now waits out its window.
    watch = watch_deploy(load_environment("sandbox"), 5, interval_s=1.0)
    assert watch.facts["live_version"] == step["to_version"]
    assert 3.0 <= watch.facts["waited_s"] <= 5.0
    assert watch.facts["probes"] >= 4


def test_smoke_checks_pass_on_the_healthy_sandbox(sandbox):
    sandbox.reset("healthy")
    smoke = check_smoke(load_environment("sandbox"))
    assert smoke.status is Status.OK
    assert [r["ok"] for r in smoke.evidence] == [True, True, True]


def test_smoke_rows_fail_without_hsts_or_with_another_origin():
    probe = Probe(
        "/manuscripts", 401, 12.0, 401, "", {"access-control-allow-origin": "*"}
    )
    rows = _smoke_rows(probe, "https://example.com")
    assert [r["ok"] for r in rows] == [True, False, False]


@pytest.mark.parametrize(
    ("facts", "status"),
    [
        ({"probes": 3, "p95_ms": 40.0, "error_rate": 0.0, "probe_5xx": 0}, Status.OK),
        (
            {"probes": 3, "p95_ms": 40.0, "error_rate": 0.06, "probe_5xx": 0},
            Status.FAIL,
        ),
        ({"probes": 3, "p95_ms": 40.0, "error_rate": 0.0, "probe_5xx": 1}, Status.FAIL),
        (
            {"probes": 3, "p95_ms": 3500.0, "error_rate": 0.0, "probe_5xx": 0},
            Status.WARN,
        ),
        (
            {"probes": 3, "p95_ms": 0.0, "error_rate": 0.0, "probe_5xx": 0},
            Status.UNKNOWN,
        ),
    ],
)
def test_watch_status_thresholds(facts, status):
    assert _watch_status(facts) is status


def test_p95_takes_the_value_below_which_95_percent_fall():
    assert _p95([float(n) for n in range(1, 101)]) == 95.0
    assert _p95([]) == 0.0
