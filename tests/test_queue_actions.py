"""The gated re-enqueue of dead letters: no-op, dry run, refusal, apply, stale plan."""

from pathlib import Path

import pytest

from opslib import (
    CloudflareClient,
    Status,
    apply_action,
    check_dead_letters,
    check_queue_consumers,
    diagnose_queue_delays,
    load_environment,
    plan_requeue,
    run_notebook,
)
from opslib._queues import decode_body

DLQ = "manuscript-analysis-dlq"
QUEUE = "manuscript-analysis-queue"


def backlog(environment, name):
    client = CloudflareClient(environment)
    try:
        queue = client.find_queue(name)
        return client.queue_metrics(queue["queue_id"])["backlog_count"]
    finally:
        client.close()


def make_plan(sandbox, scenario="jobs-failing-to-dlq", max_messages=3):
    sandbox.reset(scenario)
    environment = load_environment("sandbox")
    consumers = check_queue_consumers(environment)
    letters = check_dead_letters(
        environment,
        dead_letter_queues=consumers.facts["dead_letter_queues"].values(),
    )
    verdict = diagnose_queue_delays(
        [consumers, letters], environment=environment, max_messages=max_messages
    )
    return environment, plan_requeue(environment, verdict)


def test_healthy_plans_no_action(sandbox):
    environment, plan = make_plan(sandbox, "healthy")
    assert plan.is_noop
    result = apply_action(plan, environment=environment, apply=True, confirm="x")
    assert result.outcome == "not-needed"


def test_plan_keeps_ids_and_bodies_of_the_letters_it_moves(sandbox):
    _, plan = make_plan(sandbox)
    messages = plan.before["messages"]
    assert len(messages) == 3 and all(m["id"] for m in messages)
    assert all(m["body"]["reportId"] for m in messages)
    assert plan.before["backlog"] == {DLQ: 9, QUEUE: 0}
    assert plan.confirm_phrase == (
        f"re-enqueue 3 messages from {DLQ} to {QUEUE} in sandbox"
    )


def test_dry_run_changes_nothing(sandbox):
    environment, plan = make_plan(sandbox)
    result = apply_action(plan, environment=environment, apply=False)
    assert result.outcome == "dry-run"
    assert (backlog(environment, DLQ), backlog(environment, QUEUE)) == (9, 0)


def test_wrong_phrase_is_refused_and_changes_nothing(sandbox):
    environment, plan = make_plan(sandbox)
    result = apply_action(
        plan, environment=environment, apply=True, confirm="re-enqueue everything"
    )
    assert result.outcome == "refused"
    assert "does not match" in result.detail
    assert (backlog(environment, DLQ), backlog(environment, QUEUE)) == (9, 0)


def test_applied_moves_exactly_the_planned_letters_and_checks_after(sandbox):
    environment, plan = make_plan(sandbox)
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied", result.detail
    assert result.response == {"sent": 3, "acked": 3}
    assert result.after is not None and result.after.status is Status.OK
    assert (backlog(environment, DLQ), backlog(environment, QUEUE)) == (6, 3)
    client = CloudflareClient(environment)
    try:
        queue = client.find_queue(QUEUE)["queue_id"]
        sent = client.peek_messages(queue, batch_size=10)
    finally:
        client.close()
    assert [decode_body(m) for m in sent] == [
        m["body"] for m in plan.before["messages"]
    ]


def test_a_plan_applied_twice_is_stale_the_second_time(sandbox):
    environment, plan = make_plan(sandbox)
    first = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    second = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert first.outcome == "applied"
    assert second.outcome == "refused" and "stale" in second.detail
    # The refused attempt released its leases: the letters are still there.
    assert backlog(environment, DLQ) == 6


@pytest.mark.parametrize("scenario", ["jobs-failing-to-dlq"])
def test_notebook_applies_the_requeue_with_the_printed_phrase(
    sandbox, scenario, tmp_path
):
    sandbox.reset(scenario)
    params = {"incident_id": "INC-9", "max_messages": 2}
    dry = run_notebook(
        "queue-delays", parameters=params, environment="sandbox", records_dir=tmp_path
    )
    assert dry.status == "succeeded", dry.error
    phrase = dry.verdict["gated_step"]["confirm"]
    assert phrase == f"re-enqueue 2 messages from {DLQ} to {QUEUE} in sandbox"
    record = run_notebook(
        "queue-delays",
        parameters={**params, "apply": True, "confirm": phrase},
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    text = Path(record.record_path).read_text()
    assert '"outcome": "applied"' in text
    assert backlog(load_environment("sandbox"), DLQ) == 7


def test_a_failed_delete_after_the_send_is_reported_not_hidden(sandbox, monkeypatch):
    from opslib import APIError

    environment, plan = make_plan(sandbox)
    real_ack = CloudflareClient.ack_messages

    def refuse_acks(self, queue_id, *, acks, retries=()):
        if acks:
            raise APIError("cloudflare: HTTP 500 (10002)", system="cloudflare")
        return real_ack(self, queue_id, acks=acks, retries=retries)

    monkeypatch.setattr(CloudflareClient, "ack_messages", refuse_acks)
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "failed"
    assert "were sent to" in result.detail and "could not be deleted" in result.detail
    assert result.response == {"sent": 3, "acked": 0}
