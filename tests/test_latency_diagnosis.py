"""The slow-responses verdict from hand-made findings."""

import pytest

from opslib import CAUSES, Finding, Status, diagnose_slow_responses, load_environment
from opslib._latencyverdict import create_index_phrase


@pytest.fixture
def env():
    return load_environment("sandbox")


def _latency(status=Status.OK):
    return Finding("latency", status, "probe", facts={"routes": []})


def _plans(status=Status.OK):
    return Finding("query_plans", status, "plans", facts={"scanning": ["list"]})


def _indexes(status=Status.OK):
    return Finding("indexes", status, "indexes", facts={"missing": []})


def test_vocabulary_names_every_planned_cause():
    assert CAUSES["slow-responses"] == (
        "missing-index",
        "slow-external-api",
        "cold-start",
        "healthy",
        "inconclusive",
    )


def test_fast_and_indexed_is_healthy(env):
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes()], environment=env
    )
    assert (verdict.cause, verdict.status) == ("healthy", Status.OK)
    assert verdict.gated_step is None


def test_a_scanning_hot_query_is_a_missing_index_with_the_gated_step(env):
    verdict = diagnose_slow_responses(
        [_latency(), _plans(Status.FAIL), _indexes(Status.WARN)],
        environment=env,
        incident_id="INC-5",
    )
    assert (verdict.cause, verdict.status) == ("missing-index", Status.FAIL)
    step = verdict.gated_step
    assert step["action"] == "create-index"
    assert "user_id, status, uploaded_at DESC" in step["sql"]
    assert "author_id" not in step["sql"]
    assert step["confirm"] == create_index_phrase(env)
    assert "INC-5" in step["command"]


def test_slow_probe_with_clean_plans_is_inconclusive(env):
    verdict = diagnose_slow_responses(
        [_latency(Status.FAIL), _plans(), _indexes()], environment=env
    )
    assert (verdict.cause, verdict.status) == ("inconclusive", Status.UNKNOWN)
    assert verdict.gated_step is None


def test_a_check_that_could_not_look_is_inconclusive(env):
    verdict = diagnose_slow_responses(
        [_latency(), _plans(Status.UNKNOWN), _indexes()], environment=env
    )
    assert verdict.cause == "inconclusive"
    assert "query_plans" in verdict.summary


def _timings(status=Status.OK, waiting=(), computing=()):
    facts = {"waiting": list(waiting), "computing": list(computing)}
    return Finding("route-timings", status, "timings", facts=facts)


def _startup(live=11, before=11, deployed="3 d ago"):
    facts = {
        "live_startup_ms": live,
        "previous_startup_ms": before,
        "deployed": deployed,
    }
    status = Status.WARN if live and live >= 1000 else Status.OK
    return Finding("startup", status, "startup", facts=facts)


def _cold_probe():
    rows = [
        {"route": "/auth/me", "first_ms": 2300.0, "p50_ms": 4.0, "answered": 20},
        {"route": "/manuscripts", "first_ms": 9.0, "p50_ms": 4.0, "answered": 20},
    ]
    facts = {"routes": rows, "cold_routes": ["/auth/me"]}
    return Finding("latency", Status.WARN, "probe", facts=facts)


PORTAL = {
    "route": "POST /payments/create-portal-session",
    "service": "Stripe",
    "requests": 12,
    "slow": 11,
    "wall_p95_ms": 5200,
    "cpu_p95_ms": 4,
}


def test_a_route_waiting_on_stripe_is_a_slow_external_api(env):
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes(), _timings(Status.FAIL, [PORTAL]), _startup()],
        environment=env,
    )
    assert (verdict.cause, verdict.status) == ("slow-external-api", Status.FAIL)
    assert "POST /payments/create-portal-session waits on Stripe" in verdict.summary
    assert "timeout" in verdict.next_action
    assert verdict.gated_step is None


def test_a_reset_request_waiting_on_mailchannels_names_mailchannels(env):
    waiting = {
        **PORTAL,
        "route": "POST /auth/password-reset-request",
        "service": "MailChannels",
    }
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes(), _timings(Status.FAIL, [waiting])],
        environment=env,
    )
    assert verdict.cause == "slow-external-api"
    assert "waits on MailChannels" in verdict.summary
    assert "waitUntil" in verdict.next_action


def test_a_slow_route_without_outside_calls_is_inconclusive(env):
    waiting = {**PORTAL, "route": "GET /payments/history", "service": ""}
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes(), _timings(Status.FAIL, [waiting])],
        environment=env,
    )
    assert (verdict.cause, verdict.status) == ("inconclusive", Status.UNKNOWN)
    assert "D1, KV or R2" in verdict.next_action


def test_a_slow_first_answer_per_route_is_a_cold_start(env):
    verdict = diagnose_slow_responses(
        [
            _cold_probe(),
            _plans(),
            _indexes(),
            _timings(),
            _startup(2300, 11, "12 min ago"),
        ],
        environment=env,
    )
    assert (verdict.cause, verdict.status) == ("cold-start", Status.FAIL)
    assert "starts in 2300 ms (the one before: 11 ms)" in verdict.summary
    assert "12 min ago" in verdict.summary
    assert any("first answer 2300 ms" in line for line in verdict.evidence)
    assert verdict.gated_step is None


def test_cpu_bound_slow_requests_in_the_logs_are_a_cold_start_without_the_probe(env):
    computing = [
        {"route": "GET /manuscripts", "version": "v6", "wall_ms": 2304, "cpu_ms": 2302}
    ] * 2
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes(), _timings(Status.WARN, (), computing)],
        environment=env,
    )
    assert verdict.cause == "cold-start"
    assert any("2 slow request(s) nearly all CPU" in line for line in verdict.evidence)


def test_one_cpu_bound_slow_request_alone_is_not_a_cold_start(env):
    computing = [
        {"route": "GET /manuscripts", "version": "v6", "wall_ms": 2304, "cpu_ms": 2302}
    ]
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes(), _timings(Status.WARN, (), computing)],
        environment=env,
    )
    assert verdict.cause == "healthy"


def test_a_missing_index_wins_over_a_waiting_route(env):
    verdict = diagnose_slow_responses(
        [_latency(), _plans(Status.FAIL), _indexes(), _timings(Status.FAIL, [PORTAL])],
        environment=env,
    )
    assert verdict.cause == "missing-index"


def test_analytics_alone_showing_a_waiting_worker_is_inconclusive_and_asks_for_logs(
    env,
):
    worker = Finding(
        "worker-times",
        Status.WARN,
        "worker",
        facts={"wallTimeP99": 5200.0, "cpuTimeP99": 4.0},
    )
    no_logs = Finding("route-timings", Status.WARN, "no events", facts={"events": 0})
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes(), worker, no_logs], environment=env
    )
    assert (verdict.cause, verdict.status) == ("inconclusive", Status.UNKNOWN)
    assert "waits (little CPU)" in verdict.summary
    assert "[observability] enabled = true" in verdict.next_action


def test_a_slow_worker_with_logs_that_name_stripe_is_a_slow_external_api(env):
    worker = Finding(
        "worker-times",
        Status.WARN,
        "worker",
        facts={"wallTimeP99": 5200.0, "cpuTimeP99": 4.0},
    )
    timings = _timings(Status.FAIL, [PORTAL])
    timings.facts["requests"] = 200
    verdict = diagnose_slow_responses(
        [_latency(), _plans(), _indexes(), worker, timings], environment=env
    )
    assert verdict.cause == "slow-external-api"
