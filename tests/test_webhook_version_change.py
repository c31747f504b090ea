"""The advised repair of an API version mismatch, followed on the sandbox: a new
endpoint at the handler's version, its secret in the Worker, the old endpoint
disabled, then the gated resend to the new one."""

import time
from pathlib import Path

import httpx
import pytest

from opslib import CloudflareClient, StripeReader, load_environment, run_notebook
from opslib._webhooks import HANDLED_EVENTS

HANDLER_VERSION = "2024-10-28.acacia"


def stripe_post(environment, path, data):
    answer = httpx.post(
        environment.stripe_api_url + path,
        data=data,
        headers={"Authorization": f"Bearer {environment.secret('STRIPE_API_KEY')}"},
        timeout=10,
    )
    return answer.status_code, answer.json()


def create_endpoint(environment, **extra):
    data = {"url": environment.platform_url + "/webhooks/stripe", **extra}
    data.update({f"enabled_events[{i}]": kind for i, kind in enumerate(HANDLED_EVENTS)})
    return stripe_post(environment, "/v1/webhook_endpoints", data)


def endpoints(environment):
    reader = StripeReader(environment)
    try:
        return reader.webhook_endpoints()
    finally:
        reader.close()


def test_created_endpoint_shows_its_secret_once(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    status, created = create_endpoint(environment, api_version=HANDLER_VERSION)
    assert status == 200
    assert created["secret"].startswith("whsec_")
    assert (created["object"], created["status"]) == ("webhook_endpoint", "enabled")
    assert created["api_version"] == HANDLER_VERSION
    listed = {e["id"]: e for e in endpoints(environment)}
    assert created["id"] in listed and "secret" not in listed[created["id"]]
    status, error = stripe_post(environment, "/v1/webhook_endpoints", {"url": "x"})
    assert status == 400 and "enabled_events" in error["error"]["message"]


def run(environment, tmp_path, **params):
    record = run_notebook(
        "stripe-webhooks",
        parameters={"incident_id": "INC-31", **params},
        environment="sandbox",
        records_dir=tmp_path,
    )
    assert record.status == "succeeded", record.error
    return record.verdict


@pytest.fixture()
def secrets_file(sandbox):
    path = Path(load_environment("sandbox").secrets_file)
    kept = path.read_text()
    yield path
    path.write_text(kept)


def test_advised_version_change_ends_with_a_resend_to_the_new_endpoint(
    sandbox, tmp_path, secrets_file
):
    sandbox.reset("api-version-mismatch")
    environment = load_environment("sandbox")
    first = run(environment, tmp_path)
    assert first["cause"] == "api-version-mismatch"
    old = first["gated_step"]["endpoint"]
    assert "run this runbook again" in first["next_action"]

    status, created = create_endpoint(environment, api_version=HANDLER_VERSION)
    assert status == 200
    client = CloudflareClient(environment)
    try:
        client.put_secret("STRIPE_WEBHOOK_SECRET", created["secret"])
    finally:
        client.close()
    lines = [
        line
        for line in secrets_file.read_text().splitlines()
        if not line.startswith("STRIPE_WEBHOOK_SECRET=")
    ]
    secrets_file.write_text(
        "\n".join([*lines, f"STRIPE_WEBHOOK_SECRET={created['secret']}", ""])
    )
    status, _ = stripe_post(
        environment, f"/v1/webhook_endpoints/{old}", {"disabled": "true"}
    )
    assert status == 200

    environment = load_environment("sandbox")
    second = run(environment, tmp_path)
    assert second["cause"] not in ("endpoint-disabled", "api-version-mismatch")
    step = second["gated_step"]
    assert step["action"] == "resend-webhook-events"
    assert step["endpoint"] == created["id"]

    applied = run(environment, tmp_path, apply=True, confirm=step["confirm"])
    assert applied["gated_step"]["endpoint"] == created["id"]
    reader = StripeReader(environment)
    try:
        left = reader.undelivered_events(int(time.time()) - 86_400)
    finally:
        reader.close()
    assert left == []
    third = run(environment, tmp_path)
    assert third["cause"] == "healthy"
