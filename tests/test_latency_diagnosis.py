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
