"""The auth-broken repairs at the gate: dry run, wrong phrase, stale plan, applied."""

import pytest

import opslib
from opslib import Status, apply_action, load_environment
from opslib._auth import login_counter_keys

IP = "127.0.0.1"


@pytest.fixture
def env(sandbox):
    return load_environment("sandbox")


def _counters(env, ip=IP):
    client = opslib.CloudflareClient(env)
    try:
        found = {
            key: client.kv_get(env.kv_namespaces["SESSIONS"], key)
            for key in login_counter_keys(ip)
        }
    finally:
        client.close()
    return {k: v for k, v in found.items() if v is not None}


def _verified(env, user_id):
    client = opslib.CloudflareClient(env)
    try:
        rows = client.d1_query(
            "SELECT email_verified FROM users WHERE id = ?", [user_id]
        )[0]["results"]
    finally:
        client.close()
    return rows[0]["email_verified"]


def _apply(plan, env, **kwargs):
    return apply_action(
        plan,
        environment=env,
        verify=lambda: opslib.verify_auth_repair(env, plan),
        **kwargs,
    )


@pytest.fixture
def limited(sandbox, env):
    sandbox.reset("login-rate-limited")
    return opslib.plan_clear_rate_limits(env, IP)


@pytest.fixture
def unverified(sandbox, env):
    sandbox.reset("unverified-accounts")
    user_id = sandbox.truth()["details"]["user_ids"][0]
    return opslib.plan_verify_account(env, user_id)


def test_clear_plan_holds_the_keys_and_values_as_before_image(limited):
    assert sorted(limited.before["keys"]) == sorted(login_counter_keys(IP))
    assert all(v["count"] == 5 for v in limited.before["keys"].values())
    assert limited.confirm_phrase == "clear login rate limits of 127.0.0.1 in sandbox"


def test_clear_dry_run_changes_nothing(limited, env):
    result = _apply(limited, env, apply=False, confirm=limited.confirm_phrase)
    assert result.outcome == "dry-run"
    assert len(_counters(env)) == 3


def test_clear_with_wrong_phrase_is_refused(limited, env):
    result = _apply(limited, env, apply=True, confirm="clear login rate limits")
    assert result.outcome == "refused"
    assert len(_counters(env)) == 3


def test_clear_applied_deletes_the_counters_and_login_works(limited, env):
    result = _apply(limited, env, apply=True, confirm=limited.confirm_phrase)
    assert result.outcome == "applied", result.detail
    assert result.to_dict()["plan"]["before"]["keys"] == dict(limited.before["keys"])
    assert result.response["deleted"] == dict(limited.before["keys"])
    assert result.after is not None and result.after.status is Status.OK
    assert _counters(env) == {}
    assert opslib.probe_login(env).status is Status.OK


def test_clear_refuses_a_stale_plan(limited, env, sandbox):
    sandbox.reset("healthy")
    result = _apply(limited, env, apply=True, confirm=limited.confirm_phrase)
    assert result.outcome == "refused"
    assert "stale" in result.detail


def test_verify_plan_before_image_is_the_row_without_email(unverified):
    row = unverified.before["row"]
    assert row["email_verified"] == 0
    assert "email" not in row and "password_hash" not in row
    assert unverified.confirm_phrase.startswith("mark user ")


def test_verify_dry_run_changes_nothing(unverified, env):
    result = _apply(unverified, env, apply=False)
    assert result.outcome == "dry-run"
    assert _verified(env, unverified.target) == 0


def test_verify_with_wrong_phrase_is_refused(unverified, env):
    result = _apply(unverified, env, apply=True, confirm="mark user verified")
    assert result.outcome == "refused"
    assert _verified(env, unverified.target) == 0


def test_verify_applied_sets_the_flag_and_records_the_before_image(unverified, env):
    result = _apply(unverified, env, apply=True, confirm=unverified.confirm_phrase)
    assert result.outcome == "applied", result.detail
    assert result.to_dict()["plan"]["before"]["row"]["email_verified"] == 0
    assert result.after is not None and result.after.status is Status.OK
    assert _verified(env, unverified.target) == 1


def test_verify_refuses_an_account_already_verified(unverified, env):
    first = _apply(unverified, env, apply=True, confirm=unverified.confirm_phrase)
    second = _apply(unverified, env, apply=True, confirm=unverified.confirm_phrase)
    assert (first.outcome, second.outcome) == ("applied", "refused")
    assert "stale" in second.detail


def test_healthy_verdict_plans_no_repair(sandbox, env):
    sandbox.reset("healthy")
    verdict = opslib.diagnose_auth_broken([], environment=env)
    plan = opslib.plan_auth_repair(env, verdict)
    assert plan.is_noop
    assert apply_action(plan, environment=env, apply=True).outcome == "not-needed"


def test_verify_plan_for_an_unknown_user_says_no_such_user(sandbox, env):
    sandbox.reset("unverified-accounts")
    plan = opslib.plan_verify_account(env, "u-does-not-exist")
    assert plan.is_noop
    assert "no such user" in plan.summary
    assert "stale" not in plan.summary


def test_asked_user_is_the_one_the_step_prints_and_the_plan_targets(sandbox, env):
    sandbox.reset("unverified-accounts")
    unverified = opslib.check_unverified_logins(env, "24h")
    newest = unverified.facts["user_ids"][0]
    asked = next(u for u in sandbox.truth()["details"]["user_ids"] if u != newest)
    verdict = opslib.diagnose_auth_broken([unverified], environment=env, user_id=asked)
    plan = opslib.plan_auth_repair(env, verdict, user_id=asked)
    assert verdict.gated_step["user_id"] == plan.target == asked
    assert f"-p user_id {asked}" in verdict.gated_step["command"]
    assert verdict.gated_step["confirm"] == plan.confirm_phrase
