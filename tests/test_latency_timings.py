"""Wall against CPU time per route, start-up time, and the probe's first answers:
pure helpers, then the checks against the sandbox's slow-responses scenarios."""

import httpx
import pytest

from opslib import (
    CloudflareClient,
    Status,
    check_latency,
    check_route_timings,
    check_startup,
    check_worker_times,
    load_environment,
)
from opslib._latency import cold_routes, route_stats
from opslib._platform import Probe
from opslib._routetimings import (
    is_computing,
    one_per_request,
    timed_event,
    timing_table,
    waiting_routes,
)

TEST_EMAIL = "prodtest1@example.com"


def _event(route="GET /manuscripts", wall=20, cpu=3, version="v1", at=1000):
    _method, path = route.split(" ")
    return {
        "timestamp": at,
        "$metadata": {"trigger": route, "url": f"https://api.example.com{path}"},
        "$workers": {
            "wallTimeMs": wall,
            "cpuTimeMs": cpu,
            "scriptVersion": {"id": version},
        },
    }


def test_timed_event_reads_route_and_times_and_skips_untimed_events():
    slim = timed_event(_event("POST /payments/create-portal-session", 4100, 3))
    assert slim["route"] == "POST /payments/create-portal-session"
    assert (slim["wall_ms"], slim["cpu_ms"]) == (4100.0, 3.0)
    untimed = _event()
    del untimed["$workers"]["wallTimeMs"]
    assert timed_event(untimed) is None


def test_timing_table_names_the_service_a_route_calls_slowest_first():
    events = [timed_event(_event("GET /auth/me", 5, 2)) for _ in range(10)]
    events += [
        timed_event(_event("POST /payments/create-portal-session", w, 3))
        for w in (400, 4200, 4900, 5300)
    ]
    rows = timing_table(events)
    assert rows[0]["route"] == "POST /payments/create-portal-session"
    assert rows[0]["calls"] == "Stripe"
    assert rows[0]["wall_p95_ms"] == 5300
    assert rows[1]["calls"] == ""


def test_waiting_routes_keep_slow_low_cpu_routes_only():
    events = [
        timed_event(_event("POST /payments/create-portal-session", 4500, 4))
        for _ in range(5)
    ]
    events += [timed_event(_event("GET /admin/revenue", 4000, 3900)) for _ in range(5)]
    events += [timed_event(_event("GET /auth/me", 20, 3)) for _ in range(5)]
    found = waiting_routes(events, timing_table(events))
    assert [w["route"] for w in found] == ["POST /payments/create-portal-session"]
    assert found[0]["service"] == "Stripe"


@pytest.mark.parametrize(
    ("wall", "cpu", "computing"),
    [(2300, 2290, True), (2300, 900, False), (900, 890, False), (5000, 4, False)],
)
def test_is_computing_needs_a_slow_cpu_bound_request(wall, cpu, computing):
    assert is_computing({"wall_ms": wall, "cpu_ms": cpu}) is computing


def test_cold_routes_need_a_slow_first_answer_and_a_fast_rest():
    probes = [Probe("/a", 401, 2300.0, 401, "")] + [Probe("/a", 401, 5.0, 401, "")] * 9
    probes += [Probe("/b", 401, 2300.0, 401, "")] * 10
    probes += [Probe("/c", 401, 40.0, 401, "")] + [Probe("/c", 401, 4.0, 401, "")] * 9
    assert cold_routes(route_stats(probes)) == ["/a"]


def test_healthy_sandbox_waits_on_nothing_and_starts_fast(sandbox):
    sandbox.reset("healthy")
    env = load_environment("sandbox")
    timings = check_route_timings(env)
    assert timings.status is Status.OK, timings.summary
    portal = next(
        r
        for r in timings.evidence
        if r["route"] == "POST /payments/create-portal-session"
    )
    assert portal["calls"] == "Stripe"
    assert portal["wall_p50_ms"] > 10 * portal["cpu_p50_ms"]
    assert portal["wall_p95_ms"] < 3000
    startup = check_startup(env)
    assert startup.status is Status.OK
    assert startup.facts["live_startup_ms"] < 100


def test_slow_stripe_shows_as_a_waiting_portal_route(sandbox):
    sandbox.reset("slow-external-api")
    env = load_environment("sandbox")
    timings = check_route_timings(env)
    assert timings.status is Status.FAIL
    assert [w["route"] for w in timings.facts["waiting"]] == [
        sandbox.truth()["details"]["route"]
    ]
    assert timings.facts["waiting"][0]["service"] == "Stripe"
    assert timings.facts["computing"] == []
    latency = check_latency(env, requests_per_route=4)
    assert latency.status is Status.OK
    assert latency.facts["cold_routes"] == []


def test_cold_start_slows_each_routes_first_answer_and_reports_startup(sandbox):
    sandbox.reset("cold-start")
    env = load_environment("sandbox")
    latency = check_latency(env, requests_per_route=6, concurrency=4)
    assert latency.facts["cold_routes"], latency.summary
    assert all(r["p50_ms"] < 500 for r in latency.facts["routes"])
    startup = check_startup(env)
    truth = sandbox.truth()["details"]
    assert startup.status is Status.WARN
    assert startup.facts["live_version"] == truth["version"]
    assert startup.facts["live_startup_ms"] == truth["startup_ms"]
    timings = check_route_timings(env)
    assert len(timings.facts["computing"]) >= 2
    assert {c["version"] for c in timings.facts["computing"]} == {truth["version"]}


def _give_test_account_a_stripe_customer(env):
    client = CloudflareClient(env)
    try:
        client.d1_query(
            "INSERT INTO subscriptions (id, user_id, stripe_subscription_id, "
            "stripe_customer_id, plan_type, status, current_period_start, "
            "current_period_end, created_at, updated_at) SELECT 'sub-row-test', id, "
            "'sub_test_portal', 'cus_test_portal', 'pro', 'active', 0, 1, 0, 0 "
            "FROM users WHERE email = ?",
            [TEST_EMAIL],
            read_only=False,
        )
    finally:
        client.close()


def test_a_live_portal_session_waits_on_a_slow_stripe(sandbox):
    sandbox.reset("slow-external-api")
    _give_test_account_a_stripe_customer(load_environment("sandbox"))
    base = sandbox.urls["platform_url"]
    lines = (sandbox.state_dir / "secrets.env").read_text().splitlines()
    password = dict(line.split("=", 1) for line in lines if "=" in line)[
        "RUNBOOK_TEST_ACCOUNT_PASSWORD"
    ]
    with httpx.Client(base_url=base, timeout=30) as http:
        login = http.post(
            "/auth/login",
            json={"email": TEST_EMAIL, "password": password},
        )
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"].split(";", 1)[0]
        answer = http.post(
            "/payments/create-portal-session", headers={"Cookie": cookie}
        )
    assert answer.status_code == 200, answer.text
    env = load_environment("sandbox")
    timings = check_route_timings(env, window_min=5)
    portal = [
        r
        for r in timings.evidence
        if r["route"] == "POST /payments/create-portal-session"
    ]
    assert portal[0]["wall_p95_ms"] >= 3500


def test_logged_lines_of_a_request_count_once_with_its_route():
    main = _event("POST /webhooks/stripe", 900, 20)
    main["$metadata"].update(requestId="r-1", statusCode=200)
    line = _event("POST /webhooks/stripe", 900, 20)
    line["$metadata"] = {"requestId": "r-1", "trigger": "POST /webhooks/stripe"}
    other = _event("GET /auth/me", 5, 2)
    kept = one_per_request([line, main, other])
    assert len(kept) == 2
    assert timed_event(kept[0])["route"] == "POST /webhooks/stripe"
    assert kept[0]["$metadata"]["statusCode"] == 200


def test_worker_times_show_a_slow_stripe_as_long_wall_and_little_cpu(sandbox):
    sandbox.reset("slow-external-api")
    worker = check_worker_times(load_environment("sandbox"))
    assert worker.status is Status.WARN, worker.summary
    assert worker.facts["wallTimeP99"] >= 3500
    assert worker.facts["cpuTimeP99"] < 100
    assert worker.facts["subrequests"] >= 1
    sandbox.reset("healthy")
    healthy = check_worker_times(load_environment("sandbox"))
    assert healthy.status is Status.OK, healthy.summary
    assert 0 < healthy.facts["wallTimeP50"] < healthy.facts["wallTimeP99"] < 3000
