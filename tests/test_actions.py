"""The gated rollback: dry run, refusal, application, stale plans."""

import dataclasses

import pytest

from opslib import (
    CloudflareClient,
    Status,
    apply_action,
    check_cloudflare_status,
    check_d1,
    check_deployments,
    check_kv_binding,
    check_secrets,
    diagnose_api_down,
    load_environment,
    plan_rollback,
    probe_api,
)


def live_version(environment):
    client = CloudflareClient(environment)
    try:
        return client.list_deployments()[0]["versions"][0]["version_id"]
    finally:
        client.close()


@pytest.fixture()
def bad(sandbox):
    sandbox.reset("bad-deployment")
    environment = load_environment("sandbox")
    findings = [
        probe_api(environment),
        check_deployments(environment),
        check_d1(environment),
        check_secrets(environment),
        check_kv_binding(environment),
        check_cloudflare_status(environment),
    ]
    verdict = diagnose_api_down(findings, environment=environment, incident_id="INC-9")
    return environment, plan_rollback(environment, verdict), sandbox.truth()["details"]


def test_plan_names_both_versions_and_the_phrase(bad):
    environment, plan, truth = bad
    assert plan.changes[0] == {
        "what": "live version",
        "from": truth["bad_version"],
        "to": truth["good_version"],
    }
    assert (
        plan.confirm_phrase
        == f"rollback manuscript-upload-api to {truth['good_version']} in sandbox"
    )
    assert plan.undo


def test_dry_run_changes_nothing(bad):
    environment, plan, truth = bad
    result = apply_action(
        plan, environment=environment, apply=False, confirm=plan.confirm_phrase
    )
    assert result.outcome == "dry-run"
    assert live_version(environment) == truth["bad_version"]


@pytest.mark.parametrize(
    "phrase", ["", "rollback", "yes", "rollback manuscript-upload-api"]
)
def test_wrong_phrase_is_refused_and_changes_nothing(bad, phrase):
    environment, plan, truth = bad
    result = apply_action(plan, environment=environment, apply=True, confirm=phrase)
    assert result.outcome == "refused"
    assert live_version(environment) == truth["bad_version"]


def test_applied_rollback_switches_version_and_next_probe_is_healthy(bad):
    environment, plan, truth = bad
    result = apply_action(
        plan,
        environment=environment,
        apply=True,
        confirm=plan.confirm_phrase,
        verify=lambda: probe_api(environment),
        operator="oncall-test",
    )
    assert result.outcome == "applied"
    assert live_version(environment) == truth["good_version"]
    assert result.after.status is Status.OK
    assert result.to_dict()["operator"] == "oncall-test"


def test_stale_plan_is_refused(bad):
    environment, plan, truth = bad
    apply_action(plan, environment=environment, apply=True, confirm=plan.confirm_phrase)
    again = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert again.outcome == "refused"
    assert "stale" in again.detail


def test_plan_for_another_environment_is_refused(bad):
    environment, plan, _ = bad
    staging_like = dataclasses.replace(environment, name="staging")
    result = apply_action(
        plan, environment=staging_like, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"


def test_healthy_verdict_plans_no_action(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    verdict = diagnose_api_down([probe_api(environment)], environment=environment)
    plan = plan_rollback(environment, verdict)
    assert plan.is_noop
    assert (
        apply_action(plan, environment=environment, apply=True).outcome == "not-needed"
    )
