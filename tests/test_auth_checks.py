"""The auth-broken checks against the session sandbox, one scenario at a time."""

import pytest

import opslib
from opslib import Finding, Status, load_environment
from opslib._unreached import fault_kind


@pytest.fixture
def env(sandbox):
    return load_environment("sandbox")


def test_kv_client_puts_reads_lists_and_deletes_a_key(sandbox, env):
    sandbox.reset("healthy")
    client = opslib.CloudflareClient(env)
    namespace = env.kv_namespaces["SESSIONS"]
    try:
        client.kv_put(namespace, "runbook-test:a/b", b"value", ttl=60)
        assert client.kv_get(namespace, "runbook-test:a/b") == b"value"
        listed = client.kv_list_keys(namespace, prefix="runbook-test:")
        assert [k["name"] for k in listed] == ["runbook-test:a/b"]
        client.kv_delete(namespace, "runbook-test:a/b")
        assert client.kv_get(namespace, "runbook-test:a/b") is None
    finally:
        client.close()


def test_kv_get_on_a_missing_namespace_raises(sandbox, env):
    sandbox.reset("healthy")
    client = opslib.CloudflareClient(env)
    try:
        with pytest.raises(opslib.APIError, match="10013"):
            client.kv_get("0" * 32, "anything")
    finally:
        client.close()


def test_healthy_sandbox_passes_every_check(sandbox, env):
    sandbox.reset("healthy")
    login = opslib.probe_login(env)
    findings = [
        opslib.check_sessions_kv(env),
        login,
        opslib.check_session_cookie(login),
        opslib.check_cors(env),
        opslib.check_login_rate_limits(env),
        opslib.check_unverified_logins(env),
        opslib.check_jwt_secret(env),
    ]
    assert [f.name for f in findings if f.status is not Status.OK] == []


def test_login_probe_never_keeps_the_cookie_value(sandbox, env):
    sandbox.reset("healthy")
    login = opslib.probe_login(env)
    assert login.facts["cookie"]["max-age"] == "1800"
    text = repr(login.to_dict()) + repr(login.facts)
    assert "session_id=" not in text
    assert env.secret("RUNBOOK_TEST_ACCOUNT_PASSWORD") not in text


def test_login_probe_without_password_is_unknown(sandbox, env):
    bare = opslib.Environment(**{**env.__dict__, "secrets": {}})
    finding = opslib.probe_login(bare)
    assert finding.status is Status.UNKNOWN
    assert "RUNBOOK_TEST_ACCOUNT_PASSWORD" in finding.summary


def test_a_login_answer_cut_short_is_unknown_naming_the_platform(sandbox, env):
    sandbox.reset("healthy")
    sandbox.fault("platform", "truncated")
    try:
        login = opslib.probe_login(env)
    finally:
        sandbox.clear_faults()

    assert login.status is Status.UNKNOWN
    assert login.summary.startswith("login not judged: platform: HTTP 200 with a body")
    assert login.facts["login"] == 200
    assert fault_kind(login) == "server"  # the advice: it failed on its side
    # The cut body is never shown as the answer's error text.
    assert "Login successful" not in repr(login.to_dict()) + repr(login.facts)
    assert opslib.probe_login(env).status is Status.OK


def test_cookie_check_names_wrong_attributes():
    login = Finding(
        "login",
        Status.OK,
        "ok",
        facts={"cookie": {"path": "/", "domain": ".example.com", "max-age": "60"}},
    )
    finding = opslib.check_session_cookie(login)
    assert finding.status is Status.FAIL
    assert finding.facts["wrong"] == ["httponly", "secure", "samesite", "max-age"]


def test_refused_kv_writes_fail_the_sessions_check(sandbox, env):
    sandbox.reset("kv-sessions-unavailable")
    finding = opslib.check_sessions_kv(env)
    assert finding.status is Status.FAIL
    assert finding.facts["failed"] == ["write"]
    assert opslib.probe_login(env).facts["login"] == 500


def test_missing_origin_fails_cors(sandbox, env):
    sandbox.reset("cors-origin-missing")
    finding = opslib.check_cors(env)
    assert finding.status is Status.FAIL
    assert finding.facts["refused"] == ["https://dashboard.example.com"]


def test_cors_without_allowed_origins_is_unknown(sandbox, env):
    bare = opslib.Environment(**{**env.__dict__, "allowed_origins": ()})
    assert opslib.check_cors(bare).status is Status.UNKNOWN


def test_counters_at_the_limit_name_the_ip(sandbox, env):
    sandbox.reset("login-rate-limited")
    finding = opslib.check_login_rate_limits(env)
    assert finding.status is Status.FAIL
    assert finding.facts["limited_ips"] == ["127.0.0.1"]
    assert opslib.probe_login(env).facts["login"] == 429


def test_unverified_accounts_with_failed_logins_raise_the_alarm(sandbox, env):
    sandbox.reset("unverified-accounts")
    finding = opslib.check_unverified_logins(env, "24h")
    assert finding.status is Status.FAIL
    expected = sandbox.truth()["details"]["user_ids"]
    assert sorted(finding.facts["user_ids"]) == sorted(expected)


def test_missing_jwt_secret_is_a_warning_with_the_secret_edit(sandbox, env):
    sandbox.reset("jwt-secret-missing")
    finding = opslib.check_jwt_secret(env)
    assert finding.status is Status.WARN
    assert finding.facts["last_secret_edit"]
    assert opslib.probe_login(env).status is Status.OK
