"""The high-error-rate runbook end to end: drills, the chart in the record, and the
gated rollback it offers for an endpoint broken by a deployment."""

import nbformat
import pytest

from opslib import (
    CloudflareClient,
    Status,
    apply_action,
    check_error_deployments,
    check_live_version,
    check_route_errors,
    check_user_limits,
    diagnose_high_error_rate,
    load_environment,
    plan_rollback,
    run_notebook,
)
from opslib.sandbox import SCENARIOS

ERROR_SCENARIOS = sorted(
    s.name for s in SCENARIOS.values() if s.notebook == "high-error-rate"
)


def test_every_cause_has_a_scenario():
    assert ERROR_SCENARIOS == [
        "d1-timeouts",
        "endpoint-broken-after-deploy",
        "free-tier-429s",
        "missing-table",
        "r2-throttling",
    ]


def test_executed_record_holds_the_chart_as_png(sandbox, tmp_path):
    sandbox.reset("endpoint-broken-after-deploy")
    record = run_notebook(
        "high-error-rate",
        parameters={"incident_id": "DRILL-4"},
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    assert record.verdict["cause"] == "endpoint-broken-after-deploy"
    assert record.verdict["gated_step"]["action"] == "rollback"
    notebook = nbformat.read(record.record_path, as_version=4)
    outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)


def _live_version(environment):
    client = CloudflareClient(environment)
    try:
        return max(
            client.list_deployments()[0]["versions"], key=lambda v: v["percentage"]
        )["version_id"]
    finally:
        client.close()


@pytest.fixture
def broken(sandbox):
    sandbox.reset("endpoint-broken-after-deploy")
    environment = load_environment("sandbox")
    routes = check_route_errors(environment)
    findings = [
        routes,
        check_error_deployments(environment, routes),
        check_user_limits(environment),
    ]
    verdict = diagnose_high_error_rate(findings, environment=environment)
    return environment, plan_rollback(environment, verdict), sandbox.truth()


def test_rollback_plan_names_the_deployed_and_the_previous_version(broken):
    _environment, plan, truth = broken
    assert plan.action == "rollback"
    assert plan.changes[0]["from"] == truth["details"]["bad_version"]
    assert plan.changes[0]["to"] == truth["details"]["good_version"]


def test_rollback_dry_run_changes_nothing(broken):
    environment, plan, truth = broken
    result = apply_action(plan, environment=environment)
    assert result.outcome == "dry-run"
    assert _live_version(environment) == truth["details"]["bad_version"]


def test_rollback_applied_with_the_phrase_and_checked(broken):
    environment, plan, truth = broken
    good = truth["details"]["good_version"]
    refused = apply_action(plan, environment=environment, apply=True, confirm="yes")
    assert refused.outcome == "refused"
    result = apply_action(
        plan,
        environment=environment,
        apply=True,
        confirm=plan.confirm_phrase,
        verify=lambda: check_live_version(environment, good),
    )
    assert result.outcome == "applied"
    assert _live_version(environment) == good
    assert result.after.status is Status.OK
    again = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert again.outcome == "refused"
