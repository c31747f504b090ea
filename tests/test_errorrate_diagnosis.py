"""The high-error-rate verdict, from hand-made findings."""

import pytest

from opslib import Finding, Status, diagnose_high_error_rate, load_environment
from opslib._errorverdict import rollback_step

BAD, GOOD = "v6-bad-0000", "v5-good-000"


@pytest.fixture
def env():
    return load_environment("sandbox")


def _routes(status, *, classes=None, problem=(), limited=0.0, events=True):
    facts = {
        "events": [{"route": "GET /x"}] if events else [],
        "error_classes": classes or {},
        "problem_routes": list(problem),
        "limited_share": limited,
    }
    return Finding("route-errors", status, "routes", (), facts)


def _deployments(onsets=()):
    deployments = [
        {"version": BAD, "created_on": "2026-12-04T10:00:00Z", "at": 1.0},
        {"version": GOOD, "created_on": "2026-12-01T10:00:00Z", "at": 0.0},
    ]
    facts = {"deployments": deployments, "onsets": list(onsets), "previous": None}
    status = Status.FAIL if onsets else Status.OK
    return Finding("deployments-in-window", status, "deployments", (), facts)


def _limits(free=0):
    status = Status.WARN if free else Status.OK
    return Finding("user-rate-limits", status, "limits", (), {"free_at_limit": free})


@pytest.mark.parametrize(
    ("error_class", "cause"),
    [
        ("missing-table", "missing-table"),
        ("d1", "d1-timeouts"),
        ("r2", "r2-throttling"),
    ],
)
def test_dominant_error_class_names_the_cause(env, error_class, cause):
    routes = _routes(
        Status.FAIL, classes={error_class: 9, "code": 1}, problem=["GET /x"]
    )
    verdict = diagnose_high_error_rate(
        [routes, _deployments(), _limits()], environment=env
    )
    assert verdict.cause == cause
    assert verdict.status is Status.FAIL
    assert verdict.gated_step is None
    assert "GET /x" in verdict.summary


def test_code_errors_that_began_with_a_deployment_offer_the_rollback(env):
    onset = {"route": "GET /x", "version": BAD, "at": "2026-12-04T10:00:00Z"}
    verdict = diagnose_high_error_rate(
        [_routes(Status.FAIL, classes={"code": 5}), _deployments([onset]), _limits()],
        environment=env,
        incident_id="INC-7",
    )
    assert verdict.cause == "endpoint-broken-after-deploy"
    step = verdict.gated_step
    assert step["action"] == "rollback"
    assert (step["from_version"], step["to_version"]) == (BAD, GOOD)
    assert step["confirm"] in step["command"]
    assert "INC-7" in step["command"]


def test_code_errors_without_a_deployment_are_inconclusive(env):
    verdict = diagnose_high_error_rate(
        [_routes(Status.FAIL, classes={"code": 5}), _deployments(), _limits()],
        environment=env,
    )
    assert verdict.cause == "inconclusive"
    assert verdict.status is Status.UNKNOWN


def test_429s_of_free_users_are_a_warning_not_an_outage(env):
    verdict = diagnose_high_error_rate(
        [_routes(Status.WARN, limited=0.1), _deployments(), _limits(free=4)],
        environment=env,
    )
    assert verdict.cause == "free-tier-429s"
    assert verdict.status is Status.WARN


def test_429s_without_free_users_at_the_limit_are_inconclusive(env):
    verdict = diagnose_high_error_rate(
        [_routes(Status.WARN, limited=0.1), _deployments(), _limits()],
        environment=env,
    )
    assert verdict.cause == "inconclusive"


def test_low_error_rate_is_healthy_and_ok(env):
    verdict = diagnose_high_error_rate(
        [_routes(Status.OK), _deployments(), _limits()], environment=env
    )
    assert (verdict.cause, verdict.status) == ("healthy", Status.OK)


@pytest.mark.parametrize("events", [False, True])
def test_no_logs_or_unknown_logs_are_inconclusive(env, events):
    status = Status.WARN if not events else Status.UNKNOWN
    verdict = diagnose_high_error_rate(
        [_routes(status, events=events), _limits()], environment=env
    )
    assert verdict.cause == "inconclusive"


def test_rollback_step_uses_the_api_down_confirm_phrase(env):
    step = rollback_step(env, BAD, GOOD, "")
    assert step["confirm"] == f"rollback {env.worker_name} to {GOOD} in {env.name}"
    assert "runbook run high-error-rate" in step["command"]
