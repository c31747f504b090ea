"""Checks made before any kernel starts: values holding what the records hide,
operations without the parameters they need, writes asked for twice; and the
warning printed above a command that carries such hidden values."""

import pytest
from click.testing import CliRunner

from opslib._cli import main
from opslib._command import incident_parameter, runbook_command
from opslib._errors import ParameterError
from opslib._procedure import write_parameters
from opslib._records import format_verdict
from opslib._runner import check_run_request
from opslib._scrub import Scrubber, scrub_tokens
from opslib._verdict import Verdict
from opslib._finding import Status

INSERT = (
    "INSERT INTO users (id, email, password_hash, created_at) "
    "VALUES ('r4-new-2', '{email}', 'x', 1)"
)


def check(runbook, **parameters):
    return check_run_request(runbook, parameters, raw=frozenset(parameters))


def problems_of(runbook, **parameters):
    with pytest.raises(ParameterError) as caught:
        check(runbook, **parameters)
    return caught.value.problems


def test_every_token_the_scrubber_writes_is_recognised():
    scrubber = Scrubber({"JWT_SECRET": "a-long-secret-value"})
    text = "mail a@example.com key a-long-secret-value Bearer abcdefgh"
    scrubbed = scrubber.scrub_text(text)
    as_html = scrubber.scrub_text("a@example.com", is_html=True)
    assert len(scrub_tokens(scrubbed)) == 3, scrubbed
    assert scrub_tokens(as_html) == [as_html]
    assert scrub_tokens(text) == []
    assert scrub_tokens({"k": ["x", scrubbed]}) == scrub_tokens(scrubbed)


@pytest.mark.parametrize(
    "hidden", ["<email:e6cebab1>", "[redacted:JWT_SECRET]", "&lt;email:0a1b2c3d&gt;"]
)
def test_a_value_pasted_from_a_record_is_refused_naming_the_parameter(hidden):
    problems = problems_of(
        "database", incident_id="CHG-1", sql=INSERT.format(email=hidden)
    )
    assert len(problems) == 1
    assert problems[0].startswith("sql: holds ")
    assert hidden in problems[0]
    assert "put it back" in problems[0]


def test_the_real_value_passes():
    request = check(
        "database", incident_id="CHG-1", sql=INSERT.format(email="r@example.com")
    )
    assert "r@example.com" in str(request.values["sql"])


@pytest.mark.parametrize(
    ("runbook", "parameters", "missing", "form"),
    [
        ("stripe", {"operation": "refund"}, "charge", "ch_"),
        ("stripe", {"operation": "cancel", "charge": "ch_1"}, "subscription", "sub_"),
        ("security-breach", {"step": "rotate-secret"}, "secret_name", "JWT_SECRET"),
    ],
)
def test_an_operation_without_its_target_is_refused_before_a_kernel(
    runbook, parameters, missing, form
):
    problems = problems_of(runbook, **parameters)
    assert len(problems) == 1
    assert problems[0].startswith(f"{missing}: empty")
    assert repr(next(iter(parameters.values()))) in problems[0]
    assert form in problems[0]


def test_an_operation_with_its_target_passes():
    request = check("stripe", operation="refund", charge="ch_1")
    assert request.values["charge"] == "ch_1"


def test_sql_and_the_clean_up_together_are_refused():
    problems = problems_of(
        "database",
        sql="DELETE FROM users WHERE id = 'u-1'",
        cleanup_test_accounts="true",
    )
    assert problems == [
        "sql, cleanup_test_accounts: both given, expected one of them: a run "
        "plans one write"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["stripe", "-p", "operation", "refund"],
        ["security-breach", "-p", "step", "rotate-secret"],
        ["database", "-p", "sql", INSERT.format(email="<email:e6cebab1>")],
    ],
)
def test_the_command_line_exits_2_without_running(monkeypatch, tmp_path, args):
    started = []
    monkeypatch.setattr(
        "opslib._runner._execute", lambda *a, **k: started.append(a) or 1 / 0
    )
    records = tmp_path / "records"
    result = CliRunner().invoke(main, ["run", *args, "--records", str(records)])
    assert result.exit_code == 2, result.output
    assert not started
    assert not records.exists() or not any(records.rglob("*.json"))


def test_printed_commands_carry_the_incident():
    params = {"incident_id": "CHG-1", "sql": "UPDATE t SET a = 1 WHERE b = 2"}
    command = runbook_command("database", "sandbox", write_parameters(params))
    assert command.startswith("runbook run database --env sandbox -p incident_id CHG-1")
    assert incident_parameter({"incident_id": ""}) == {}


def sidecar_with(command):
    verdict = {
        "status": "warn",
        "cause": "write-planned",
        "summary": "insert 1 row of users: dry-run",
        "next_action": f"to apply: {command}",
        "gated_step": {"command": command},
    }
    return {"id": "r", "runbook": "database", "status": "succeeded", "verdict": verdict}


def test_a_command_holding_hidden_values_is_flagged_on_the_line_above():
    command = "runbook run database -p sql \"INSERT ... VALUES ('<email:e6cebab1>')\""
    lines = format_verdict(sidecar_with(command)).splitlines()
    at = next(
        i
        for i, line in enumerate(lines)
        if "<email:e6cebab1>" in line and not line.startswith("note:")
    )
    assert lines[at].startswith("next action: to apply: runbook run")
    assert lines[at - 1].startswith("note:")
    assert "<email:e6cebab1>" in lines[at - 1]
    assert "put the real values in" in lines[at - 1]
    assert sum(line.startswith("note:") for line in lines) == 1


def test_a_clean_command_has_no_note():
    text = format_verdict(sidecar_with("runbook run database -p sql 'x'"))
    assert "note:" not in text


def test_the_verdict_text_flags_hidden_values_too():
    step = {"command": "runbook run x -p user '[redacted:password]'"}
    verdict = Verdict("database", Status.WARN, "write-planned", "s", [], "go", step)
    lines = str(verdict).splitlines()
    assert lines[-2].startswith("  note: ") and "[redacted:password]" in lines[-2]
    assert lines[-1].startswith("  gated step: ")


def test_a_notebook_run_without_the_runner_refuses_two_writes_too():
    from opslib import load_environment
    from opslib._procedure import plan_database_write

    with pytest.raises(ParameterError) as caught:
        plan_database_write(
            load_environment("sandbox"),
            sql="DELETE FROM users WHERE id = 'u-1'",
            cleanup_test_accounts=True,
        )
    assert caught.value.problems == problems_of(
        "database",
        sql="DELETE FROM users WHERE id = 'u-1'",
        cleanup_test_accounts="true",
    )
