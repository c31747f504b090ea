"""The api-down verdict from findings alone: one row per situation."""

import pytest

from opslib import Finding, Status, diagnose_api_down, load_environment

OK, WARN, FAIL, UNKNOWN = Status.OK, Status.WARN, Status.FAIL, Status.UNKNOWN
RECENT = {
    "is_recent": True,
    "live_version": "bad-v",
    "previous_version": "good-v",
    "live_number": 6,
    "previous_number": 5,
    "live_deployed_at": "2026-12-04T10:00:00Z",
}
OLD = {**RECENT, "is_recent": False}
BY_SECRET = {**RECENT, "live_triggered_by": "secret"}


def findings(probe=OK, deployments=(OK, OLD), d1=OK, secrets=OK, kv=OK, status=OK):
    return [
        Finding("probe", probe, "probe"),
        Finding("deployments", deployments[0], "deployments", facts=deployments[1]),
        Finding("d1", d1, "d1"),
        Finding(
            "secrets", secrets, "secrets", facts={"missing": ["STRIPE_SECRET_KEY"]}
        ),
        Finding("kv-binding", kv, "kv"),
        Finding("cloudflare-status", status, "status"),
    ]


@pytest.fixture(scope="module")
def environment():
    return load_environment("sandbox")


@pytest.mark.parametrize(
    ("situation", "cause", "status"),
    [
        (findings(), "healthy", OK),
        (findings(deployments=(WARN, RECENT)), "healthy", OK),
        (findings(probe=FAIL, deployments=(WARN, RECENT)), "bad-deployment", FAIL),
        (findings(probe=FAIL, deployments=(OK, OLD)), "inconclusive", FAIL),
        (findings(d1=FAIL), "d1-unavailable", FAIL),
        (findings(probe=FAIL, kv=FAIL), "kv-binding", FAIL),
        (findings(secrets=FAIL, deployments=(WARN, RECENT)), "missing-secret", WARN),
        (
            findings(probe=FAIL, secrets=FAIL, deployments=(WARN, OLD)),
            "missing-secret",
            FAIL,
        ),
        (
            findings(probe=FAIL, secrets=FAIL, deployments=(WARN, RECENT)),
            "bad-deployment",
            FAIL,
        ),
        (
            findings(probe=FAIL, secrets=FAIL, deployments=(WARN, BY_SECRET)),
            "missing-secret",
            FAIL,
        ),
        (findings(status=FAIL), "healthy", WARN),
        (findings(d1=UNKNOWN, secrets=UNKNOWN), "healthy", WARN),
        (
            findings(probe=FAIL, status=FAIL, deployments=(WARN, RECENT)),
            "cloudflare-outage",
            FAIL,
        ),
        (findings(probe=UNKNOWN), "inconclusive", UNKNOWN),
        (findings(d1=UNKNOWN), "healthy", WARN),
    ],
)
def test_diagnosis_names_the_cause(environment, situation, cause, status):
    verdict = diagnose_api_down(situation, environment=environment, incident_id="INC-1")
    assert (verdict.cause, verdict.status) == (cause, status)


def test_only_a_bad_deployment_gets_a_gated_rollback(environment):
    bad = diagnose_api_down(
        findings(probe=FAIL, deployments=(WARN, RECENT)),
        environment=environment,
        incident_id="INC-7",
    )
    other = diagnose_api_down(findings(d1=FAIL), environment=environment)
    assert bad.gated_step["from_version"] == "bad-v"
    assert bad.gated_step["to_version"] == "good-v"
    assert (
        bad.gated_step["confirm"]
        == "rollback manuscript-upload-api to good-v in sandbox"
    )
    assert "-p incident_id INC-7" in bad.gated_step["command"]
    assert "-p lookback 6h" in bad.gated_step["command"]
    assert other.gated_step is None


def test_bad_deployment_without_an_earlier_version_offers_no_rollback(environment):
    facts = {**RECENT, "previous_version": None}
    verdict = diagnose_api_down(
        findings(probe=FAIL, deployments=(WARN, facts)), environment=environment
    )
    assert verdict.cause == "bad-deployment"
    assert verdict.gated_step is None
    assert "redeploy a known-good commit" in verdict.next_action


def test_missing_findings_count_as_unknown(environment):
    verdict = diagnose_api_down(
        [Finding("probe", FAIL, "500s")], environment=environment
    )
    assert verdict.cause == "inconclusive"


def _blind(name, error):
    return Finding(name, UNKNOWN, f"{name}: could not look", facts={"error": error})


def _healthy_but_blind(environment, *blind):
    names = {f.name for f in blind}
    kept = [f for f in findings() if f.name not in names]
    return diagnose_api_down([*kept, *blind], environment=environment)


def test_a_rate_limited_check_asks_to_wait_not_to_fix_access(environment):
    verdict = _healthy_but_blind(environment, _blind("d1", "RateLimitError"))
    assert verdict.cause == "healthy"
    assert "d1 met a rate limit" in verdict.next_action
    assert "credentials" not in verdict.next_action


def test_an_unreachable_check_asks_to_fix_access(environment):
    verdict = _healthy_but_blind(environment, _blind("d1", "UnreachableError"))
    assert "credentials" in verdict.next_action
    assert "rate limit" not in verdict.next_action


def test_mixed_blind_checks_get_each_advice(environment):
    verdict = _healthy_but_blind(
        environment,
        _blind("d1", "RateLimitError"),
        _blind("secrets", "AuthError"),
    )
    assert "For secrets, fix access" in verdict.next_action
    assert "d1 met a rate limit" in verdict.next_action


def test_an_inconclusive_failure_with_rate_limited_checks_asks_to_wait(environment):
    limited = _blind("deployments", "RateLimitError")
    kept = [f for f in findings(probe=FAIL) if f.name != "deployments"]
    verdict = diagnose_api_down([*kept, limited], environment=environment)
    assert verdict.cause == "inconclusive"
    assert "deployments met a rate limit" in verdict.next_action
    assert "widen lookback" not in verdict.next_action


def test_an_inconclusive_failure_that_saw_everything_keeps_its_advice(environment):
    verdict = diagnose_api_down(findings(probe=FAIL), environment=environment)
    assert verdict.cause == "inconclusive"
    assert "widen lookback" in verdict.next_action
    assert "could not be checked" not in verdict.next_action
