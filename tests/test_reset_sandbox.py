"""The sandbox's password-reset routes, MailChannels stand-in and reset scenarios."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest

from opslib import load_environment
from opslib.sandbox._http import Request
from opslib.sandbox._mailchannels import outbox
from opslib.sandbox._platform import PlatformApp
from opslib.sandbox._scenarios import start_scenario
from opslib.sandbox._seed import ensure_template
from opslib.sandbox._state import World

TEST_EMAIL = "prodtest1@example.com"
MESSAGE = {
    "personalizations": [{"to": [{"email": TEST_EMAIL}]}],
    "from": {"email": "noreply@example.com", "name": "ManuscriptHub"},
    "subject": "Probe",
    "content": [{"type": "text/plain", "value": "dry run"}],
}


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def platform(sandbox: Any, http: httpx.Client, method: str, path: str, **kw: Any):
    return http.request(method, sandbox.urls["platform_url"] + path, **kw)


def newest_token(sandbox: Any) -> sqlite3.Row:
    connection = sqlite3.connect(Path(sandbox.state_dir) / "d1.sqlite")
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(
            "SELECT t.token, t.used, t.expires_at - t.created_at AS lifetime "
            "FROM verification_tokens t JOIN users u ON u.id = t.user_id "
            "WHERE u.email = ? AND t.token_type = 'password_reset' "
            "ORDER BY t.created_at DESC, t.rowid DESC LIMIT 1",
            (TEST_EMAIL,),
        ).fetchone()
    finally:
        connection.close()


def test_reset_request_answers_200_for_known_and_unknown_addresses(sandbox, http):
    sandbox.reset("healthy")
    known = platform(
        sandbox,
        http,
        "POST",
        "/auth/password-reset-request",
        json={"email": TEST_EMAIL},
    )
    unknown = platform(
        sandbox,
        http,
        "POST",
        "/auth/password-reset-request",
        json={"email": "nobody@example.com"},
    )
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()
    token = newest_token(sandbox)
    assert len(token["token"]) == 64 and token["lifetime"] == 3600


def test_malformed_address_is_400(sandbox, http):
    sandbox.reset("healthy")
    answer = platform(
        sandbox, http, "POST", "/auth/password-reset-request", json={"email": "x"}
    )
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("scenario", "used_after_precheck"),
    [("healthy", 0), ("reset-token-consumed-by-precheck", 1)],
)
def test_precheck_consumes_only_as_committed(
    sandbox, http, scenario, used_after_precheck
):
    sandbox.reset(scenario)
    platform(
        sandbox,
        http,
        "POST",
        "/auth/password-reset-request",
        json={"email": TEST_EMAIL},
    )
    token = newest_token(sandbox)["token"]
    check = platform(sandbox, http, "GET", f"/auth/verify-reset-token?token={token}")
    assert check.json() == {"valid": True}
    assert newest_token(sandbox)["used"] == used_after_precheck
    submit = platform(
        sandbox,
        http,
        "POST",
        "/auth/password-reset",
        json={"token": token, "newPassword": "Fresh!Pass9"},
    )
    assert submit.status_code == (400 if used_after_precheck else 200)


def test_reset_counters_at_the_limit_refuse_the_request(sandbox, http):
    sandbox.reset("reset-rate-limited")
    answer = platform(
        sandbox,
        http,
        "POST",
        "/auth/password-reset-request",
        json={"email": TEST_EMAIL},
    )
    assert answer.status_code == 429
    assert answer.json()["error"] == "Rate limit exceeded"


def test_fourth_reset_request_in_an_hour_is_refused(sandbox, http):
    sandbox.reset("healthy")
    codes = [
        platform(
            sandbox,
            http,
            "POST",
            "/auth/password-reset-request",
            json={"email": TEST_EMAIL},
        ).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]


@pytest.mark.parametrize(
    ("scenario", "status"), [("healthy", 200), ("mail-provider-unauthorized", 401)]
)
def test_mailchannels_dry_run_without_key(sandbox, http, scenario, status):
    sandbox.reset(scenario)
    answer = http.post(
        sandbox.urls["mailchannels_url"] + "/send?dry-run=true", json=MESSAGE
    )
    assert answer.status_code == status
    if status == 401:
        assert "active subscription" in answer.json()["errors"][0]


def test_mailchannels_refuses_unknown_keys_and_bad_messages(sandbox, http):
    sandbox.reset("healthy")
    url = sandbox.urls["mailchannels_url"] + "/send"
    assert http.post(url, json=MESSAGE, headers={"X-Api-Key": "k"}).status_code == 403
    assert http.post(url, json={"subject": "x"}).status_code == 400
    assert http.post(url, json=MESSAGE).status_code == 202


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = Path(__file__).resolve().parent.parent / "parameters" / "environments"
    environment = load_environment(
        "sandbox", environ={"RUNBOOK_ENVIRONMENTS": str(folder)}
    )
    state_dir = tmp_path_factory.mktemp("reset-world")
    ensure_template(state_dir, "Sb!test-password-9x")
    return World(environment, state_dir, "token")


def request_reset_in_process(world: World) -> None:
    headers = Message()
    headers["Content-Type"] = "application/json"
    body = b'{"email": "prodtest1@example.com"}'
    request = Request(
        "POST", "/auth/password-reset-request", "", {}, headers, body, "127.0.0.1"
    )
    assert PlatformApp(world)(request).status == 200


def test_healthy_reset_email_links_to_the_frontend(world):
    start_scenario(world, "healthy")
    request_reset_in_process(world)
    (message,) = outbox(world)
    text = message["content"][0]["value"]
    assert "https://example.com/reset-password.html?token=" in text
    assert message["from"]["email"] == "noreply@example.com"


def test_missing_vars_break_the_link_and_fall_back_sender(world):
    start_scenario(world, "email-vars-missing")
    request_reset_in_process(world)
    (message,) = outbox(world)
    assert "undefined/reset-password.html?token=" in message["content"][0]["value"]
    assert "reply_to" not in message


def test_refused_send_still_answers_200_and_sends_nothing(world):
    start_scenario(world, "mail-provider-unauthorized")
    request_reset_in_process(world)
    assert outbox(world) == []
