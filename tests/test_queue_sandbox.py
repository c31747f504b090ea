"""The Queues stand-in and the queue-delays scenarios, at the HTTP level."""

import httpx
import pytest

from opslib import load_environment
from opslib.sandbox import SCENARIOS

QUEUE_SCENARIOS = [s.name for s in SCENARIOS.values() if s.notebook == "queue-delays"]


@pytest.fixture
def api(sandbox, sandbox_token):
    sandbox.reset("healthy")
    env = load_environment("sandbox")
    client = httpx.Client(
        base_url=f"{env.cloudflare_api_url}/accounts/{env.account_id}",
        headers={"Authorization": f"Bearer {sandbox_token}"},
    )
    yield client
    client.close()


def test_every_queue_delay_cause_has_a_scenario():
    assert sorted(QUEUE_SCENARIOS) == [
        "ai-rate-limited",
        "consumer-missing",
        "high-volume-draining",
        "jobs-failing-to-dlq",
        "status-drift",
    ]
    assert all(SCENARIOS[name].cause == name for name in QUEUE_SCENARIOS)


def test_queues_list_by_name_in_the_page_envelope(api):
    answer = api.get("/queues", params={"name": "asset-generation-dlq"}).json()
    assert answer["success"] and answer["result_info"]["total_count"] == 1
    queue = answer["result"][0]
    assert queue["queue_name"] == "asset-generation-dlq"
    assert queue["consumers_total_count"] == 0
    assert queue["settings"]["message_retention_period"] == 345_600


def test_unknown_queue_answers_404_in_the_envelope(api):
    answer = api.get("/queues/0123456789abcdef0123456789abcdef/metrics")
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["code"] == 11000


def test_batch_size_out_of_range_is_refused(api):
    queue_id = api.get("/queues", params={"name": "manuscript-analysis-queue"}).json()[
        "result"
    ][0]["queue_id"]
    answer = api.post(f"/queues/{queue_id}/messages/peek", json={"batch_size": 101})
    assert answer.status_code == 400


def test_graphql_for_an_unknown_account_answers_200_with_errors(api):
    answer = api.post(
        "../../graphql",
        json={
            "query": (
                "query Q($a: string!) { viewer { accounts(filter: {accountTag: $a})"
                " { queueBacklogAdaptiveGroups(limit: 10) { avg { messages } } } } }"
            ),
            "variables": {"a": "f" * 32},
        },
    )
    assert answer.status_code == 200
    assert answer.json()["errors"][0]["message"].startswith("account not found")


def test_graphql_reads_literal_filter_arguments(api, sandbox_token):
    env = load_environment("sandbox")
    queue_id = api.get("/queues", params={"name": "manuscript-analysis-queue"}).json()[
        "result"
    ][0]["queue_id"]
    query = (
        f'{{ viewer {{ accounts(filter: {{accountTag: "{env.account_id}"}}) {{ '
        "queueBacklogAdaptiveGroups(limit: 10000, filter: "
        f'{{queueId: "{queue_id}", datetime_geq: "2020-01-01T00:00:00Z", '
        'datetime_leq: "2099-01-01T00:00:00Z"}) '
        "{ avg { messages } dimensions { datetimeMinute } } } } }"
    )
    answer = api.post("../../graphql", json={"query": query}).json()
    assert answer["errors"] is None
    rows = answer["data"]["viewer"]["accounts"][0]["queueBacklogAdaptiveGroups"]
    assert len(rows) == 24 * 12 + 1  # 5-minute samples of a day, then the live count
    assert (
        rows[0]["dimensions"]["datetimeMinute"]
        < rows[-1]["dimensions"]["datetimeMinute"]
    )
