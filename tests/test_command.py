"""Printed gated-step commands: every value from data is one inert shell word.

Each command is pasted by an operator into a shell, and its values come from D1
rows, KV keys, the Cloudflare API or parameters. The lines are parsed back with
shlex and, for the shared builder, run by bash with ``runbook`` standing in as a
function that prints its arguments: nothing a value holds may run.
"""

import shlex
import subprocess

import pytest

from opslib import ActionPlan, Finding, Status, diagnose_auth_broken, load_environment
from opslib._apidown import rollback_step
from opslib._breachaction import breach_parameters
from opslib._command import Placeholder, runbook_command
from opslib._procedure import write_parameters
from opslib._stripeaction import stripe_parameters

HOSTILE = [
    "u-$(touch${IFS}MARK)",
    "`touch MARK`",
    "a;touch MARK",
    "x' ; touch MARK ; echo '",
    'say "hi" && touch MARK',
    "line\ntouch MARK",
    "-p apply true",
    "",
]


@pytest.fixture
def env():
    return load_environment("sandbox")


def _options(command):
    """The ``-p`` options of a printed command, as parsed by a shell."""
    words = shlex.split(command)
    return [(words[i + 1], words[i + 2]) for i, w in enumerate(words) if w == "-p"]


@pytest.mark.parametrize("value", HOSTILE)
def test_builder_keeps_each_value_one_word(value):
    command = runbook_command(
        "auth-broken", "sandbox", {"user_id": value, "n": 3}, confirm=f"ok {value}"
    )
    assert shlex.split(command)[:5] == [
        "runbook",
        "run",
        "auth-broken",
        "--env",
        "sandbox",
    ]
    assert _options(command) == [
        ("user_id", value),
        ("n", "3"),
        ("apply", "true"),
        ("confirm", f"ok {value}"),
    ]


def test_pasted_command_runs_nothing_a_value_holds(tmp_path):
    values = {f"k{i}": v for i, v in enumerate(HOSTILE)}
    command = runbook_command("queue-delays", "sandbox", values, confirm=HOSTILE[0])
    script = "runbook() { printf '%s\\0' \"$@\"; }\n" + command
    out = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, check=True
    ).stdout
    assert not (tmp_path / "MARK").exists()
    args = out.decode().split("\0")[:-1]
    assert args[:3] == ["run", "queue-delays", "--env"]
    pairs = list(zip(args[4::3], args[5::3], args[6::3], strict=True))
    expected = [*values.items(), ("apply", "true"), ("confirm", HOSTILE[0])]
    assert pairs == [("-p", k, v) for k, v in expected]


def test_builder_leaves_out_none_and_prints_booleans_as_words():
    command = runbook_command(
        "database", "staging", {"sql": None, "cleanup_test_accounts": True}
    )
    assert command == "runbook run database --env staging -p cleanup_test_accounts true"


def test_prefix_stays_before_the_command():
    command = runbook_command("password-reset", "sandbox", {}, prefix="A=...")
    assert command.startswith("A=... runbook run password-reset --env sandbox")


@pytest.mark.parametrize("value", HOSTILE[:6])
def test_auth_verdict_quotes_user_ids_from_d1(env, value):
    unverified = Finding(
        "unverified", Status.FAIL, "3", facts={"user_ids": [value, "u-2", "u-3"]}
    )
    verdict = diagnose_auth_broken([unverified], environment=env, incident_id="I-1")
    step = verdict.gated_step
    assert ("user_id", value) in _options(step["command"])
    assert ("confirm", step["confirm"]) in _options(step["command"])


@pytest.mark.parametrize("value", HOSTILE[:6])
def test_auth_verdict_quotes_ips_from_kv_keys(env, value):
    limits = Finding("rate-limits", Status.FAIL, "x", facts={"limited_ips": [value]})
    step = diagnose_auth_broken([limits], environment=env).gated_step
    assert ("client_ip", value) in _options(step["command"])


@pytest.mark.parametrize("value", HOSTILE[:6])
def test_rollback_command_quotes_version_ids(env, value):
    step = rollback_step(
        env, "v-live", value, runbook="rollback", parameters={"version": value}
    )
    assert ("version", value) in _options(step["command"])


def test_deploy_verify_rollback_quotes_the_version(env, monkeypatch):
    import opslib._deployverify as deployverify

    hostile = HOSTILE[0]
    plan = ActionPlan("rollback", "sandbox", "w", "roll back", confirm_phrase="go")
    monkeypatch.setattr(deployverify, "plan_version_rollback", lambda *_: plan)
    choice = Finding(
        "rollback-choice",
        Status.OK,
        "x",
        facts={"chosen_version": hostile, "live_version": "v-live"},
    )
    step = deployverify._rollback_step(env, choice)
    assert ("version", hostile) in _options(step["command"])


def test_procedure_parameters_are_quoted():
    sql = "UPDATE users SET role = 'x' WHERE id = '$(touch MARK)'"
    assert _options(
        runbook_command(
            "database", "sandbox", write_parameters({"sql": sql, "max_rows": 1})
        )
    ) == [
        ("sql", sql),
        ("max_rows", "1"),
    ]
    secret = "JWT_SECRET$(touch MARK)"
    rotate = breach_parameters({"step": "rotate-secret", "secret_name": secret})
    assert ("secret_name", secret) in _options(
        runbook_command("security-breach", "sandbox", rotate)
    )
    charge = "ch_1;touch MARK"
    params = {"operation": "refund", "charge": charge, "amount_cents": 5}
    assert ("charge", charge) in _options(
        runbook_command("stripe", "sandbox", stripe_parameters(params))
    )


def test_placeholders_print_inside_quotes_and_stay_one_word():
    command = runbook_command(
        "password-reset", "sandbox", {"user_email": Placeholder("USER-EMAIL")}
    )
    assert "-p user_email 'USER-EMAIL'" in command
    hostile = Placeholder("it's $(x)")
    line = runbook_command("password-reset", "sandbox", {"user_email": hostile})
    assert _options(line) == [("user_email", "it's $(x)")]
