"""Transport faults of the sandbox, and how opslib's clients live with them.

Every test lays a fault over the session sandbox and clears it after. The waits
between attempts are recorded instead of slept (``sleeps``), so the tests check
the waits the clients chose, never how long anything took.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opslib import (
    APIError,
    CloudflareClient,
    RateLimitError,
    ServiceError,
    UnreachableError,
    load_environment,
)
from opslib._config import Environment
from opslib._errors import ConfigError
from opslib._http import HttpClient, _retry_delay, json_body
from opslib._r2 import R2Client
from opslib._stripe import StripeReader

RUNBOOK = Path(sys.executable).parent / "runbook"
KINDS = ("timeout", "429", "5xx", "refused", "truncated")


@pytest.fixture()
def faults(sandbox: Any) -> Iterator[Any]:
    """The session sandbox, healthy; every transport fault cleared after the test."""
    sandbox.reset("healthy")
    yield sandbox
    sandbox.clear_faults()


@pytest.fixture()
def environment(faults: Any) -> Environment:
    """The sandbox environment with a one-second timeout for every client."""
    return dataclasses.replace(load_environment("sandbox"), timeout_s=1.0)


@pytest.fixture()
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits opslib's HTTP layer asks for, recorded and skipped."""
    waits: list[float] = []
    monkeypatch.setattr("opslib._http.time.sleep", waits.append)
    return waits


def _raw(environment: Environment) -> httpx.Response:
    """One plain call to the status page, which nothing else in the sandbox calls
    (the platform gets Stripe's webhook deliveries, which count against a fault)."""
    return httpx.get(environment.status_page_url + "/summary.json", timeout=1.0)


# -- the sandbox side ---------------------------------------------------------------


def test_429_names_retry_after_and_a_burst_recovers(faults, environment):
    faults.fault("status_page", "429", count=2, retry_after=7)

    answers = [_raw(environment) for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [429, 429]
    assert answers[0].headers["retry-after"] == "7"
    assert answers[2].status_code != 429
    assert faults.transport_faults() == {}


def test_a_429_can_come_without_retry_after(faults, environment):
    faults.fault("status_page", "429", count=1, retry_after=None)

    answer = _raw(environment)

    assert answer.status_code == 429
    assert "retry-after" not in answer.headers


def test_5xx_answers_in_the_systems_own_shape(faults, environment):
    faults.fault("cloudflare", "5xx", status=502, count=1)

    answer = httpx.get(environment.cloudflare_api_url + "/user/tokens/verify")

    assert answer.status_code == 502
    assert answer.json()["success"] is False
    assert answer.json()["errors"][0]["code"] == 10002


def test_refused_closes_the_port_until_cleared(faults, environment):
    before = _raw(environment).status_code
    faults.fault("status_page", "refused")

    with pytest.raises(httpx.ConnectError):
        _raw(environment)
    faults.clear_faults("status_page")

    assert _raw(environment).status_code == before


def test_truncated_keeps_the_framing_and_cuts_the_body(faults, environment):
    whole = httpx.get(environment.status_page_url + "/summary.json")
    faults.fault("status_page", "truncated", count=1)

    cut = httpx.get(environment.status_page_url + "/summary.json")

    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content)
    assert 0 < len(cut.content) < len(whole.content)
    assert whole.content.startswith(cut.content)
    with pytest.raises(ValueError):
        json.loads(cut.content)


def test_timeout_holds_the_request_past_the_clients_timeout(faults, environment):
    faults.fault("mailchannels", "timeout", hold_s=30)

    with pytest.raises(httpx.ReadTimeout):
        httpx.get(environment.mailchannels_url + "/send", timeout=0.5)
    faults.clear_faults()  # lets the held request go

    answer = httpx.get(environment.mailchannels_url + "/send", timeout=5)
    assert answer.status_code != 200 or answer.content  # answered at all


def test_a_scenario_reset_clears_the_transport_faults(faults):
    faults.fault("stripe", "refused")
    faults.fault("r2", "5xx")

    faults.reset("healthy")

    assert faults.transport_faults() == {}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"system": "ftp", "kind": "429"}, "system: got 'ftp'"),
        ({"system": "r2", "kind": "slow"}, "kind: got 'slow'"),
        ({"system": "r2", "kind": "refused", "count": 2}, "refused lasts until"),
        ({"system": "r2", "kind": "5xx", "status": 404}, "status: got 404"),
        ({"system": "r2", "kind": "timeout", "hold_s": 0}, "hold_s: got 0"),
        ({"system": "r2", "kind": "429", "count": 0}, "count: got 0"),
        ({"system": "r2", "kind": "429", "retry_after": "1"}, "retry_after: got '1'"),
    ],
)
def test_a_wrong_fault_is_refused_naming_the_field(faults, options, expected):
    system, kind = options.pop("system"), options.pop("kind")
    with pytest.raises(ConfigError, match=expected):
        faults.fault(system, kind, **options)
    assert faults.transport_faults() == {}


def test_cli_lays_and_clears_a_fault(faults):
    folder = str(faults.state_dir)
    laid = subprocess.run(
        [str(RUNBOOK), "sandbox", "fault", "--state-dir", folder, "--system",
         "stripe", "--kind", "5xx", "--count", "3"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "stripe" in laid.stdout and "3 left" in laid.stdout
    assert faults.transport_faults()["stripe"]["count"] == 3

    bare = subprocess.run(
        [str(RUNBOOK), "sandbox", "fault", "--state-dir", folder, "--system",
         "cloudflare", "--kind", "429", "--no-retry-after"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "cloudflare" in bare.stdout
    assert faults.transport_faults()["cloudflare"]["retry_after"] is None

    cleared = subprocess.run(
        [str(RUNBOOK), "sandbox", "fault", "--state-dir", folder, "--clear"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "no transport faults" in cleared.stdout
    assert faults.transport_faults() == {}


# -- opslib's HTTP layer --------------------------------------------------------------


def test_a_429_burst_is_waited_out_as_retry_after_asks(environment, faults, sleeps):
    faults.fault("cloudflare", "429", count=1, retry_after=2)

    assert CloudflareClient(environment).list_deployments()

    assert sleeps == [2.0]
    assert faults.transport_faults() == {}


def test_a_retry_after_beyond_the_budget_is_not_waited(environment, faults, sleeps):
    faults.fault("cloudflare", "429", count=1, retry_after=120)

    with pytest.raises(RateLimitError) as caught:
        CloudflareClient(environment).list_deployments()

    assert caught.value.system == "cloudflare"
    assert sleeps == []
    # the finding names the wait Cloudflare gave, not the documented window
    assert str(caught.value).endswith(
        "; Cloudflare's Retry-After asks to wait 120 s before retrying"
    )
    assert "5-minute" not in str(caught.value)


def test_a_429_without_retry_after_falls_back_to_the_documented_window(
    environment, faults, sleeps
):
    faults.fault("cloudflare", "429", retry_after=None)

    with pytest.raises(RateLimitError) as caught:
        CloudflareClient(environment).list_deployments()

    assert sleeps == [0.5, 1.0]  # backed off, as nothing said how long
    assert str(caught.value).endswith(
        "; no Retry-After: wait the documented 5-minute rate-limit window "
        "before retrying"
    )


def _cloudflare_429(environment: Environment, retry_after: str) -> str:
    """The error CloudflareClient makes of one 429 carrying ``retry_after``."""
    request = httpx.Request("GET", environment.cloudflare_api_url + "/x")
    body = {"success": False, "errors": [{"code": 971, "message": "slow down"}]}
    response = httpx.Response(
        429, json=body, headers={"Retry-After": retry_after}, request=request
    )
    with pytest.raises(RateLimitError) as caught:
        CloudflareClient(environment)._unwrap(response)
    return str(caught.value)


def test_a_retry_after_date_is_named_converted_to_seconds(environment):
    date = email.utils.formatdate(time.time() + 90, usegmt=True)

    message = _cloudflare_429(environment, date)

    prefix = "cloudflare: HTTP 429 (971: slow down); Cloudflare's Retry-After asks "
    assert message.startswith(prefix + "to wait ")
    seconds = int(message.removeprefix(prefix + "to wait ").split(" s")[0])
    assert 85 <= seconds <= 90
    assert message.endswith(f" s, converted from {date!r} before retrying")


def test_an_unreadable_retry_after_falls_back_to_the_documented_window(environment):
    message = _cloudflare_429(environment, "soon")

    assert message.endswith(
        "; Retry-After 'soon' is unreadable: wait the documented 5-minute "
        "rate-limit window before retrying"
    )


def test_retry_after_as_an_http_date_is_read():
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    response = httpx.Response(429, headers={"Retry-After": when})

    assert 15 < _retry_delay(response, 1) <= 20


def test_a_5xx_burst_on_a_read_is_retried_then_recovers(environment, faults, sleeps):
    faults.fault("cloudflare", "5xx", count=2)

    assert CloudflareClient(environment).list_deployments()

    assert sleeps == [0.5, 1.0]


def test_5xx_beyond_the_retries_is_an_error_naming_the_system(
    environment, faults, sleeps
):
    faults.fault("cloudflare", "5xx", count=3)

    with pytest.raises(APIError, match="^cloudflare: HTTP 503") as caught:
        CloudflareClient(environment).list_deployments()

    assert caught.value.system == "cloudflare"
    assert len(sleeps) == 2
    assert CloudflareClient(environment).list_deployments()  # the burst is over


def test_a_write_is_never_replayed_on_5xx(environment, faults, sleeps):
    client = CloudflareClient(environment)
    live = client.list_deployments()[0]["versions"][0]["version_id"]
    older = client.list_versions()[1]["id"]
    faults.fault("cloudflare", "5xx", count=2)

    with pytest.raises(APIError):
        client.create_deployment(older, "must not be replayed")

    assert sleeps == []
    assert faults.transport_faults()["cloudflare"]["count"] == 1
    faults.clear_faults()
    assert client.list_deployments()[0]["versions"][0]["version_id"] == live


def test_a_refused_read_is_retried_a_bounded_number_of_times(
    environment, faults, sleeps
):
    faults.fault("status_page", "refused")
    client = HttpClient("statuspage", environment.status_page_url, retries=2)

    with pytest.raises(UnreachableError, match="^statuspage: cannot reach") as caught:
        client.request("GET", "summary.json")

    assert caught.value.refused and caught.value.system == "statuspage"
    assert sleeps == [0.5, 1.0]


def test_a_refused_write_is_not_retried(environment, faults, sleeps):
    faults.fault("mailchannels", "refused")
    client = HttpClient("mailchannels", environment.mailchannels_url, retries=2)

    with pytest.raises(UnreachableError):
        client.request("POST", "send", json={})

    assert sleeps == []


def test_a_timed_out_read_is_not_repeated(environment, faults, sleeps):
    faults.fault("cloudflare", "timeout", hold_s=30)

    with pytest.raises(UnreachableError, match="within the timeout") as caught:
        CloudflareClient(environment).list_deployments()

    assert caught.value.system == "cloudflare" and not caught.value.refused
    assert sleeps == []


def test_a_truncated_body_is_an_error_naming_the_system(environment, faults):
    faults.fault("status_page", "truncated", count=1)
    response = HttpClient("statuspage", environment.status_page_url).request(
        "GET", "summary.json"
    )

    with pytest.raises(APIError, match="^statuspage: HTTP 200 with a body that is"):
        json_body(response, "statuspage")


# -- every system's client, every kind ------------------------------------------


def _stripe_read(environment: Environment) -> object:
    return StripeReader(environment).active_subscriptions()


def _r2_read(environment: Environment) -> object:
    bucket = environment.r2_buckets["MANUSCRIPTS_RAW"]
    return R2Client(environment).list_keys(bucket, limit=5)


def _cloudflare_read(environment: Environment) -> object:
    return CloudflareClient(environment).list_deployments()


READS = {"stripe": _stripe_read, "r2": _r2_read, "cloudflare": _cloudflare_read}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("system", sorted(READS))
def test_every_kind_is_a_service_error_naming_the_system(
    environment, faults, sleeps, system, kind
):
    READS[system](environment)  # healthy first: the fault is what breaks it
    options = {"hold_s": 30} if kind == "timeout" else {}
    faults.fault(system, kind, **options)

    with pytest.raises(ServiceError) as caught:
        READS[system](environment)

    assert caught.value.system == system
    assert str(caught.value).startswith(f"{system}:")
    faults.clear_faults()
    assert READS[system](environment) is not None


def test_an_object_cut_short_is_caught_by_its_etag(environment, faults, tmp_path):
    client = R2Client(environment)
    bucket = environment.r2_buckets["MANUSCRIPTS_RAW"]
    key = client.list_keys(bucket, limit=1)[0]
    whole = client.get_bytes(bucket, key)
    faults.fault("r2", "truncated", count=2)

    with pytest.raises(APIError, match="^r2: .* MD5 is not the object's ETag"):
        client.get_bytes(bucket, key)
    with pytest.raises(APIError, match="^r2: .* MD5 is not the object's ETag"):
        client.download(bucket, key, tmp_path / "object")

    assert client.get_bytes(bucket, key) == whole
