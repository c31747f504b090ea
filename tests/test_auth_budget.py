"""The auth-broken runbook spares the login limit it diagnoses, and reads IPv6 keys.

The login probe spends one of the five attempts per 15 minutes of its own
address; the counters are read before it, and it is skipped when one more attempt
would reach the limit. Counter keys of IPv6 clients hold colons in the address.
"""

import json
import shlex

import pytest

import opslib
from opslib import Status, load_environment
from opslib._auth import LOGIN_LIMIT, login_counter_keys
from opslib._counters import parse_counter_key
from opslib._time import utcnow


@pytest.fixture
def env(sandbox):
    return load_environment("sandbox")


def _run_checks(env):
    """The runbook's checks in the notebook's order, then the verdict."""
    limits = opslib.check_login_rate_limits(env)
    login = opslib.probe_login(env, limits)
    findings = [
        opslib.check_sessions_kv(env),
        limits,
        login,
        opslib.check_session_cookie(login),
        opslib.check_cors(env),
        opslib.check_unverified_logins(env),
        opslib.check_jwt_secret(env),
    ]
    return opslib.diagnose_auth_broken(findings, environment=env), login


def _put_counters(env, ip, count, left_s=600):
    reset_at = int((utcnow().timestamp() + left_s) * 1000)
    client = opslib.CloudflareClient(env)
    try:
        for key in login_counter_keys(ip):
            value = json.dumps({"count": count, "resetAt": reset_at}).encode()
            client.kv_put(env.kv_namespaces["SESSIONS"], key, value, ttl=left_s)
    finally:
        client.close()


def test_many_runs_on_healthy_stay_healthy_and_never_lock_out(sandbox, env):
    sandbox.reset("healthy")
    logins = []
    for _ in range(LOGIN_LIMIT + 2):
        verdict, login = _run_checks(env)
        assert verdict.cause == "healthy", verdict.summary
        logins.append(login)
    assert opslib.check_login_rate_limits(env).facts["limited_ips"] == []
    probed = [f for f in logins if not f.facts.get("skipped")]
    skipped = [f for f in logins if f.facts.get("skipped")]
    assert len(probed) == LOGIN_LIMIT - 1
    assert all(f.status is Status.OK for f in probed)
    assert all("added 1 login attempt" in f.summary for f in probed)
    assert skipped and all("resets in" in f.summary for f in skipped)
    assert all(f.facts["ips"] == ["127.0.0.1"] for f in skipped)


def test_rate_limited_scenario_is_still_named_without_probing(sandbox, env):
    sandbox.reset("login-rate-limited")
    before = opslib.check_login_rate_limits(env).facts["attempts"]["127.0.0.1"]
    verdict, login = _run_checks(env)
    assert verdict.cause == "login-rate-limited"
    assert verdict.gated_step["ip"] == "127.0.0.1"
    assert login.facts["skipped"] is True
    after = opslib.check_login_rate_limits(env).facts["attempts"]["127.0.0.1"]
    assert after["count"] == before["count"]


def test_probe_without_counters_read_first_still_logs_in(sandbox, env):
    sandbox.reset("healthy")
    assert opslib.probe_login(env).status is Status.OK


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("rate_limit:login:2001:db8::7", ("login", "2001:db8::7", "/auth/login")),
        ("rate_limit:ip:2001:db8::7:_auth_login", ("ip", "2001:db8::7", "/auth/login")),
        (
            "rate_limit:endpoint:2001:db8::7:/auth/login",
            ("endpoint", "2001:db8::7", "/auth/login"),
        ),
        (
            "rate_limit:ip:::1:_auth_password-reset-request",
            ("ip", "::1", "/auth/password-reset-request"),
        ),
        (
            "rate_limit:endpoint:10.0.0.9:/auth/login",
            ("endpoint", "10.0.0.9", "/auth/login"),
        ),
    ],
)
def test_counter_keys_keep_the_whole_address(key, parsed):
    assert parse_counter_key(key) == parsed


def test_ipv6_client_at_the_limit_is_named_and_cleared_end_to_end(
    sandbox, env, tmp_path
):
    sandbox.reset("healthy")
    ip = "2001:db8::7"
    _put_counters(env, ip, LOGIN_LIMIT)
    limits = opslib.check_login_rate_limits(env, ip)
    assert limits.facts["limited_ips"] == [ip]
    verdict, _ = _run_checks(env)
    step = verdict.gated_step
    assert (verdict.cause, step["ip"]) == ("login-rate-limited", ip)
    words = shlex.split(step["command"])
    assert words[words.index("client_ip") + 1] == ip
    assert words[words.index("confirm") + 1] == step["confirm"]
    assert ip in step["confirm"]
    plan = opslib.plan_auth_repair(env, verdict, client_ip=ip)
    assert plan.confirm_phrase == step["confirm"]
    result = opslib.apply_action(
        plan,
        environment=env,
        apply=True,
        confirm=step["confirm"],
        verify=lambda: opslib.verify_auth_repair(env, plan),
    )
    assert result.outcome == "applied", result.detail
    assert opslib.check_login_rate_limits(env).facts["limited_ips"] == []
