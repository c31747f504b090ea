"""The queue-delays verdict from hand-made findings: order of causes, gated step."""

import pytest

from opslib import Finding, Status, diagnose_queue_delays, load_environment
from opslib._queueverdict import REQUEUE_ACTION, requeue_phrase

DLQS = {
    "manuscript-analysis-queue": "manuscript-analysis-dlq",
    "asset-generation-queue": "asset-generation-dlq",
}


@pytest.fixture
def env():
    return load_environment("sandbox")


def _findings(**changes):
    found = {
        "queue-backlog": Finding(
            "queue-backlog", Status.OK, "ok", facts={"behind": []}
        ),
        "queue-consumers": Finding(
            "queue-consumers", Status.OK, "ok", facts={"dead_letter_queues": DLQS}
        ),
        "dead-letters": Finding("dead-letters", Status.OK, "empty"),
        "backlog-trend": Finding("backlog-trend", Status.OK, "steady", facts={}),
        "status-drift": Finding("status-drift", Status.OK, "agrees"),
    }
    found.update(changes)
    return list(found.values())


def _letters(read, limited, by_queue=None):
    facts = {
        "by_queue": by_queue or {"manuscript-analysis-dlq": read},
        "total": read,
        "read": read,
        "rate_limited": limited,
    }
    return Finding("dead-letters", Status.FAIL, f"{read} dead letters", facts=facts)


def test_all_ok_is_healthy_without_a_gated_step(env):
    verdict = diagnose_queue_delays(_findings(), environment=env)
    assert (verdict.cause, verdict.status, verdict.gated_step) == (
        "healthy",
        Status.OK,
        None,
    )


def test_an_unreadable_step_is_inconclusive_and_named(env):
    blind = Finding("status-drift", Status.UNKNOWN, "R2 not readable")
    verdict = diagnose_queue_delays(
        _findings(**{"status-drift": blind}), environment=env
    )
    assert verdict.cause == "inconclusive"
    assert "status-drift" in verdict.summary


def test_missing_consumer_wins_over_dead_letters(env):
    missing = Finding("queue-consumers", Status.FAIL, "no consumer", facts={})
    verdict = diagnose_queue_delays(
        _findings(**{"queue-consumers": missing, "dead-letters": _letters(3, 0)}),
        environment=env,
    )
    assert verdict.cause == "consumer-missing" and verdict.status is Status.FAIL


def test_drift_is_named_before_dead_letters(env):
    drift = Finding("status-drift", Status.FAIL, "7 complete in R2")
    verdict = diagnose_queue_delays(
        _findings(**{"status-drift": drift, "dead-letters": _letters(3, 3)}),
        environment=env,
    )
    assert verdict.cause == "status-drift"


@pytest.mark.parametrize(
    ("read", "limited", "cause"),
    [
        (12, 12, "ai-rate-limited"),
        (10, 5, "ai-rate-limited"),
        (10, 4, "jobs-failing-to-dlq"),
        (9, 0, "jobs-failing-to-dlq"),
    ],
)
def test_dead_letters_are_rate_limited_when_half_or_more_read_429(
    env, read, limited, cause
):
    verdict = diagnose_queue_delays(
        _findings(**{"dead-letters": _letters(read, limited)}), environment=env
    )
    assert verdict.cause == cause


def test_dead_letters_offer_a_bounded_requeue_with_the_exact_phrase(env):
    verdict = diagnose_queue_delays(
        _findings(**{"dead-letters": _letters(9, 0)}),
        environment=env,
        incident_id="INC-7",
        max_messages=3,
    )
    step = verdict.gated_step
    assert step is not None and step["action"] == REQUEUE_ACTION
    assert (step["dead_letter_queue"], step["queue"], step["count"]) == (
        "manuscript-analysis-dlq",
        "manuscript-analysis-queue",
        3,
    )
    phrase = requeue_phrase(
        env, 3, "manuscript-analysis-dlq", "manuscript-analysis-queue"
    )
    assert step["confirm"] == phrase
    assert "-p max_messages 3" in step["command"] and "INC-7" in step["command"]


def test_requeue_count_never_exceeds_the_letters_there(env):
    verdict = diagnose_queue_delays(
        _findings(**{"dead-letters": _letters(2, 0)}), environment=env, max_messages=50
    )
    assert verdict.gated_step is not None and verdict.gated_step["count"] == 2


def test_big_backlog_that_drains_says_wait_without_a_gated_step(env):
    verdict = diagnose_queue_delays(
        _findings(
            **{
                "queue-backlog": Finding(
                    "queue-backlog",
                    Status.WARN,
                    "320 waiting",
                    facts={"behind": ["manuscript-analysis-queue"]},
                ),
                "backlog-trend": Finding(
                    "backlog-trend",
                    Status.OK,
                    "draining",
                    facts={"draining": ["manuscript-analysis-queue"]},
                ),
            }
        ),
        environment=env,
    )
    assert (verdict.cause, verdict.status, verdict.gated_step) == (
        "high-volume-draining",
        Status.WARN,
        None,
    )
    assert "wait" in verdict.next_action


def test_big_backlog_that_grows_with_consumers_is_inconclusive(env):
    verdict = diagnose_queue_delays(
        _findings(
            **{
                "queue-backlog": Finding(
                    "queue-backlog",
                    Status.WARN,
                    "320 waiting",
                    facts={"behind": ["manuscript-analysis-queue"]},
                ),
                "backlog-trend": Finding(
                    "backlog-trend", Status.WARN, "growing", facts={"draining": []}
                ),
            }
        ),
        environment=env,
    )
    assert verdict.cause == "inconclusive" and verdict.status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("hour_ago", "now", "trend", "eta"),
    [
        (100.0, 102.0, "steady", None),
        (100.0, 200.0, "growing", None),
        (600.0, 300.0, "draining", 60),
    ],
)
def test_trend_compares_the_last_hour_and_estimates_when_it_empties(
    hour_ago, now, trend, eta
):
    from datetime import UTC, datetime, timedelta

    from opslib._queuetrend import _trend_row

    end = datetime(2026, 12, 4, 12, tzinfo=UTC)
    points = [
        (end - timedelta(hours=2), hour_ago),
        (end - timedelta(hours=1), hour_ago),
    ]
    row = _trend_row("q", [*points, (end, now)])
    assert (row["trend"], row["eta_min"], row["peak"]) == (
        trend,
        eta,
        round(max(hour_ago, now)),
    )


def test_trend_without_history_is_unknown():
    from opslib._queuetrend import _trend_row

    assert _trend_row("q", [])["trend"] == "unknown"
