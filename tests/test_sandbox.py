"""The sandbox: lifecycle, seeded D1, platform, Cloudflare API and status page."""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from opslib._config import Environment, load_environment
from opslib._errors import ConfigError
from opslib.sandbox import SCENARIOS, Sandbox, Scenario, default_state_dir
from opslib.sandbox._cli import cli
from opslib.sandbox._seed import build_template, table_counts

TEST_EMAIL = "prodtest1@example.com"
CORE_TABLES = {
    "users",
    "manuscripts",
    "subscriptions",
    "payment_history",
    "usage_tracking",
    "verification_tokens",
    "password_reset_tokens",
    "sessions",
    "audit_log",
    "backup_logs",
    "schema_version",
}


@pytest.fixture(scope="module")
def env() -> Environment:
    folder = Path(__file__).resolve().parent.parent / "parameters" / "environments"
    return load_environment("sandbox", environ={"RUNBOOK_ENVIRONMENTS": str(folder)})


@pytest.fixture(scope="module")
def sbx(
    tmp_path_factory: pytest.TempPathFactory, env: Environment
) -> Iterator[Sandbox]:
    sandbox = Sandbox(
        tmp_path_factory.mktemp("sandbox"), env, ephemeral_ports=True, tied=True
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def secrets_of(sandbox: Sandbox) -> dict[str, str]:
    lines = (sandbox.state_dir / "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def cf(
    sandbox: Sandbox, http: httpx.Client, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    token = secrets_of(sandbox)["CLOUDFLARE_API_TOKEN"]
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    url = sandbox.urls["cloudflare_api_url"] + path
    return http.request(method, url, headers=headers, **kwargs)


def script_path(env: Environment, tail: str = "") -> str:
    return f"/accounts/{env.account_id}/workers/scripts/{env.worker_name}{tail}"


def d1(
    sandbox: Sandbox,
    http: httpx.Client,
    env: Environment,
    body: dict[str, Any],
    kind: str = "query",
) -> httpx.Response:
    path = f"/accounts/{env.account_id}/d1/database/{env.d1_database_id}/{kind}"
    return cf(sandbox, http, "POST", path, json=body)


def platform(
    sandbox: Sandbox, http: httpx.Client, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    return http.request(method, sandbox.urls["platform_url"] + path, **kwargs)


def login(
    sandbox: Sandbox,
    http: httpx.Client,
    password: str | None = None,
    email: str = TEST_EMAIL,
) -> httpx.Response:
    password = password or secrets_of(sandbox)["RUNBOOK_TEST_ACCOUNT_PASSWORD"]
    return platform(
        sandbox,
        http,
        "POST",
        "/auth/login",
        json={"email": email, "password": password, "rememberMe": False},
    )


def session_cookie(response: httpx.Response) -> str:
    return response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]


def errors(response: httpx.Response) -> list[int]:
    return [e["code"] for e in response.json()["errors"]]


# -- lifecycle -------------------------------------------------------------------


def test_scenarios_start_with_the_six_api_down_drills_in_order() -> None:
    # Other runbooks' scenario modules register theirs after these six.
    assert list(SCENARIOS)[:6] == [
        "healthy",
        "bad-deployment",
        "d1-unavailable",
        "missing-secret",
        "kv-binding-broken",
        "cloudflare-outage",
    ]
    assert all(
        isinstance(s, Scenario) and s.notebook == "api-down"
        for s in list(SCENARIOS.values())[:6]
    )
    assert SCENARIOS["kv-binding-broken"].cause == "kv-binding"


def test_default_state_dir_is_dot_sandbox_in_the_project_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = Path(__file__).resolve().parent.parent
    monkeypatch.delenv("RUNBOOK_ENVIRONMENTS", raising=False)
    monkeypatch.chdir(root / "tests")
    assert default_state_dir() == root / ".sandbox"


def test_start_writes_pid_status_secrets_and_environment(sbx: Sandbox) -> None:
    status = sbx.status()
    assert status is not None
    pid_text = (sbx.state_dir / "sandbox.pid").read_text().strip()
    assert int(pid_text) == status["pid"]
    token = secrets_of(sbx)["CLOUDFLARE_API_TOKEN"]
    assert token not in (sbx.state_dir / "sandbox.json").read_text()

    written = load_environment(
        "sandbox", environ={"RUNBOOK_ENVIRONMENTS": str(sbx.environments_dir)}
    )
    assert written.platform_url == sbx.urls["platform_url"]
    assert written.secret("CLOUDFLARE_API_TOKEN") == token
    assert written.secret("RUNBOOK_TEST_ACCOUNT_PASSWORD")


def test_status_reports_scenario_urls_and_state_dir(sbx: Sandbox) -> None:
    status = sbx.status()
    assert status is not None
    assert set(status) == {"pid", "scenario", "urls", "started_at", "state_dir"}
    assert set(status["urls"]) == {
        "platform_url",
        "cloudflare_api_url",
        "status_page_url",
        "mailchannels_url",
        "stripe_api_url",
        "r2_endpoint_url",
        "control_url",
    }
    assert all(url.startswith("http://127.0.0.1:") for url in status["urls"].values())


def test_second_start_in_the_same_state_dir_raises_config_error(
    sbx: Sandbox, env: Environment
) -> None:
    with pytest.raises(ConfigError, match="already runs"):
        Sandbox(sbx.state_dir, env, ephemeral_ports=True).start()


def test_start_with_unknown_scenario_names_the_known_ones(
    tmp_path: Path, env: Environment
) -> None:
    with pytest.raises(ConfigError, match="expected one of: healthy, bad-deployment"):
        Sandbox(tmp_path, env).start("no-such-thing")


def test_start_on_a_busy_port_raises_config_error_naming_it(
    tmp_path: Path, env: Environment
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        busy = dataclasses.replace(env, platform_url=f"http://127.0.0.1:{port}")
        with pytest.raises(ConfigError, match=f"port {port} of platform_url .* busy"):
            Sandbox(tmp_path, busy).start()


def test_stop_removes_the_pid_file_and_a_second_stop_returns_false(
    tmp_path: Path, env: Environment
) -> None:
    sandbox = Sandbox(tmp_path, env, ephemeral_ports=True)
    sandbox.start("cloudflare-outage")
    try:
        assert sandbox.status()["scenario"] == "cloudflare-outage"  # type: ignore[index]
    finally:
        assert sandbox.stop() is True
    assert sandbox.status() is None
    assert not (tmp_path / "sandbox.pid").exists()
    assert sandbox.stop() is False


def test_start_that_is_not_ready_in_time_raises_config_error_and_cleans_up(
    tmp_path: Path, env: Environment
) -> None:
    sandbox = Sandbox(tmp_path, env, ephemeral_ports=True)
    with pytest.raises(ConfigError, match="did not become ready within 0.01 s"):
        sandbox.start(timeout=0.01)
    assert sandbox.status() is None


def test_reset_of_unknown_scenario_raises_config_error(sbx: Sandbox) -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        sbx.reset("meteor-strike")


def test_inject_with_unknown_fault_raises_config_error(sbx: Sandbox) -> None:
    with pytest.raises(ConfigError, match="unknown fault"):
        sbx.inject(disk_full=1)


def test_reset_restores_deleted_rows(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    seeded = d1(sbx, http, env, {"sql": "SELECT COUNT(*) AS n FROM payment_history"})
    d1(sbx, http, env, {"sql": "DELETE FROM payment_history"})
    sbx.reset("healthy")

    count = d1(sbx, http, env, {"sql": "SELECT COUNT(*) AS n FROM payment_history"})
    n = count.json()["result"][0]["results"][0]["n"]
    assert n > 0
    assert n == seeded.json()["result"][0]["results"][0]["n"]


# -- seeded D1 ---------------------------------------------------------------------


def test_schema_has_the_platform_tables_view_and_indexes(sbx: Sandbox) -> None:
    with sqlite3.connect(sbx.state_dir / "d1.sqlite") as db:
        objects = {
            (t, n) for t, n in db.execute("SELECT type, name FROM sqlite_master")
        }
    assert CORE_TABLES <= {n for t, n in objects if t == "table"}
    assert ("view", "user_subscriptions_with_usage") in objects
    assert {
        ("index", "idx_users_email"),
        ("index", "idx_manuscripts_user_status_date"),
        ("index", "idx_audit_user_timestamp"),
    } <= objects


def test_seed_counts_and_ids_are_the_same_in_two_builds(tmp_path: Path) -> None:
    first, second = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    build_template(first, "pw-one")
    build_template(second, "pw-two")
    assert table_counts(first) == table_counts(second)
    assert table_counts(first)["users"] >= 300
    ids = "SELECT id FROM manuscripts ORDER BY id"
    with sqlite3.connect(first) as a, sqlite3.connect(second) as b:
        assert a.execute(ids).fetchall() == b.execute(ids).fetchall()


def test_seeded_data_is_current_and_hashes_are_96_hex(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    sql = (
        "SELECT (SELECT COUNT(*) FROM subscriptions WHERE plan_type != 'free' AND "
        "status = 'active' AND current_period_start <= unixepoch() AND "
        "current_period_end > unixepoch()) AS current_paid, "
        "(SELECT COUNT(*) FROM users WHERE length(password_hash) = 96 AND "
        "password_hash NOT GLOB '*[^0-9a-f]*') AS hex_hashes, "
        "(SELECT MAX(version) FROM schema_version) AS schema_version"
    )
    row = d1(sbx, http, env, {"sql": sql}).json()["result"][0]["results"][0]
    assert row["current_paid"] > 20
    assert row["hex_hashes"] == 300
    assert row["schema_version"] == 6


# -- platform: auth and sessions ---------------------------------------------------


def test_login_sets_the_session_cookie_and_a_kv_session(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    response = login(sbx, http, email="ProdTest1@Example.com")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    for part in (
        "Path=/",
        "Domain=.example.com",
        "HttpOnly",
        "Secure",
        "SameSite=None",
        "Max-Age=1800",
    ):
        assert part in cookie

    key = f"session:{session_cookie(response)}"
    ns = env.kv_namespaces["SESSIONS"]
    stored = cf(
        sbx,
        http,
        "GET",
        f"/accounts/{env.account_id}/storage/kv/namespaces/{ns}/values/{key}",
    )
    session = json.loads(stored.content)
    assert session["expiresAt"] - session["createdAt"] == 1_800_000
    assert session["rememberMe"] is False


def test_login_with_wrong_password_answers_400(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("healthy")
    response = login(sbx, http, password="Wrong-password-1!")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid credentials"}


def test_login_of_unverified_user_answers_403(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    d1(
        sbx,
        http,
        env,
        {
            "sql": "UPDATE users SET email_verified = 0 WHERE email = ?",
            "params": [TEST_EMAIL],
        },
    )
    assert login(sbx, http).status_code == 403


def test_sixth_login_attempt_within_the_window_answers_429(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("healthy")
    codes = [
        login(sbx, http, password="Wrong-password-1!").status_code for _ in range(6)
    ]
    assert codes == [400] * 5 + [429]


def test_manuscripts_answers_401_without_cookie_and_200_with_it(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("healthy")
    anonymous = platform(sbx, http, "GET", "/manuscripts")
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "Unauthorized"}

    cookie = session_cookie(login(sbx, http))
    mine = platform(
        sbx, http, "GET", "/manuscripts", headers={"Cookie": f"session_id={cookie}"}
    )
    assert mine.status_code == 200
    assert len(mine.json()["manuscripts"]) == 3


def test_logout_deletes_the_session(sbx: Sandbox, http: httpx.Client) -> None:
    sbx.reset("healthy")
    headers = {"Cookie": f"session_id={session_cookie(login(sbx, http))}"}
    out = platform(sbx, http, "POST", "/auth/logout", headers=headers)
    assert out.status_code == 200
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert platform(sbx, http, "GET", "/auth/me", headers=headers).status_code == 401


def test_preflight_answers_200_and_unlisted_origin_gets_the_first_allowed(
    sbx: Sandbox, http: httpx.Client
) -> None:
    listed = platform(
        sbx,
        http,
        "OPTIONS",
        "/manuscripts",
        headers={"Origin": "https://dashboard.example.com"},
    )
    unlisted = platform(
        sbx, http, "GET", "/manuscripts", headers={"Origin": "https://evil.example.net"}
    )
    assert listed.status_code == 200 and listed.content == b""
    assert (
        listed.headers["access-control-allow-origin"] == "https://dashboard.example.com"
    )
    assert unlisted.headers["access-control-allow-origin"] == "https://example.com"
    assert "max-age=31536000" in unlisted.headers["strict-transport-security"]


def test_unknown_route_answers_404_naming_the_path(
    sbx: Sandbox, http: httpx.Client
) -> None:
    response = platform(sbx, http, "GET", "/health")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "path": "/health"}


# -- platform: scenarios -----------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ("healthy", 401),
        ("bad-deployment", 500),
        ("d1-unavailable", 401),
        ("missing-secret", 401),
        ("kv-binding-broken", 500),
        ("cloudflare-outage", 503),
    ],
)
def test_manuscripts_probe_answers_per_scenario(
    sbx: Sandbox, http: httpx.Client, scenario: str, status: int
) -> None:
    sbx.reset(scenario)
    response = platform(sbx, http, "GET", "/manuscripts")
    assert response.status_code == status
    assert sbx.truth()["cause"] == SCENARIOS[scenario].cause


def test_cloudflare_outage_answers_like_the_edge_not_the_worker(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("cloudflare-outage")
    response = platform(sbx, http, "GET", "/auth/me")
    assert response.text == "error code: 1105"
    assert "application/json" not in response.headers["content-type"]


def test_root_is_a_static_asset_even_with_a_broken_worker(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("bad-deployment")
    response = platform(sbx, http, "GET", "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_d1_unavailable_fails_login_and_queries_but_describes_the_database(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("d1-unavailable")
    assert login(sbx, http).status_code == 500
    query = d1(sbx, http, env, {"sql": "SELECT 1"})
    assert query.status_code == 400 and errors(query) == [7500]
    assert "transient issue" in query.json()["errors"][0]["message"]
    info = cf(
        sbx, http, "GET", f"/accounts/{env.account_id}/d1/database/{env.d1_database_id}"
    )
    assert info.json()["result"]["name"] == env.d1_database_name


def test_missing_secret_fails_payments_only_after_auth(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("missing-secret")
    assert platform(sbx, http, "GET", "/payments/subscription").status_code == 401
    headers = {"Cookie": f"session_id={session_cookie(login(sbx, http))}"}
    broken = platform(sbx, http, "GET", "/payments/subscription", headers=headers)
    secrets = cf(sbx, http, "GET", script_path(env, "/secrets")).json()["result"]
    assert broken.status_code == 500
    assert "STRIPE_SECRET_KEY" not in {s["name"] for s in secrets}
    assert sbx.truth()["details"]["missing"] == ["STRIPE_SECRET_KEY"]


def test_payments_work_in_the_healthy_scenario(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("healthy")
    headers = {"Cookie": f"session_id={session_cookie(login(sbx, http))}"}
    response = platform(sbx, http, "GET", "/payments/subscription", headers=headers)
    assert response.status_code == 200
    assert response.json()["subscription"]["planType"] == "free"


def test_kv_binding_broken_hides_the_namespace_but_preflight_still_works(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("kv-binding-broken")
    listed = cf(sbx, http, "GET", f"/accounts/{env.account_id}/storage/kv/namespaces")
    ids = {ns["id"] for ns in listed.json()["result"]}
    bindings = cf(sbx, http, "GET", script_path(env, "/settings")).json()["result"]
    bound = {b["namespace_id"] for b in bindings["bindings"] if b["name"] == "SESSIONS"}
    assert bound == {env.kv_namespaces["SESSIONS"]}
    assert env.kv_namespaces["SESSIONS"] not in ids
    assert platform(sbx, http, "OPTIONS", "/manuscripts").status_code == 200


# -- Cloudflare API ----------------------------------------------------------------


def test_missing_token_answers_401_with_code_1001(
    sbx: Sandbox, http: httpx.Client
) -> None:
    response = http.get(sbx.urls["cloudflare_api_url"] + "/user/tokens/verify")
    assert response.status_code == 401 and errors(response) == [1001]
    assert response.json()["success"] is False and response.json()["result"] is None


def test_wrong_token_answers_401_invalid_api_token(
    sbx: Sandbox, http: httpx.Client
) -> None:
    response = http.get(
        sbx.urls["cloudflare_api_url"] + "/user/tokens/verify",
        headers={"Authorization": "Bearer " + "x" * 40},
    )
    assert response.status_code == 401 and errors(response) == [1000]


def test_token_verify_reports_an_active_token(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    response = cf(sbx, http, "GET", f"/accounts/{env.account_id}/tokens/verify")
    assert response.json()["result"]["status"] == "active"
    assert response.json()["messages"][0]["code"] == 10000


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/accounts/0123456789abcdef0123456789abcdef/workers/scripts", 404, 7003),
        ("/accounts/{a}/workers/scripts/no-such-worker/deployments", 404, 10007),
        ("/accounts/{a}/nothing-here", 404, 7000),
        ("/accounts/{a}/storage/kv/namespaces/ffffffff/keys", 404, 10013),
    ],
)
def test_error_answers_use_the_v4_envelope_and_codes(
    sbx: Sandbox,
    http: httpx.Client,
    env: Environment,
    path: str,
    status: int,
    code: int,
) -> None:
    response = cf(sbx, http, "GET", path.format(a=env.account_id))
    assert response.status_code == status
    assert response.json() == {
        "success": False,
        "errors": [response.json()["errors"][0]],
        "messages": [],
        "result": None,
    }
    assert errors(response) == [code]


def test_versions_page_newest_first_and_a_page_past_the_end_is_empty(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    pages = [
        cf(
            sbx,
            http,
            "GET",
            script_path(env, "/versions"),
            params={"page": page, "per_page": 2},
        ).json()
        for page in (1, 2, 3, 4)
    ]
    numbers = [v["number"] for p in pages for v in p["result"]["items"]]
    assert numbers == [5, 4, 3, 2, 1]
    assert pages[0]["result_info"] == {
        "page": 1,
        "per_page": 2,
        "count": 2,
        "total_count": 5,
        "total_pages": 3,
    }
    assert pages[3]["result"]["items"] == []


def test_version_detail_has_annotations_and_resources(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("bad-deployment")
    bad = sbx.truth()["details"]["bad_version"]
    version = cf(sbx, http, "GET", script_path(env, f"/versions/{bad}")).json()[
        "result"
    ]
    assert version["number"] == 6
    assert version["annotations"]["workers/triggered_by"] == "upload"
    assert {b["type"] for b in version["resources"]["bindings"]} >= {
        "d1",
        "kv_namespace",
        "r2_bucket",
        "queue",
        "secret_text",
    }
    assert version["resources"]["script_runtime"]["compatibility_date"] == "2024-09-23"


def test_rollback_deployment_becomes_live_and_the_platform_follows(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("bad-deployment")
    good = sbx.truth()["details"]["good_version"]
    body = {
        "strategy": "percentage",
        "versions": [{"version_id": good, "percentage": 100}],
        "annotations": {"workers/message": "Rollback from the sandbox test"},
    }
    created = cf(sbx, http, "POST", script_path(env, "/deployments"), json=body)
    listed = cf(sbx, http, "GET", script_path(env, "/deployments")).json()["result"]

    assert created.status_code == 200
    assert listed["deployments"][0]["id"] == created.json()["result"]["id"]
    assert listed["deployments"][0]["versions"] == [
        {"version_id": good, "percentage": 100}
    ]
    assert platform(sbx, http, "GET", "/manuscripts").status_code == 401


def test_rollback_across_a_secret_change_is_refused_with_10220_unless_forced(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("missing-secret")
    previous = sbx.truth()["details"]["previous_version"]
    body = {
        "strategy": "percentage",
        "versions": [{"version_id": previous, "percentage": 100}],
    }
    refused = cf(sbx, http, "POST", script_path(env, "/deployments"), json=body)
    forced = cf(
        sbx,
        http,
        "POST",
        script_path(env, "/deployments"),
        json=body,
        params={"force": "true"},
    )
    assert errors(refused) == [10220]
    assert "The following secrets have changed: STRIPE_SECRET_KEY" in refused.text
    assert forced.status_code == 200


def test_deployment_with_percentages_not_totalling_100_is_refused(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    ids = [
        v["id"]
        for v in cf(sbx, http, "GET", script_path(env, "/versions")).json()["result"][
            "items"
        ][:2]
    ]
    body = {
        "strategy": "percentage",
        "versions": [
            {"version_id": ids[0], "percentage": 60},
            {"version_id": ids[1], "percentage": 30},
        ],
    }
    response = cf(sbx, http, "POST", script_path(env, "/deployments"), json=body)
    assert response.status_code == 400 and errors(response) == [10021]


def test_d1_query_returns_meta_and_raw_returns_columns_and_rows(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    query = d1(
        sbx,
        http,
        env,
        {
            "sql": "SELECT COUNT(*) AS n FROM users WHERE email = ?",
            "params": [TEST_EMAIL],
        },
    ).json()
    raw = d1(sbx, http, env, {"sql": "SELECT 1 AS one, 'x' AS two"}, kind="raw").json()
    meta = query["result"][0]["meta"]
    assert query["result"][0]["results"] == [{"n": 1}]
    assert {
        "duration",
        "rows_read",
        "rows_written",
        "changes",
        "last_row_id",
        "changed_db",
        "size_after",
        "served_by_region",
        "served_by_primary",
    } <= set(meta)
    assert raw["result"][0]["results"] == {
        "columns": ["one", "two"],
        "rows": [[1, "x"]],
    }


@pytest.mark.parametrize(
    "sql",
    [
        "BEGIN TRANSACTION",
        "PRAGMA foreign_keys = OFF",
        "SAVEPOINT sp1",
        "SELECT * FROM _cf_KV",
    ],
)
def test_d1_refuses_transactions_pragmas_and_internal_tables(
    sbx: Sandbox, http: httpx.Client, env: Environment, sql: str
) -> None:
    response = d1(sbx, http, env, {"sql": sql})
    assert response.status_code == 400 and errors(response) == [7500]
    assert response.json()["errors"][0]["message"].endswith("SQLITE_AUTH")


def test_d1_allows_defer_foreign_keys(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    response = d1(sbx, http, env, {"sql": "PRAGMA defer_foreign_keys = true"})
    assert response.status_code == 200


def test_d1_allows_the_documented_schema_pragmas(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    response = d1(sbx, http, env, {"sql": "PRAGMA table_info(manuscripts)"})
    columns = {row["name"] for row in response.json()["result"][0]["results"]}
    assert "user_id" in columns and "author_id" not in columns


def test_d1_invalid_sql_answers_400_with_sqlite_error(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    response = d1(sbx, http, env, {"sql": "SELECT author_id FROM manuscripts"})
    assert response.status_code == 400 and errors(response) == [7500]
    assert response.json()["errors"][0]["message"].endswith(": SQLITE_ERROR")


def test_d1_batch_runs_as_one_transaction(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    batch = {"batch": [{"sql": "DELETE FROM audit_log"}, {"sql": "SELECT nope FROM x"}]}
    assert d1(sbx, http, env, batch).status_code == 400
    left = d1(sbx, http, env, {"sql": "SELECT COUNT(*) AS n FROM audit_log"}).json()
    assert left["result"][0]["results"][0]["n"] > 0


def test_d1_refuses_more_than_100_bound_parameters(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    marks = ",".join("?" * 101)
    response = d1(sbx, http, env, {"sql": f"SELECT {marks}", "params": [1] * 101})
    assert response.status_code == 400 and "too many SQL variables" in response.text


def test_kv_keys_list_follows_the_cursor_to_an_empty_cursor(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.reset("healthy")
    base = (
        f"/accounts/{env.account_id}/storage/kv/namespaces/"
        f"{env.kv_namespaces['CACHE_KV']}"
    )
    for number in range(25):
        cf(sbx, http, "PUT", f"{base}/values/probe:{number:02d}", content=b"v")
    names, cursor, pages = [], "", 0
    while True:
        page = cf(
            sbx,
            http,
            "GET",
            f"{base}/keys",
            params={"prefix": "probe:", "limit": 10, "cursor": cursor},
        ).json()
        names += [k["name"] for k in page["result"]]
        cursor, pages = page["result_info"]["cursor"], pages + 1
        if not cursor:
            break
    assert names == [f"probe:{n:02d}" for n in range(25)]
    assert pages == 3


def test_kv_value_is_raw_bytes_and_a_missing_key_is_an_enveloped_404(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    base = (
        f"/accounts/{env.account_id}/storage/kv/namespaces/"
        f"{env.kv_namespaces['CACHE_KV']}/values"
    )
    cf(
        sbx,
        http,
        "PUT",
        f"{base}/raw-check",
        content=b"\x00bytes",
        params={"expiration_ttl": 120},
    )
    assert cf(sbx, http, "GET", f"{base}/raw-check").content == b"\x00bytes"
    missing = cf(sbx, http, "GET", f"{base}/never-written")
    assert missing.status_code == 404 and missing.json()["success"] is False


def test_injected_429_answers_code_971_with_retry_after_then_recovers(
    sbx: Sandbox, http: httpx.Client, env: Environment
) -> None:
    sbx.inject(cloudflare_429=2)
    first = cf(sbx, http, "GET", script_path(env, "/deployments"))
    second = cf(sbx, http, "GET", script_path(env, "/deployments"))
    third = cf(sbx, http, "GET", script_path(env, "/deployments"))
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert errors(first) == [971] and first.headers["retry-after"] == "1"


def test_injected_platform_500_fails_the_next_request_only(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("healthy")
    sbx.inject(platform_500=1)
    first = platform(sbx, http, "GET", "/manuscripts")
    second = platform(sbx, http, "GET", "/manuscripts")
    assert (first.status_code, second.status_code) == (500, 401)
    assert first.json() == {"error": "Internal server error"}


# -- status page ---------------------------------------------------------------------


def test_status_page_is_minor_with_workers_operational_when_healthy(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("healthy")
    base = sbx.urls["status_page_url"]
    status = http.get(base + "/status.json").json()
    components = http.get(base + "/components.json").json()["components"]
    by_name = {c["name"]: c for c in components}
    group = by_name["Cloudflare Sites and Services"]

    assert status["status"]["indicator"] == "minor"
    assert by_name["Workers"]["group_id"] == group["id"] and group["group"] is True
    assert by_name["Workers"]["status"] == "operational"
    assert sum(c["status"] == "under_maintenance" for c in components) >= 2
    assert len(components) > 40
    assert http.get(base + "/incidents/unresolved.json").json()["incidents"] == []


def test_status_page_outage_shows_workers_down_and_an_unresolved_incident(
    sbx: Sandbox, http: httpx.Client
) -> None:
    sbx.reset("cloudflare-outage")
    summary = http.get(sbx.urls["status_page_url"] + "/summary.json").json()
    workers = next(c for c in summary["components"] if c["name"] == "Workers")
    incident = summary["incidents"][0]
    affected = [
        a["name"]
        for u in incident["incident_updates"]
        for a in u["affected_components"]
    ]
    assert workers["status"] == "major_outage"
    assert incident["impact"] == "major" and incident["resolved_at"] is None
    assert "Cloudflare Sites and Services - Workers" in affected


# -- command line --------------------------------------------------------------------


def test_cli_group_is_named_sandbox_with_start_stop_status() -> None:
    assert cli.name == "sandbox"
    assert {"start", "stop", "status"} <= set(cli.commands)
    result = CliRunner().invoke(cli, ["start", "--help"])
    assert result.exit_code == 0 and "--scenario" in result.output


def test_cli_start_with_unknown_scenario_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["start", "--scenario", "nope", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "healthy" in result.output


def test_cli_status_of_an_empty_state_dir_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no sandbox running" in result.output


def test_cli_stop_and_status_need_only_the_state_dir(
    sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "own"
    started = CliRunner().invoke(
        cli, ["start", "--any-ports", "--state-dir", str(state_dir)]
    )
    assert started.exit_code == 0, started.output
    missing = tmp_path / "gone" / "environments"
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(missing))
    try:
        shown = CliRunner().invoke(cli, ["status", "--state-dir", str(state_dir)])
        again = CliRunner().invoke(cli, ["start", "--state-dir", str(tmp_path / "x")])
    finally:
        stopped = CliRunner().invoke(cli, ["stop", "--state-dir", str(state_dir)])
    assert shown.exit_code == 0 and "sandbox running" in shown.output, shown.output
    assert stopped.exit_code == 0 and "sandbox stopped" in stopped.output
    assert again.exit_code == 1
    assert "RUNBOOK_ENVIRONMENTS" in again.output and str(missing) in again.output


def test_cli_start_with_any_ports_runs_beside_the_session_sandbox(
    sandbox, tmp_path: Path
) -> None:
    # The session sandbox already holds its ports; a second one must not need them.
    state_dir = tmp_path / "second"
    started = CliRunner().invoke(
        cli, ["start", "--any-ports", "--state-dir", str(state_dir)]
    )
    try:
        assert started.exit_code == 0, started.output
        assert "export RUNBOOK_ENVIRONMENTS=" in started.output
        shown = CliRunner().invoke(
            cli, ["status", "--json", "--state-dir", str(state_dir)]
        )
        assert shown.exit_code == 0, shown.output
        urls = json.loads(shown.output)["urls"]
        ports = {urlsplit(url).port for url in urls.values()}
        assert ports.isdisjoint({8787, 8788, 8789})
        assert ports.isdisjoint({urlsplit(u).port for u in sandbox.urls.values()})
    finally:
        stopped = CliRunner().invoke(cli, ["stop", "--state-dir", str(state_dir)])
    assert "sandbox stopped" in stopped.output
