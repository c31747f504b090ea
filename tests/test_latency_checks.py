"""Slow-responses checks: pure helpers, and the checks against the sandbox."""

import time

import httpx
import pytest

from opslib import (
    Status,
    check_indexes,
    check_latency,
    check_query_plans,
    load_environment,
    plot_latency,
)
from opslib._latency import percentile, route_stats
from opslib._platform import Probe
from opslib._queryplan import HOT_INDEX, is_full_scan, plan_lines

TEST_EMAIL = "prodtest1@example.com"


def _probe(path, ms, status=401):
    return Probe(path, status, ms, 401, "")


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_route_stats_orders_slowest_p95_first_and_skips_unanswered():
    probes = [_probe("/a", 10.0)] * 19 + [_probe("/a", 5000.0)]
    probes += [_probe("/b", 20.0)] * 20
    probes += [Probe("/c", None, 10_000.0, 401, "timeout")]
    rows = route_stats(probes)
    assert [r["route"] for r in rows] == ["/b", "/a", "/c"]
    assert rows[1]["p50_ms"] == 10.0
    assert rows[1]["p99_ms"] == 5000.0
    assert rows[2]["answered"] == 0


@pytest.mark.parametrize(
    ("detail", "scan"),
    [
        ("SCAN manuscripts", True),
        ("SCAN manuscripts USING INDEX idx_manuscripts_created", True),
        ("SEARCH manuscripts USING INDEX idx_manuscripts_user (user_id=?)", False),
        (
            "SEARCH manuscripts USING COVERING INDEX idx_manuscripts_user (user_id=?)",
            False,
        ),
        ("USE TEMP B-TREE FOR ORDER BY", False),
        ("SCAN users", False),
    ],
)
def test_full_scan_is_a_scan_of_manuscripts(detail, scan):
    assert is_full_scan(detail) is scan


def test_plan_lines_reads_the_detail_column():
    answer = [{"results": [{"id": 3, "parent": 0, "detail": "SCAN manuscripts"}]}]
    assert plan_lines(answer) == ["SCAN manuscripts"]
    assert plan_lines([]) == []


def test_healthy_sandbox_is_fast_and_indexed(sandbox):
    sandbox.reset("healthy")
    env = load_environment("sandbox")
    latency = check_latency(env, requests_per_route=5, concurrency=4, deadline_s=20)
    assert latency.status is Status.OK, latency.summary
    assert latency.facts["sent"] == 15
    assert all(r["p95_ms"] < 3000 for r in latency.facts["routes"])
    assert check_query_plans(env).status is Status.OK
    indexes = check_indexes(env)
    assert indexes.status is Status.OK
    assert HOT_INDEX in indexes.facts["present"]


def test_missing_index_scans_and_names_the_missing_indexes(sandbox):
    sandbox.reset("missing-index")
    env = load_environment("sandbox")
    plans = check_query_plans(env)
    assert plans.status is Status.FAIL
    assert "list" in plans.facts["scanning"]
    indexes = check_indexes(env)
    assert indexes.status is Status.WARN
    assert HOT_INDEX in indexes.facts["missing"]
    assert "idx_manuscripts_user" in indexes.facts["missing"]


def _signed_in_list_seconds(sandbox) -> float:
    lines = (sandbox.state_dir / "secrets.env").read_text().splitlines()
    password = dict(line.split("=", 1) for line in lines if "=" in line)[
        "RUNBOOK_TEST_ACCOUNT_PASSWORD"
    ]
    base = sandbox.urls["platform_url"]
    with httpx.Client(timeout=30) as http:
        login = http.post(
            base + "/auth/login",
            json={"email": TEST_EMAIL, "password": password, "rememberMe": False},
        )
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"].split(";", 1)[0]
        started = time.monotonic()
        answer = http.get(base + "/manuscripts", headers={"Cookie": cookie})
        assert answer.status_code == 200, answer.text
        return time.monotonic() - started


def test_the_list_route_is_slow_only_while_its_query_scans(sandbox):
    sandbox.reset("healthy")
    fast = _signed_in_list_seconds(sandbox)
    sandbox.reset("missing-index")
    slow = _signed_in_list_seconds(sandbox)
    # Compared within one test, so a loaded machine slows both sides alike.
    assert slow > fast + 1.0


def test_histogram_is_a_png(sandbox):
    sandbox.reset("healthy")
    latency = check_latency(
        load_environment("sandbox"), ["/manuscripts"], requests_per_route=3
    )
    chart = plot_latency(latency)
    assert chart._repr_png_().startswith(b"\x89PNG")
    assert chart.routes == ("/manuscripts",)


def test_unreachable_platform_is_unknown(sandbox, monkeypatch):
    env = load_environment("sandbox")
    closed = env.__class__(**{**env.__dict__, "platform_url": "http://127.0.0.1:9"})
    latency = check_latency(closed, ["/manuscripts"], requests_per_route=2)
    assert latency.status is Status.UNKNOWN
