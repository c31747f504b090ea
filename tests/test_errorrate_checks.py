"""High-error-rate checks: pure helpers, and the checks against the sandbox."""

import pytest

from opslib import (
    APIError,
    CloudflareClient,
    Finding,
    Status,
    check_invocations,
    check_missing_tables,
    check_route_errors,
    check_user_limits,
    error_breakdown,
    load_environment,
    plot_error_rate,
)
from opslib._errorrate import error_class, route_table


def _event(at, route, status, version="v1", error=""):
    return {
        "at": at,
        "route": route,
        "status": status,
        "version": version,
        "error": error,
    }


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("D1_ERROR: no such table: payment_history: SQLITE_ERROR", "missing-table"),
        ("D1_ERROR: no such table: main.usage_tracking: SQLITE_ERROR", "missing-table"),
        ("D1_ERROR: D1 DB is overloaded. Too many requests queued.", "d1"),
        ("D1_ERROR: storage operation exceeded timeout", "d1"),
        ("put: Reduce your concurrent request rate for the same object. (10058)", "r2"),
        ("TypeError: Cannot read properties of undefined", "code"),
    ],
)
def test_error_class_sorts_thrown_messages(message, kind):
    assert error_class(message) == kind


def test_route_table_keeps_429_apart_and_puts_the_worst_route_first():
    events = [_event(i, "GET /a", 200) for i in range(8)]
    events += [_event(10, "GET /b", 500, error="boom"), _event(11, "GET /b", 200)]
    events += [_event(12, "GET /a", 429)]
    rows = route_table(events)
    assert rows[0]["route"] == "GET /b"
    assert (rows[0]["5xx"], rows[0]["5xx_rate"], rows[0]["top_error"]) == (
        1,
        0.5,
        "boom",
    )
    assert (rows[1]["5xx"], rows[1]["429"]) == (0, 1)


def test_chart_renders_a_png_with_buckets():
    events = [_event(1000 + 60 * i, "GET /a", 500 if i > 5 else 200) for i in range(10)]
    facts = {"events": events, "window_start": 1000.0, "window_end": 1600.0}
    route_errors = Finding("route-errors", Status.FAIL, "x", (), facts)
    deployments = Finding(
        "deployments-in-window",
        Status.FAIL,
        "x",
        (),
        {"deployments": [{"at": 1330.0, "version": "abcdef123456"}]},
    )
    plot = plot_error_rate(route_errors, deployments)
    assert plot._repr_png_().startswith(b"\x89PNG")
    assert sum(b["5xx"] for b in plot.buckets) == 4
    table = error_breakdown(route_errors)
    assert int(table.loc[("GET /a", "v1"), "5xx"]) == 4


@pytest.fixture
def env(sandbox):
    return load_environment("sandbox")


def test_route_errors_name_the_missing_table_and_d1_confirms_it(sandbox, env):
    sandbox.reset("missing-table")
    routes = check_route_errors(env)
    assert routes.status is Status.FAIL
    assert routes.facts["problem_routes"] == [
        "GET /admin/revenue",
        "GET /payments/subscription",
    ]
    tables = check_missing_tables(env, routes)
    assert tables.status is Status.FAIL
    assert tables.facts["missing"] == ["usage_tracking"]


def test_healthy_traffic_has_no_errors_and_no_free_user_at_the_limit(sandbox, env):
    sandbox.reset("healthy")
    routes = check_route_errors(env)
    assert routes.status is Status.OK
    assert routes.facts["requests"] > 100
    assert routes.facts["server_errors"] == 0
    assert check_user_limits(env).status is Status.OK
    invocations = check_invocations(env)
    assert invocations.status is Status.OK
    assert invocations.facts["requests"] >= routes.facts["requests"]


def test_free_tier_429s_are_counted_apart_from_failures(sandbox, env):
    sandbox.reset("free-tier-429s")
    routes = check_route_errors(env)
    assert routes.status is Status.WARN
    assert routes.facts["server_errors"] == 0
    assert routes.facts["rate_limited"] > 20
    limits = check_user_limits(env)
    assert limits.status is Status.WARN
    assert {c["tier"] for c in limits.evidence} == {"FREE"}


def test_graphql_errors_in_a_200_answer_raise(sandbox, env):
    client = CloudflareClient(env)
    try:
        with pytest.raises(APIError, match=r"GraphQL HTTP 200.*unknown field"):
            client.graphql(
                "{ viewer { accounts(filter: {accountTag: $a}) { "
                "workersInvocationsAdaptive(limit: 10) { sum { nonsense } } } } }",
                {"a": env.account_id},
            )
    finally:
        client.close()


def test_graphql_answers_invocations_by_version(sandbox, env):
    sandbox.reset("endpoint-broken-after-deploy")
    finding = check_invocations(env)
    assert finding.status is Status.OK
    assert len({row["version"] for row in finding.evidence}) == 2
    assert finding.facts["exceptions"] == 0
