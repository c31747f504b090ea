"""Queue-delays checks and their clients (Cloudflare Queues, R2) against the sandbox."""

import base64
import json

import pytest

from opslib import (
    CloudflareClient,
    ConfigError,
    R2Client,
    Status,
    check_backlog_trend,
    check_dead_letters,
    check_queue_backlog,
    check_queue_consumers,
    check_status_drift,
    load_environment,
    plot_backlog,
)
from opslib._queues import decode_body

ANALYSIS = "manuscript-analysis-queue"
ASSETS = "asset-generation-queue"


@pytest.fixture
def env(sandbox):
    return load_environment("sandbox")


@pytest.fixture
def healthy(sandbox, env):
    sandbox.reset("healthy")
    return env


def test_decode_body_reads_base64_json_and_leaves_text_alone():
    encoded = base64.b64encode(json.dumps({"reportId": "ab12cd34"}).encode()).decode()
    json_message = {"body": encoded, "metadata": {"CF-Content-Type": "json"}}
    assert decode_body(json_message) == {"reportId": "ab12cd34"}
    assert decode_body({"body": "plain", "metadata": {"CF-Content-Type": "text"}}) == (
        "plain"
    )


def test_queue_calls_find_send_peek_pull_and_ack(healthy):
    client = CloudflareClient(healthy)
    try:
        queue = client.find_queue(ANALYSIS)
        assert queue is not None and client.find_queue("no-such-queue") is None
        queue_id = queue["queue_id"]
        assert client.get_queue(queue_id)["consumers_total_count"] == 1
        client.send_messages(queue_id, [{"reportId": "aa11bb22"}])
        assert client.queue_metrics(queue_id)["backlog_count"] == 1
        peeked = client.peek_messages(queue_id, batch_size=5)
        assert decode_body(peeked[0]) == {"reportId": "aa11bb22"}
        pulled = client.pull_messages(queue_id, batch_size=5)
        assert client.pull_messages(queue_id, batch_size=5) == []  # leased
        answer = client.ack_messages(queue_id, acks=[pulled[0]["lease_id"]])
        assert answer["ackCount"] == 1
        assert client.queue_metrics(queue_id)["backlog_count"] == 0
    finally:
        client.close()


def test_graphql_errors_raise_with_the_message(healthy):
    from opslib import APIError

    client = CloudflareClient(healthy)
    try:
        with pytest.raises(APIError, match="GraphQL HTTP 200"):
            client.graphql(
                "{ viewer { queueBacklogAdaptiveGroups } }",
                {"accountTag": "0" * 32, "queueId": "x", "start": "x", "end": "x"},
            )
    finally:
        client.close()


def test_r2_client_reads_status_objects_and_lists_keys(healthy):
    r2 = R2Client(healthy)
    try:
        keys = r2.list_keys("manuscripts-raw", prefix="status:", limit=5)
        assert len(keys) == 5 and all(k.startswith("status:") for k in keys)
        status = r2.get_json("manuscripts-raw", keys[0])
        assert status is not None and status["status"] in (
            "queued",
            "processing",
            "complete",
            "failed",
        )
        assert r2.get_json("manuscripts-raw", "status:none") is None
    finally:
        r2.close()


def test_r2_client_refuses_a_placeholder_endpoint(env):
    from dataclasses import replace

    placeholder = replace(
        env, r2_endpoint_url="https://<CF_ACCOUNT_ID>.r2.cloudflarestorage.com"
    )
    with pytest.raises(ConfigError, match="r2_endpoint_url"):
        R2Client(placeholder)


def test_r2_client_needs_both_keys(env):
    from dataclasses import replace

    without = replace(env, secrets={}, secrets_file="")
    with pytest.raises(ConfigError, match="R2_ACCESS_KEY_ID and R2_SECRET"):
        R2Client(without)


def test_healthy_checks_are_all_ok(healthy):
    findings = [
        check_queue_backlog(healthy),
        check_queue_consumers(healthy),
        check_dead_letters(healthy),
        check_backlog_trend(healthy),
        check_status_drift(healthy),
    ]
    assert [f.status for f in findings] == [Status.OK] * 5, [str(f) for f in findings]


def test_missing_consumer_fails_and_its_backlog_grows(sandbox, env):
    sandbox.reset("consumer-missing")
    consumers = check_queue_consumers(env)
    assert consumers.status is Status.FAIL
    assert consumers.facts["unconsumed"] == [ASSETS]
    backlog = check_queue_backlog(env)
    assert backlog.status is Status.WARN and backlog.facts["behind"] == [ASSETS]
    trend = check_backlog_trend(env)
    assert trend.facts["growing"] == [ASSETS]


def test_dead_letters_are_grouped_by_the_error_in_r2(sandbox, env):
    sandbox.reset("jobs-failing-to-dlq")
    letters = check_dead_letters(env)
    assert letters.status is Status.FAIL
    assert letters.facts["by_queue"]["manuscript-analysis-dlq"] == 9
    assert letters.facts["rate_limited"] == 0
    assert letters.evidence[0]["count"] == 6
    assert "Cannot read properties" in letters.evidence[0]["error"]


def test_rate_limited_dead_letters_are_counted(sandbox, env):
    sandbox.reset("ai-rate-limited")
    letters = check_dead_letters(env)
    assert letters.facts["rate_limited"] == letters.facts["read"] == 12
    assert "429" in letters.summary


def test_draining_backlog_has_an_estimate_and_a_plot(sandbox, env):
    sandbox.reset("high-volume-draining")
    trend = check_backlog_trend(env)
    assert trend.facts["draining"] == [ANALYSIS]
    row = trend.facts["trend"][ANALYSIS]
    assert row["now"] == 320 and row["peak"] >= 800 and row["eta_min"] > 0
    plot = plot_backlog(trend)
    assert plot.figure.axes[0].get_ylabel() == "messages waiting"
    assert len(plot.figure.axes[0].lines) == 2
    assert plot.to_png().startswith(b"\x89PNG")


def test_drift_names_the_manuscripts_complete_in_r2(sandbox, env):
    sandbox.reset("status-drift")
    drift = check_status_drift(env)
    assert drift.status is Status.FAIL
    assert len(drift.facts["drifted"]) == 7
    assert sorted(drift.facts["drifted"]) == sorted(
        sandbox.truth()["details"]["drifted"]
    )
    consumers = check_queue_consumers(env)
    assert consumers.status is Status.WARN
    assert consumers.facts["separate_analysis_consumer"] == (
        "manuscript-analysis-consumer"
    )
