"""The auth-broken verdict from hand-made findings: order of causes and gated steps."""

import pytest

from opslib import Finding, Status, diagnose_auth_broken, load_environment


@pytest.fixture
def env():
    return load_environment("sandbox")


def _healthy(**changes):
    findings = {
        "sessions-kv": Finding("sessions-kv", Status.OK, "ok"),
        "login": Finding("login", Status.OK, "ok", facts={"login": 200}),
        "cookie": Finding("cookie", Status.OK, "ok"),
        "cors": Finding("cors", Status.OK, "ok", facts={"refused": []}),
        "rate-limits": Finding("rate-limits", Status.OK, "ok", facts={}),
        "unverified": Finding("unverified", Status.OK, "ok", facts={"user_ids": []}),
        "jwt-secret": Finding("jwt-secret", Status.OK, "ok"),
    }
    findings.update(changes)
    return list(findings.values())


def test_all_ok_is_healthy_with_no_gated_step(env):
    verdict = diagnose_auth_broken(_healthy(), environment=env)
    assert (verdict.cause, verdict.status, verdict.gated_step) == (
        "healthy",
        Status.OK,
        None,
    )


def test_refused_kv_write_wins_over_everything(env):
    verdict = diagnose_auth_broken(
        _healthy(
            **{
                "sessions-kv": Finding("sessions-kv", Status.FAIL, "write fails"),
                "login": Finding("login", Status.FAIL, "500", facts={"login": 500}),
                "jwt-secret": Finding("jwt-secret", Status.WARN, "missing"),
            }
        ),
        environment=env,
    )
    assert verdict.cause == "kv-sessions-unavailable"
    assert "JWT_SECRET plays no part" in verdict.next_action


def test_rate_limited_ip_gets_a_gated_clear_step(env):
    limits = Finding(
        "rate-limits", Status.FAIL, "limited", facts={"limited_ips": ["10.0.0.9"]}
    )
    verdict = diagnose_auth_broken(
        _healthy(**{"rate-limits": limits}), environment=env, incident_id="INC-7"
    )
    assert verdict.cause == "login-rate-limited"
    assert verdict.gated_step["ip"] == "10.0.0.9"
    assert verdict.gated_step["confirm"] == (
        "clear login rate limits of 10.0.0.9 in sandbox"
    )
    assert "-p client_ip 10.0.0.9" in verdict.gated_step["command"]


def test_login_429_without_counters_is_rate_limited_without_step(env):
    login = Finding("login", Status.FAIL, "429", facts={"login": 429})
    verdict = diagnose_auth_broken(_healthy(login=login), environment=env)
    assert verdict.cause == "login-rate-limited"
    assert verdict.gated_step is None


def test_unverified_accounts_offer_verifying_the_newest(env):
    unverified = Finding(
        "unverified", Status.FAIL, "3", facts={"user_ids": ["u-1", "u-2", "u-3"]}
    )
    verdict = diagnose_auth_broken(_healthy(unverified=unverified), environment=env)
    assert verdict.cause == "unverified-accounts"
    assert verdict.gated_step["user_id"] == "u-1"


def test_a_few_unverified_accounts_do_not_raise_an_alarm(env):
    unverified = Finding("unverified", Status.WARN, "1", facts={"user_ids": ["u"]})
    verdict = diagnose_auth_broken(_healthy(unverified=unverified), environment=env)
    assert (verdict.cause, verdict.status) == ("healthy", Status.OK)


def test_refused_origin_is_cors_origin_missing(env):
    cors = Finding(
        "cors", Status.FAIL, "x", facts={"refused": ["https://dashboard.example.com"]}
    )
    verdict = diagnose_auth_broken(_healthy(cors=cors), environment=env)
    assert verdict.cause == "cors-origin-missing"
    assert "https://dashboard.example.com" in verdict.summary


def test_missing_jwt_secret_is_named_and_said_harmless_to_cookies(env):
    jwt = Finding("jwt-secret", Status.WARN, "JWT_SECRET is not set")
    verdict = diagnose_auth_broken(_healthy(**{"jwt-secret": jwt}), environment=env)
    assert (verdict.cause, verdict.status) == ("jwt-secret-missing", Status.WARN)
    assert "does not break cookie sessions" in verdict.summary


def test_failed_login_without_a_cause_is_inconclusive(env):
    login = Finding("login", Status.FAIL, "400", facts={"login": 400})
    verdict = diagnose_auth_broken(_healthy(login=login), environment=env)
    assert (verdict.cause, verdict.status) == ("inconclusive", Status.FAIL)
    assert "no checked cause explains it" in verdict.summary


def test_unreachable_platform_is_inconclusive_unknown(env):
    login = Finding("login", Status.UNKNOWN, "no answer")
    verdict = diagnose_auth_broken(_healthy(login=login), environment=env)
    assert (verdict.cause, verdict.status) == ("inconclusive", Status.UNKNOWN)
    assert "Could not check: login" in verdict.summary
    assert "login probe could not be judged" in verdict.summary
    assert "Logins fail" not in verdict.summary
