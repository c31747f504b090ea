"""The Cloudflare client against the sandbox's stand-in of the v4 API."""

import dataclasses
import time

import pytest

from opslib import (
    APIError,
    AuthError,
    CloudflareClient,
    RateLimitError,
    UnreachableError,
    load_environment,
)


@pytest.fixture()
def environment(sandbox):
    sandbox.reset("healthy")
    return load_environment("sandbox")


@pytest.fixture()
def client(environment):
    with_client = CloudflareClient(environment)
    yield with_client
    with_client.close()


def test_deployments_come_newest_first_with_the_live_one_first(client):
    deployments = client.list_deployments()
    created = [d["created_on"] for d in deployments]
    assert len(deployments) >= 2
    assert created == sorted(created, reverse=True)
    assert deployments[0]["versions"][0]["percentage"] == 100


def test_versions_are_read_across_pages(client, monkeypatch):
    monkeypatch.setattr("opslib._cloudflare.PAGE_SIZE", 2)
    versions = client.list_versions()
    assert len(versions) == 5
    assert len({v["id"] for v in versions}) == 5


def test_d1_query_returns_rows_and_meta(client):
    statements = client.d1_query(
        "SELECT COUNT(*) AS n FROM users WHERE email LIKE ?", ["%@example.com"]
    )
    assert statements[0]["results"][0]["n"] > 100
    assert "duration" in statements[0]["meta"]


def test_d1_sql_error_raises_api_error_with_code_7500(client):
    with pytest.raises(APIError, match="7500") as caught:
        client.d1_query("SELECT author_id FROM manuscripts")
    assert 7500 in caught.value.codes


def test_wrong_token_raises_auth_error(environment):
    wrong = dataclasses.replace(
        environment, secrets={"CLOUDFLARE_API_TOKEN": "not-the-token"}
    )
    client = CloudflareClient(wrong)
    with pytest.raises(AuthError, match="HTTP 40"):
        client.list_deployments()


def test_missing_token_says_which_variable(environment):
    bare = dataclasses.replace(environment, secrets={})
    with pytest.raises(AuthError, match="CLOUDFLARE_API_TOKEN is not set"):
        CloudflareClient(bare).list_secrets()


def test_reads_are_retried_through_a_short_burst_of_429(sandbox, client):
    sandbox.inject(cloudflare_429=1)
    started = time.monotonic()
    assert client.list_deployments()
    assert time.monotonic() - started >= 0.5


def test_persistent_429_raises_rate_limit_error(sandbox, client, monkeypatch):
    monkeypatch.setattr("opslib._http.RETRY_BUDGET_S", 0.1)
    sandbox.inject(cloudflare_429=3)
    with pytest.raises(RateLimitError, match="Retry-After asks to wait 1 s"):
        client.list_deployments()


def test_writes_are_never_replayed_on_429(sandbox, client):
    live = client.list_deployments()[0]["versions"][0]["version_id"]
    older = client.list_versions()[1]["id"]
    sandbox.inject(cloudflare_429=1)
    with pytest.raises(RateLimitError):
        client.create_deployment(older, "should not be retried")
    assert client.list_deployments()[0]["versions"][0]["version_id"] == live


def test_unreachable_api_raises_unreachable_error(environment):
    closed = dataclasses.replace(
        environment, cloudflare_api_url="http://127.0.0.1:9/client/v4"
    )
    with pytest.raises(UnreachableError, match="cannot reach"):
        CloudflareClient(closed).list_deployments()
