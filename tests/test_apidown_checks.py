"""The api-down checks against each sandbox scenario."""

import dataclasses

import pytest

from opslib import (
    Status,
    check_cloudflare_status,
    check_d1,
    check_deployments,
    check_kv_binding,
    check_secrets,
    load_environment,
    probe_api,
)


@pytest.fixture()
def env_for(sandbox):
    def switch(scenario):
        sandbox.reset(scenario)
        return load_environment("sandbox")

    return switch


def test_healthy_platform_answers_401_on_manuscripts(env_for):
    finding = probe_api(env_for("healthy"), ["/", "/manuscripts"])
    assert finding.status is Status.OK
    assert {row["path"]: row["status"] for row in finding.evidence}[
        "/manuscripts"
    ] == 401


def test_bad_deployment_probe_fails_and_deployment_is_recent(env_for, sandbox):
    environment = env_for("bad-deployment")
    truth = sandbox.truth()["details"]
    probe = probe_api(environment, ["/", "/manuscripts"])
    deployments = check_deployments(environment, "6h")
    assert probe.status is Status.FAIL
    assert deployments.facts["is_recent"] is True
    assert deployments.facts["live_version"] == truth["bad_version"]
    assert deployments.facts["previous_version"] == truth["good_version"]


def test_short_lookback_does_not_count_a_20_minute_old_deployment(env_for):
    finding = check_deployments(env_for("bad-deployment"), "5m")
    assert finding.facts["is_recent"] is False


def test_d1_unavailable_is_a_failed_finding(env_for):
    finding = check_d1(env_for("d1-unavailable"))
    assert finding.status is Status.FAIL
    assert finding.facts["available"] is False


def test_healthy_d1_counts_core_tables(env_for):
    finding = check_d1(env_for("healthy"))
    counts = {row["table_name"]: row["row_count"] for row in finding.evidence}
    assert finding.status is Status.OK
    assert counts["users"] >= 200


def test_missing_secret_is_named_without_values(env_for):
    finding = check_secrets(env_for("missing-secret"))
    assert finding.status is Status.FAIL
    assert finding.facts["missing"] == ["STRIPE_SECRET_KEY"]


def test_deleted_sessions_namespace_fails_the_kv_check(env_for):
    assert check_kv_binding(env_for("kv-binding-broken")).status is Status.FAIL
    assert check_kv_binding(env_for("healthy")).status is Status.OK


def test_status_page_minor_indicator_alone_is_not_an_outage(env_for):
    finding = check_cloudflare_status(env_for("healthy"))
    assert finding.status is Status.OK
    assert finding.facts["page_indicator"] != "none"


def test_workers_outage_fails_the_status_check(env_for):
    finding = check_cloudflare_status(env_for("cloudflare-outage"))
    assert finding.status is Status.FAIL
    assert finding.facts["incidents"]


def test_unreachable_platform_is_unknown_not_an_exception(env_for):
    closed = dataclasses.replace(env_for("healthy"), platform_url="http://127.0.0.1:9")
    finding = probe_api(closed, ["/manuscripts"])
    assert finding.status is Status.UNKNOWN
    assert "cannot reach" in finding.summary


def test_unreachable_status_page_is_unknown(env_for):
    closed = dataclasses.replace(
        env_for("healthy"), status_page_url="http://127.0.0.1:9/api/v2"
    )
    assert check_cloudflare_status(closed).status is Status.UNKNOWN


def test_cloudflare_api_errors_are_unknown_for_d1_not_a_d1_failure(env_for, sandbox):
    environment = env_for("healthy")
    sandbox.inject(cloudflare_500=10)
    finding = check_d1(environment)
    sandbox.inject(cloudflare_500=0)
    assert finding.status is Status.UNKNOWN
    assert "10002" in finding.summary
