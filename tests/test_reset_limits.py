"""The gated clearing of one IP's password-reset counters: the verdict's step,
then dry run, refusal, stale plan and application on the sandbox."""

import json

import pytest

from opslib import (
    CloudflareClient,
    Finding,
    Status,
    apply_action,
    check_email_vars,
    check_reset_limits,
    check_reset_tokens,
    diagnose_password_reset,
    load_environment,
    plan_clear_reset_limits,
    plan_reset_repair,
    probe_reset_request,
)
from opslib._counters import read_counters
from opslib._resetlimits import reset_counter_keys


def _full(ip):
    return {"ip": ip, "path": "/auth/password-reset-request", "at_limit": True}


def test_reset_counter_keys_cover_both_paths_by_ip_and_endpoint():
    assert reset_counter_keys("10.0.0.7") == (
        "rate_limit:ip:10.0.0.7:_auth_password-reset-request",
        "rate_limit:ip:10.0.0.7:_auth_password-reset",
        "rate_limit:endpoint:10.0.0.7:/auth/password-reset-request",
        "rate_limit:endpoint:10.0.0.7:/auth/password-reset",
    )


def test_rate_limited_verdict_offers_clearing_the_ip_with_most_full_counters():
    environment = load_environment("sandbox")
    limits = Finding(
        "reset-limits",
        Status.FAIL,
        "full",
        facts={"at_limit": [_full("10.0.0.7"), _full("10.0.0.9"), _full("10.0.0.9")]},
    )
    verdict = diagnose_password_reset(
        [limits], environment=environment, user_email="a@example.com", incident_id="I-3"
    )
    step = verdict.gated_step
    assert (verdict.cause, step["action"], step["ip"]) == (
        "reset-rate-limited",
        "clear-reset-limits",
        "10.0.0.9",
    )
    assert step["confirm"] == "clear password-reset limits of 10.0.0.9 in sandbox"
    assert "I-3" in step["command"] and "-p apply true" in step["command"]


def test_rate_limited_by_the_probe_alone_names_no_ip_and_no_step():
    environment = load_environment("sandbox")
    request = Finding("reset-request", Status.FAIL, "429", facts={"rate_limited": True})
    verdict = diagnose_password_reset([request], environment=environment)
    assert verdict.cause == "reset-rate-limited"
    assert verdict.gated_step is None
    assert "wrangler kv key delete" in verdict.next_action


@pytest.fixture()
def limited(sandbox):
    sandbox.reset("reset-rate-limited")
    environment = load_environment("sandbox")
    limits = check_reset_limits(environment)
    verdict = diagnose_password_reset([limits], environment=environment)
    return environment, plan_reset_repair(environment, verdict), sandbox.truth()


def _counters(environment, ip):
    return read_counters(environment, reset_counter_keys(ip))


def test_plan_keeps_the_full_counters_as_before_image(limited):
    _, plan, truth = limited
    assert plan.action == "clear-reset-limits"
    assert plan.target == truth["details"]["ip"]
    assert sorted(plan.before["keys"]) == sorted(truth["details"]["keys"])
    assert all(v["count"] == 3 for v in plan.before["keys"].values())
    assert (
        plan.confirm_phrase
        == f"clear password-reset limits of {plan.target} in sandbox"
    )


def test_dry_run_and_a_wrong_phrase_change_nothing(limited):
    environment, plan, _ = limited
    assert apply_action(plan, environment=environment).outcome == "dry-run"
    refused = apply_action(plan, environment=environment, apply=True, confirm="yes")
    assert refused.outcome == "refused"
    assert sorted(_counters(environment, plan.target)) == sorted(plan.before["keys"])


def test_a_counter_in_a_new_window_makes_the_plan_stale(limited):
    environment, plan, _ = limited
    key = next(iter(plan.before["keys"]))
    client = CloudflareClient(environment)
    try:
        client.kv_put(
            environment.kv_namespaces["SESSIONS"],
            key,
            json.dumps({"count": 1, "resetAt": 1}).encode(),
            ttl=3600,
        )
    finally:
        client.close()
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "stale" in result.detail
    assert sorted(_counters(environment, plan.target)) == sorted(plan.before["keys"])


def test_applied_clearing_deletes_the_counters_and_lets_resets_through(limited):
    environment, plan, _ = limited
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied", result.detail
    assert sorted(result.response["deleted"]) == sorted(plan.before["keys"])
    assert result.after is not None and result.after.status is Status.OK
    assert _counters(environment, plan.target) == {}
    assert check_reset_limits(environment).status is Status.OK
    assert probe_reset_request(environment).status is Status.OK


def test_no_counters_left_is_a_noop_plan(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    plan = plan_clear_reset_limits(environment, "127.0.0.1")
    assert plan.is_noop
    assert apply_action(plan, environment=environment, apply=True).outcome == (
        "not-needed"
    )


def test_other_causes_still_plan_the_manual_reset(sandbox):
    sandbox.reset("email-vars-missing")
    environment = load_environment("sandbox")
    email = "author0003@example.com"
    verdict = diagnose_password_reset(
        [check_email_vars(environment), check_reset_tokens(environment, email)],
        environment=environment,
        user_email=email,
    )
    assert plan_reset_repair(environment, verdict).action == "set-password-hash"
