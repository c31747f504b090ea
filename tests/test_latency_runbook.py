"""The slow-responses runbook end to end: the chart in the record, and the gated
index creation it offers for a missing index (dry run, refused, stale, applied)."""

import nbformat

from opslib import (
    CloudflareClient,
    Status,
    apply_action,
    check_indexes,
    check_latency,
    check_query_plans,
    diagnose_slow_responses,
    load_environment,
    plan_create_index,
    run_notebook,
)
from opslib._queryplan import HOT_INDEX
from opslib.sandbox import SCENARIOS


def _verdict(env):
    findings = [
        check_latency(env, ["/manuscripts"], requests_per_route=3),
        check_query_plans(env),
        check_indexes(env),
    ]
    return diagnose_slow_responses(findings, environment=env, incident_id="INC-5")


def test_missing_index_scenario_is_registered_for_this_runbook():
    assert SCENARIOS["missing-index"].notebook == "slow-responses"
    assert SCENARIOS["missing-index"].cause == "missing-index"


def test_executed_record_holds_the_histogram_as_png(sandbox, tmp_path):
    sandbox.reset("missing-index")
    record = run_notebook(
        "slow-responses",
        parameters={"incident_id": "DRILL-5", "requests_per_route": 5},
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    assert record.verdict["cause"] == "missing-index"
    assert record.verdict["gated_step"]["action"] == "create-index"
    notebook = nbformat.read(record.record_path, as_version=4)
    outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_healthy_offers_no_action(sandbox):
    sandbox.reset("healthy")
    env = load_environment("sandbox")
    plan = plan_create_index(env, _verdict(env))
    assert plan.is_noop
    assert apply_action(plan, environment=env, apply=True).outcome == "not-needed"


def test_dry_run_and_wrong_phrase_change_nothing(sandbox):
    sandbox.reset("missing-index")
    env = load_environment("sandbox")
    plan = plan_create_index(env, _verdict(env))
    assert plan.action == "create-index"
    assert HOT_INDEX not in plan.before["indexes"]
    assert apply_action(plan, environment=env).outcome == "dry-run"
    refused = apply_action(plan, environment=env, apply=True, confirm="yes")
    assert refused.outcome == "refused"
    assert check_query_plans(env).status is Status.FAIL


def test_a_stale_plan_is_refused(sandbox):
    sandbox.reset("missing-index")
    env = load_environment("sandbox")
    plan = plan_create_index(env, _verdict(env))
    client = CloudflareClient(env)
    try:
        client.d1_query(
            "CREATE INDEX idx_manuscripts_user ON manuscripts(user_id)",
            read_only=False,
        )
    finally:
        client.close()
    result = apply_action(
        plan, environment=env, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert "stale" in result.detail
    assert HOT_INDEX not in check_indexes(env).facts["present"]


def test_applied_index_makes_the_hot_queries_search_it(sandbox):
    sandbox.reset("missing-index")
    env = load_environment("sandbox")
    plan = plan_create_index(env, _verdict(env))
    result = apply_action(
        plan,
        environment=env,
        apply=True,
        confirm=plan.confirm_phrase,
        verify=lambda: check_query_plans(env),
    )
    assert result.outcome == "applied", result.detail
    assert HOT_INDEX in result.response["indexes"]
    assert result.after is not None and result.after.status is Status.OK
    assert _verdict(env).cause == "healthy"
