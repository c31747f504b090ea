"""Honest outcomes: a run asked to apply that applied nothing is never ``ok`` and
exits with the gate's code; a procedure's verdict is never ``ok`` beside a failed
finding; a rollback does not offer a version made before the last secret edit."""

import json

import pytest
from procedure_helpers import live_version, result_of, run
from test_cli import runbook

from opslib import (
    ActionPlan,
    ActionResult,
    Finding,
    Status,
    choose_rollback_version,
    conclude_procedure,
    load_environment,
)
from opslib._cli import EXIT_GATE, _exit_code
from opslib._config import find_environments_dir
from opslib._rollbackchoice import _choose, last_secret_change
from opslib._verdict import worst_status

BLOCKED = "no write: 150 rows match, more than max_rows=100"


def noop(summary):
    return ActionPlan("none", "sandbox", "D1 table users", summary)


def not_needed(plan):
    return ActionResult(plan, "not-needed", plan.summary)


def reads(status=Status.OK, name="user-count"):
    return [Finding(name, status, f"{name} is {status}")]


def rollback_plan():
    return ActionPlan(
        "rollback",
        "sandbox",
        "manuscript-upload-api",
        "deploy version v-old of manuscript-upload-api at 100 %",
        changes=({"what": "live version", "from": "v-new", "to": "v-old"},),
        confirm_phrase="rollback manuscript-upload-api to v-old in sandbox",
    )


# Verdicts -------------------------------------------------------------------------


def test_a_guard_stopping_an_asked_write_fails_the_verdict():
    plan = noop(BLOCKED)
    asked = conclude_procedure("database", plan, not_needed(plan), reads(), apply=True)
    assert asked.status is Status.FAIL
    assert asked.summary == f"apply was asked but nothing was applied: {BLOCKED}"
    assert asked.next_action.startswith("nothing changed")
    dry = conclude_procedure("database", plan, not_needed(plan), reads())
    assert dry.status is Status.OK and dry.cause == "read-only"


def test_an_unreachable_system_with_apply_asked_is_unknown_not_ok():
    plan = noop("cannot plan: cloudflare: connection refused")
    verdict = conclude_procedure(
        "database", plan, not_needed(plan), reads(Status.UNKNOWN), apply=True
    )
    assert verdict.status is Status.UNKNOWN
    assert verdict.cause == "inconclusive"
    assert "nothing was applied" in verdict.summary


def test_a_refund_over_what_is_left_with_apply_asked_is_not_ok():
    plan = noop("cannot refund 99999 cents of ch_1: 2900 of 2900 cents are left")
    verdict = conclude_procedure(
        "stripe", plan, not_needed(plan), reads(name="failed-payments"), apply=True
    )
    assert verdict.status is not Status.OK
    assert "nothing was applied" in verdict.summary


@pytest.mark.parametrize(
    ("finding", "expected"),
    [(Status.FAIL, Status.FAIL), (Status.WARN, Status.WARN), (Status.OK, Status.OK)],
)
def test_a_procedure_verdict_is_as_bad_as_its_worst_finding(finding, expected):
    plan = noop("no change asked for")
    quiet = conclude_procedure(
        "stripe", plan, not_needed(plan), reads(finding, "drift")
    )
    assert quiet.status is expected
    applied = ActionResult(
        rollback_plan(), "applied", "version v-old is live", "ops@example.com"
    )
    done = conclude_procedure("rollback", rollback_plan(), applied, reads(finding))
    assert done.status is expected
    assert done.cause == "rollback-planned"


def test_after_an_applied_change_its_check_stands_for_the_state():
    plan = rollback_plan()
    healed = ActionResult(
        plan,
        "applied",
        "version v-old is live",
        "ops@example.com",
        after=Finding("rollback-check", Status.OK, "v-old live; probe ok"),
    )
    before = reads(Status.FAIL, "deployments")
    assert conclude_procedure("rollback", plan, healed, before).status is Status.OK
    still = ActionResult(
        plan,
        "applied",
        "version v-old is live",
        "ops@example.com",
        after=Finding("rollback-check", Status.WARN, "v-old live; probe slow"),
    )
    assert conclude_procedure("rollback", plan, still, before).status is Status.FAIL


def test_worst_status_orders_fail_unknown_warn_ok():
    assert worst_status([Status.OK, Status.WARN, Status.UNKNOWN]) is Status.UNKNOWN
    assert worst_status([Status.FAIL, Status.UNKNOWN]) is Status.FAIL
    assert worst_status([Status.OK, Status.WARN]) is Status.WARN
    assert worst_status([]) is Status.OK


def test_a_rollback_refused_for_changed_secrets_is_not_offered_again():
    plan = rollback_plan()
    failed = ActionResult(
        plan,
        "failed",
        "cloudflare: HTTP 400: 10220: Deploying this version would change the "
        "Worker's secrets; nothing is known to have changed",
        "ops@example.com",
    )
    verdict = conclude_procedure(
        "rollback", plan, failed, parameters={"version": "v-old"}, apply=True
    )
    assert verdict.status is Status.FAIL
    assert "runbook run rollback" not in verdict.next_action
    assert "deploy a new version" in verdict.next_action
    other = ActionResult(plan, "failed", "cloudflare: HTTP 503", "ops@example.com")
    retry = conclude_procedure("rollback", plan, other, parameters={"version": "v-old"})
    assert "runbook run rollback" in retry.next_action


# Exit codes -----------------------------------------------------------------------


def sidecar(apply, outcome, verdict):
    return {
        "status": "succeeded",
        "parameters": {"apply": apply, "confirm": "x" if apply else ""},
        "actions": [{"kind": "plan"}, {"kind": "result", "outcome": outcome}],
        "verdict": {"status": verdict},
    }


@pytest.mark.parametrize(
    ("apply", "outcome", "verdict", "code"),
    [
        (True, "not-needed", "fail", EXIT_GATE),
        (True, "not-needed", "unknown", EXIT_GATE),
        (True, "not-needed", "ok", 0),
        (True, "applied", "fail", 0),
        (False, "not-needed", "fail", 0),
        (False, "dry-run", "warn", 0),
        (True, "refused", "fail", EXIT_GATE),
    ],
)
def test_exit_code_when_apply_was_asked(apply, outcome, verdict, code):
    assert _exit_code(sidecar(apply, outcome, verdict), False) == code


# Rollback target and secret edits ---------------------------------------------------


def deployment(version, when, triggered_by):
    return {
        "created_on": when,
        "annotations": {"workers/triggered_by": triggered_by},
        "versions": [{"version_id": version, "percentage": 100}],
    }


DEPLOYMENTS = [
    deployment("v4", "2026-12-04T10:00:00Z", "upload"),
    deployment("v3", "2026-12-04T09:00:00Z", "secret"),
    deployment("v2", "2026-12-04T08:00:00Z", "upload"),
    deployment("v1", "2026-12-04T07:00:00Z", "upload"),
]
NUMBERS = {"v1": 1, "v2": 2, "v3": 3, "v4": 4}


def rows(*versions):
    change = last_secret_change(DEPLOYMENTS, NUMBERS)
    return [
        {
            "version": v,
            "number": NUMBERS[v],
            "5xx_rate": None,
            "before_secret_change": NUMBERS[v] < change["number"],
        }
        for v in versions
    ]


def test_the_last_secret_edit_is_read_from_the_deployments():
    change = last_secret_change(DEPLOYMENTS, NUMBERS)
    assert change == {"version": "v3", "number": 3, "at": "2026-12-04T09:00:00Z"}
    assert last_secret_change(DEPLOYMENTS[:1] + DEPLOYMENTS[2:], NUMBERS) is None


def test_versions_before_the_secret_edit_are_skipped_with_the_reason():
    change = last_secret_change(DEPLOYMENTS, NUMBERS)
    chosen, why = _choose(rows("v3", "v2", "v1"), "", "v4", NUMBERS, change)
    assert chosen == "v3"
    none, why = _choose(rows("v2", "v1"), "", "v3", NUMBERS, change)
    assert none is None
    assert "10220" in why and "deploy a new version" in why
    named, why = _choose(rows("v3", "v2"), "v2", "v4", NUMBERS, change)
    assert named is None
    assert why.startswith("version v2 was made before the secret change")


# End to end on the sandbox ----------------------------------------------------------


def test_rollback_to_an_unknown_version_fails_and_exits_3(sandbox, tmp_path):
    sandbox.reset("bad-deployment")
    before = live_version()
    record = run("rollback", tmp_path, version="nonexistent-version")
    assert record.verdict["status"] == "fail"
    assert record.verdict["cause"] == "nothing-to-roll-back"
    done = runbook(
        "run", "rollback", "-p", "version", "nonexistent-version",
        "-p", "apply", "true", "-p", "confirm", "rollback it",
        "--records", str(tmp_path / "cli"), check_code=EXIT_GATE,
    )  # fmt: skip
    assert "OK" not in done.stdout.split("VERDICT", 1)[-1].splitlines()[0]
    assert live_version() == before


def test_a_write_over_max_rows_with_apply_fails_and_exits_3(sandbox, tmp_path):
    sandbox.reset("healthy")
    sql = "UPDATE users SET email_verified = 1 WHERE id IS NOT NULL"
    done = runbook(
        "run", "database", "-p", "sql", sql, "-p", "max_rows", "1",
        "-p", "apply", "true", "-p", "confirm", "update them in sandbox",
        "--records", str(tmp_path), check_code=EXIT_GATE,
    )  # fmt: skip
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["verdict"]["status"] == "fail"
    assert "more than max_rows=1" in record["verdict"]["summary"]
    assert [a["outcome"] for a in record["actions"] if a["kind"] == "result"] == [
        "not-needed"
    ]
    assert done.returncode == EXIT_GATE


def test_a_refund_over_the_charge_with_apply_is_not_ok_and_exits_3(sandbox, tmp_path):
    sandbox.reset("healthy")
    from test_procedure_stripe import paid_charge

    charge = paid_charge(load_environment("sandbox"))
    too_much = int(charge["amount"]) + 100
    runbook(
        "run", "stripe", "-p", "operation", "refund", "-p", "charge", charge["id"],
        "-p", "amount_cents", str(too_much), "-p", "apply", "true",
        "-p", "confirm", f"refund {too_much} cents of {charge['id']} in sandbox",
        "--records", str(tmp_path), check_code=EXIT_GATE,
    )  # fmt: skip
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["verdict"]["status"] != "ok"
    assert "nothing was applied" in record["verdict"]["summary"]


def test_rollback_after_a_secret_edit_offers_no_older_version(sandbox, tmp_path):
    sandbox.reset("missing-secret")
    details = sandbox.truth()["details"]
    env = load_environment("sandbox")
    choice = choose_rollback_version(env)
    assert choice.facts["chosen_version"] is None
    assert choice.facts["secret_change"]["version"] == details["version"]
    assert "10220" in choice.summary
    previous = [
        r for r in choice.evidence if r["version"] == details["previous_version"]
    ]
    assert previous and previous[0]["before_secret_change"] is True
    named = choose_rollback_version(env, details["previous_version"])
    assert named.status is Status.FAIL
    assert "made before the secret change" in named.summary
    record = run("rollback", tmp_path)
    assert record.verdict["status"] == "fail"
    assert result_of(record)["outcome"] == "not-needed"
    assert live_version() == details["version"]


# What the printed record says ---------------------------------------------------------


def test_smoke_says_what_the_api_answered_and_what_was_expected():
    from opslib._deployverify import _smoke_rows, smoke_finding
    from opslib._platform import Probe

    probe = Probe("/manuscripts", 500, 12.0, 401, "", {})
    smoke = smoke_finding(_smoke_rows(probe, "https://app.example.com"))
    assert smoke.status is Status.FAIL
    assert "GET /manuscripts status: answered 500, expected 401" in smoke.summary
    assert "expected https://app.example.com" in smoke.summary
    assert "answers 401" not in smoke.summary


def test_an_advised_step_applied_in_the_run_is_not_advised_again():
    from opslib._records import format_verdict

    command = "runbook run rollback --env sandbox -p version v-old -p apply true"
    sidecar = {
        "id": "20261204T2300-deploy-verify",
        "status": "succeeded",
        "verdict": {
            "runbook": "deploy-verify",
            "status": "fail",
            "cause": "roll-back",
            "summary": "the deploy fails",
            "next_action": f"roll back: {command}",
            "gated_step": {"command": command},
        },
        "actions": [{"kind": "result", "outcome": "applied", "detail": "v-old live"}],
    }
    text = format_verdict(sidecar)
    next_line = next(line for line in text.splitlines() if line.startswith("next"))
    assert command not in next_line
    assert "applied in this run" in next_line and "deploy-verify again" in next_line
    sidecar["actions"] = [{"kind": "result", "outcome": "dry-run", "detail": "-"}]
    assert command in format_verdict(sidecar)


def test_a_record_with_an_applied_undo_is_planned_as_already_undone():
    from opslib._undo import plan_undo, undo_records_of

    applied = {
        "kind": "result",
        "outcome": "applied",
        "action": "d1-write",
        "operator": "alice@ops",
        "plan": {"before": {}},
    }
    original = {"id": "R1", "environment": "sandbox", "actions": [applied]}
    undo = {
        "id": "R2",
        "runbook": "undo",
        "actions": [
            {**applied, "action": "restore", "plan": {"before": {"record_id": "R1"}}}
        ],
    }
    dry_undo = {
        **undo,
        "id": "R3",
        "actions": [{**undo["actions"][0], "outcome": "dry-run"}],
    }
    assert undo_records_of([dry_undo, undo, original], "R1") == ["R2"]
    env = load_environment("sandbox", with_secrets=False)
    plan = plan_undo(env, {**original, "undone_by": "R2"})
    assert plan.is_noop
    assert plan.summary.startswith("already undone by record R2")


def test_loading_the_sandbox_template_without_secrets_says_nothing_of_them(
    tmp_path, caplog
):
    folder = tmp_path / "parameters" / "environments"
    folder.mkdir(parents=True)
    source = find_environments_dir() / "sandbox.yaml"
    lines = [
        line
        for line in source.read_text().splitlines()
        if not line.startswith("secrets_file:")
    ]
    missing = tmp_path / "never-written" / "secrets.env"
    text = "\n".join([*lines, f"secrets_file: {missing}", ""])
    folder.joinpath("sandbox.yaml").write_text(text)
    environ = {"RUNBOOK_ENVIRONMENTS": str(folder)}
    caplog.set_level("WARNING")
    env = load_environment("sandbox", environ=environ, with_secrets=False)
    assert env.secrets == {}
    assert "secrets file missing" not in caplog.text
    load_environment("sandbox", environ=environ)
    assert "secrets file missing" in caplog.text


def test_undo_twice_says_already_undone_and_names_the_operator(sandbox, tmp_path):
    sandbox.reset("healthy")
    cleanup = {"incident_id": "CHG-1", "cleanup_test_accounts": True}
    phrase = run("database", tmp_path, **cleanup).verdict["gated_step"]["confirm"]
    applied = run("database", tmp_path, **cleanup, apply=True, confirm=phrase)
    operator = result_of(applied)["operator"]
    dry = run("undo", tmp_path, record_id=applied.id)
    assert f"(applied by {operator})" in dry.verdict["summary"]
    undo_phrase = dry.verdict["gated_step"]["confirm"]
    undone = run(
        "undo", tmp_path, record_id=applied.id, apply=True, confirm=undo_phrase
    )
    assert result_of(undone)["outcome"] == "applied"
    again = run("undo", tmp_path, record_id=applied.id, apply=True, confirm=undo_phrase)
    assert f"already undone by record {undone.id}" in again.verdict["summary"]
    assert again.verdict["status"] == "fail"
    assert "to apply" not in again.verdict["next_action"]
    assert _exit_code(again.sidecar, False) == EXIT_GATE


def test_after_a_rotation_rollback_offers_no_version_from_before_it(
    sandbox, tmp_path, monkeypatch
):
    sandbox.reset("healthy")
    monkeypatch.setenv("RUNBOOK_NEW_SECRET", "rotated-" + "5f" * 16)
    rotated = run(
        "security-breach",
        tmp_path,
        step="rotate-secret",
        secret_name="JWT_SECRET",
        apply=True,
        confirm="rotate JWT_SECRET of manuscript-upload-api in sandbox",
    )
    assert result_of(rotated)["outcome"] == "applied"
    live = live_version()
    choice = choose_rollback_version(load_environment("sandbox"))
    assert choice.facts["secret_change"]["version"] == live
    assert choice.facts["chosen_version"] is None
    assert choice.evidence and all(r["before_secret_change"] for r in choice.evidence)
    record = run("rollback", tmp_path)
    assert record.verdict["status"] == "fail"
    assert "10220" in record.verdict["summary"]
    assert "runbook run rollback" not in record.verdict["next_action"]
    assert live_version() == live
