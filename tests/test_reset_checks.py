"""The password-reset checks and verdict against each reset scenario."""

import dataclasses
import shlex

import pytest

from opslib import (
    Finding,
    Status,
    check_email_vars,
    check_mail_provider,
    check_reset_limits,
    check_reset_precheck,
    check_reset_tokens,
    diagnose_password_reset,
    load_environment,
    probe_reset_request,
)
from opslib._reset import _counter_row
from opslib._unreached import fault_kind


@pytest.fixture()
def env_for(sandbox):
    def switch(scenario):
        sandbox.reset(scenario)
        return load_environment("sandbox")

    return switch


def run_all(environment, user_email=""):
    request = probe_reset_request(environment)
    email_vars = check_email_vars(environment)
    return [
        check_reset_limits(environment),
        email_vars,
        check_mail_provider(
            environment, sender=email_vars.facts.get("from_address", "")
        ),
        request,
        check_reset_precheck(environment, request),
        check_reset_tokens(environment, user_email),
    ]


def test_healthy_flow_is_all_ok_and_healthy(env_for):
    environment = env_for("healthy")
    findings = run_all(environment)
    assert [f.status for f in findings] == [Status.OK] * 6
    verdict = diagnose_password_reset(findings, environment=environment)
    assert (verdict.cause, verdict.status, verdict.gated_step) == (
        "healthy",
        Status.OK,
        None,
    )


def test_full_counters_fail_and_the_request_is_refused(env_for, sandbox):
    environment = env_for("reset-rate-limited")
    limits = check_reset_limits(environment)
    request = probe_reset_request(environment)
    assert limits.status is Status.FAIL
    assert {row["ip"] for row in limits.facts["at_limit"]} == {"127.0.0.1"}
    assert request.facts["rate_limited"] is True
    assert check_reset_precheck(environment, request).status is Status.UNKNOWN


def test_missing_vars_are_named(env_for):
    finding = check_email_vars(env_for("email-vars-missing"))
    assert finding.status is Status.FAIL
    assert "FRONTEND_URL" in finding.facts["missing"]
    assert len(finding.facts["missing"]) == 5


def test_refused_keyless_send_fails_the_provider_check(env_for):
    finding = check_mail_provider(env_for("mail-provider-unauthorized"))
    assert finding.status is Status.FAIL
    assert finding.facts["status_code"] == 401
    assert "active subscription" in finding.summary


def test_reset_answers_cut_short_are_unknown_naming_the_platform(env_for, sandbox):
    environment = env_for("healthy")
    sandbox.fault("platform", "truncated")
    try:
        cut_request = probe_reset_request(environment)
    finally:
        sandbox.clear_faults()
    request = probe_reset_request(environment)
    sandbox.fault("platform", "truncated")
    try:
        cut_precheck = check_reset_precheck(environment, request)
    finally:
        sandbox.clear_faults()

    assert request.status is Status.OK
    for finding in (cut_request, cut_precheck):
        assert finding.status is Status.UNKNOWN, finding
        assert finding.summary.startswith("platform: HTTP 200 with a body that is")
        assert fault_kind(finding) == "server"


def test_consuming_precheck_is_detected_from_behaviour(env_for):
    environment = env_for("reset-token-consumed-by-precheck")
    finding = check_reset_precheck(environment, probe_reset_request(environment))
    assert finding.status is Status.FAIL
    assert finding.facts["consumed"] is True


def test_tokens_of_a_user_show_states_and_no_token_values(env_for):
    environment = env_for("healthy")
    probe_reset_request(environment)
    finding = check_reset_tokens(environment)
    assert finding.facts["states"]["issued"] >= 1
    assert all("token" not in row for row in finding.evidence)


def test_unknown_user_is_a_warning(env_for):
    finding = check_reset_tokens(env_for("healthy"), "nobody@example.com")
    assert finding.status is Status.WARN
    assert finding.facts["user_id"] is None


def test_unreachable_mailchannels_is_unknown(env_for):
    closed = dataclasses.replace(
        env_for("healthy"), mailchannels_url="http://127.0.0.1:9/tx/v1"
    )
    assert check_mail_provider(closed).status is Status.UNKNOWN


def test_environment_without_mailchannels_url_is_unknown(env_for):
    bare = dataclasses.replace(env_for("healthy"), mailchannels_url="")
    finding = check_mail_provider(bare)
    assert finding.status is Status.UNKNOWN
    assert "mailchannels_url" in finding.summary


@pytest.mark.parametrize(
    ("name", "ip", "path"),
    [
        (
            "rate_limit:ip:10.0.0.1:_auth_password-reset",
            "10.0.0.1",
            "/auth/password-reset",
        ),
        ("rate_limit:ip:::1:_auth_password-reset", "::1", "/auth/password-reset"),
        (
            "rate_limit:endpoint:10.0.0.1:/auth/password-reset-request",
            "10.0.0.1",
            "/auth/password-reset-request",
        ),
    ],
)
def test_counter_keys_parse_ip_and_path(name, ip, path):
    row = _counter_row(name, b'{"count": 3, "resetAt": 9999999999999}', 0)
    assert (row["ip"], row["path"], row["at_limit"]) == (ip, path, True)


def test_expired_counter_is_not_at_limit():
    row = _counter_row(
        "rate_limit:ip:1.2.3.4:_auth_password-reset", b'{"count": 3, "resetAt": 5}', 10
    )
    assert row["at_limit"] is False


def finding(name, status, **facts):
    return Finding(name, status, name, facts=facts)


def test_rate_limit_outweighs_the_precheck(sandbox):
    environment = load_environment("sandbox")
    verdict = diagnose_password_reset(
        [
            finding("reset-limits", Status.FAIL),
            finding("reset-precheck", Status.FAIL, consumed=True),
            finding("reset-request", Status.FAIL, rate_limited=True),
        ],
        environment=environment,
    )
    assert verdict.cause == "reset-rate-limited"


def test_failing_mail_provider_outranks_full_counters(sandbox):
    environment = load_environment("sandbox")
    full = [{"ip": "127.0.0.1", "path": "/auth/password-reset-request"}]
    verdict = diagnose_password_reset(
        [
            finding("reset-limits", Status.FAIL, at_limit=full),
            finding("mail-provider", Status.FAIL),
            finding("reset-request", Status.FAIL, rate_limited=True),
        ],
        environment=environment,
    )
    assert verdict.cause == "mail-provider-unauthorized"
    assert verdict.gated_step is None
    assert "127.0.0.1" in verdict.next_action


def test_probe_is_skipped_one_request_short_of_the_limit(sandbox):
    environment = load_environment("sandbox")
    row = {"ip": "127.0.0.1", "path": "/auth/password-reset-request", "count": 2}
    limits = finding(
        "reset-limits", Status.OK, near_limit=[{**row, "resets_in_min": 41}]
    )
    request = probe_reset_request(environment, limits)
    assert request.status is Status.UNKNOWN and request.facts["skipped"] is True
    assert "41 min" in request.summary
    assert check_reset_precheck(environment, request).status is Status.UNKNOWN


def test_skipped_probe_still_allows_healthy(sandbox):
    environment = load_environment("sandbox")
    verdict = diagnose_password_reset(
        [
            finding("email-vars", Status.OK),
            finding("mail-provider", Status.OK),
            finding("reset-request", Status.UNKNOWN, skipped=True),
            finding("reset-precheck", Status.UNKNOWN),
        ],
        environment=environment,
    )
    assert verdict.cause == "healthy" and verdict.status is Status.WARN


def test_nothing_reachable_says_so_and_claims_no_failure(sandbox):
    environment = load_environment("sandbox")
    verdict = diagnose_password_reset(
        [finding(n, Status.UNKNOWN) for n in ("reset-limits", "email-vars")],
        environment=environment,
    )
    assert verdict.status is Status.UNKNOWN
    assert verdict.summary.startswith("Nothing could be checked")
    assert "fails" not in verdict.summary
    assert verdict.next_action.startswith("Fix access (")


def test_unknown_steps_give_inconclusive(sandbox):
    environment = load_environment("sandbox")
    verdict = diagnose_password_reset(
        [finding("reset-request", Status.UNKNOWN)], environment=environment
    )
    assert (verdict.cause, verdict.status) == ("inconclusive", Status.UNKNOWN)


def test_manual_reset_is_offered_only_with_a_user(sandbox):
    environment = load_environment("sandbox")
    found = [
        finding("email-vars", Status.FAIL),
        finding("reset-tokens", Status.OK, user_id="u-1"),
    ]
    without = diagnose_password_reset(found, environment=environment)
    named = diagnose_password_reset(
        found, environment=environment, user_email="a@example.com", incident_id="INC-3"
    )
    assert without.gated_step is None and "user_email" in without.next_action
    assert named.gated_step["confirm"] == "set password of user u-1 in sandbox"
    assert "RUNBOOK_NEW_PASSWORD=" in named.gated_step["command"]


def test_manual_reset_command_is_shell_safe_with_a_stated_placeholder(sandbox):
    environment = load_environment("sandbox")
    found = [
        finding("email-vars", Status.FAIL),
        finding("reset-tokens", Status.OK, user_id="u-1"),
    ]
    verdict = diagnose_password_reset(
        found, environment=environment, user_email="a@example.com", incident_id="I-3"
    )
    command = verdict.gated_step["command"]
    words = shlex.split(command)
    assert "a@example.com" not in command and "<" not in command
    assert words[words.index("user_email") + 1] == "USER-EMAIL"
    assert "USER-EMAIL" in verdict.gated_step["fill_in"]
    assert "USER-EMAIL" in verdict.next_action
