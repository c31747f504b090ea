"""The stripe-webhooks checks against the sandbox, scenario by scenario."""

from dataclasses import replace

import pytest

from opslib import (
    Finding,
    Status,
    check_api_version,
    check_pending_events,
    check_webhook_endpoints,
    check_webhook_logs,
    check_webhook_secret,
    load_environment,
    probe_webhook,
)
from opslib._webhooks import SYNC_CRYPTO_TEXT, summarise_logs


def checks(sandbox, scenario):
    sandbox.reset(scenario)
    environment = load_environment("sandbox")
    endpoints = check_webhook_endpoints(environment)
    return {
        "secret": check_webhook_secret(environment),
        "endpoints": endpoints,
        "pending": check_pending_events(environment, "24h"),
        "version": check_api_version(endpoints, "2024-10-28.acacia"),
        "logs": check_webhook_logs(environment, "1h"),
        "probe": probe_webhook(environment),
    }


def test_healthy_sandbox_passes_every_check(sandbox):
    found = checks(sandbox, "healthy")
    assert {k: f.status for k, f in found.items()} == dict.fromkeys(found, Status.OK)
    assert found["logs"].facts["processed"] >= 5
    assert found["probe"].facts["status_code"] == 200


def test_wrong_secret_fails_the_probe_and_logs_a_mismatch(sandbox):
    found = checks(sandbox, "wrong-webhook-secret")
    assert found["secret"].status is Status.OK  # the name is there, the value is not
    assert found["probe"].facts["status_code"] == 400
    assert "Invalid signature" in found["probe"].facts["body"]
    assert found["logs"].facts["signature_failed"] >= 5
    assert found["logs"].facts["sync_crypto"] == 0
    assert len(found["pending"].facts["pending"]) == 5


def test_disabled_endpoint_is_a_failure_with_pending_events_and_no_logs(sandbox):
    found = checks(sandbox, "endpoint-disabled")
    assert found["endpoints"].status is Status.FAIL
    assert found["endpoints"].facts["disabled"]
    assert found["pending"].status is Status.FAIL
    assert found["logs"].facts["requests"] == 0
    assert found["probe"].status is Status.OK


def test_broken_signature_check_shows_its_real_text_in_the_logs(sandbox):
    found = checks(sandbox, "signature-check-broken-in-handler")
    assert found["probe"].facts["status_code"] == 400
    assert found["logs"].facts["sync_crypto"] >= 5
    assert found["logs"].facts["signature_failed"] == 0


def test_basil_endpoint_fails_the_version_check_and_logs_500s(sandbox):
    found = checks(sandbox, "api-version-mismatch")
    assert found["version"].status is Status.FAIL
    assert found["logs"].facts["handler_errors"] >= 5
    assert found["logs"].facts["statuses"].get(500, 0) >= 5
    assert found["probe"].status is Status.OK  # the probe's type is never handled


def test_slow_handler_shows_in_wall_times_and_probe_time(sandbox):
    found = checks(sandbox, "handler-timeout")
    assert found["logs"].facts["slow"] >= 5
    assert found["probe"].status is Status.WARN
    assert found["probe"].facts["seconds"] > 1.0
    assert found["pending"].status is Status.FAIL


def test_alias_path_endpoint_is_a_warning():
    from opslib._webhooks import _endpoint_row

    row = _endpoint_row(
        {
            "id": "we_1",
            "url": "https://api.example.com/payments/webhook",
            "status": "enabled",
            "enabled_events": ["invoice.payment_succeeded"],
        }
    )
    assert any("rate-limited alias" in p for p in row["problems"])
    assert "checkout.session.completed" in row["missing_events"]


def test_probe_without_the_operators_secret_is_unknown(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    blind = replace(
        environment,
        secrets={
            k: v for k, v in environment.secrets.items() if k != "STRIPE_WEBHOOK_SECRET"
        },
    )
    finding = probe_webhook(blind)
    assert finding.status is Status.UNKNOWN
    assert "STRIPE_WEBHOOK_SECRET" in finding.summary


def test_unreachable_stripe_is_unknown_naming_stripe(sandbox):
    environment = replace(
        load_environment("sandbox"), stripe_api_url="http://127.0.0.1:9"
    )
    finding = check_webhook_endpoints(environment)
    assert finding.status is Status.UNKNOWN
    assert "stripe" in finding.summary
    assert check_api_version(finding, "2024-10-28.acacia").status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (
            f"[Webhook] Signature verification failed: {SYNC_CRYPTO_TEXT}.",
            "sync_crypto",
        ),
        (
            "[Webhook] Signature verification failed: No signatures found",
            "signature_failed",
        ),
        ("[Webhook] Error processing webhook: D1_TYPE_ERROR", "handler_errors"),
    ],
)
def test_log_lines_are_counted_by_kind(message, field):
    events = [{"$metadata": {"message": message}}]
    facts = summarise_logs(events)
    counted = {
        k: facts[k] for k in ("sync_crypto", "signature_failed", "handler_errors")
    }
    assert counted == {k: int(k == field) for k in counted}


def test_api_version_without_a_platform_endpoint_is_unknown():
    none = Finding("webhook-endpoints", Status.FAIL, "none", (), {"endpoints": []})
    assert check_api_version(none, "2024-10-28.acacia").status is Status.UNKNOWN


def test_account_default_version_is_a_warning_and_newer_a_failure():
    rows = [{"id": "we_1", "api_version": None}, {"id": "we_2", "api_version": None}]
    found = Finding("webhook-endpoints", Status.OK, "", (), {"endpoints": rows})
    assert check_api_version(found, "2024-10-28.acacia").status is Status.WARN
    rows[1]["api_version"] = "2025-03-31.basil"
    failing = check_api_version(found, "2024-10-28.acacia")
    assert failing.status is Status.FAIL
    assert failing.facts["newer"] == ["we_2"]


def test_api_version_compares_only_enabled_endpoints():
    endpoints = Finding(
        "webhook-endpoints",
        Status.WARN,
        "one disabled",
        facts={
            "endpoints": [
                {
                    "id": "we_old",
                    "status": "disabled",
                    "api_version": "2025-03-31.basil",
                },
                {
                    "id": "we_new",
                    "status": "enabled",
                    "api_version": "2024-10-28.acacia",
                },
            ]
        },
    )
    assert check_api_version(endpoints, "2024-10-28.acacia").status is Status.OK


def test_a_probe_answer_cut_short_is_unknown_naming_the_platform(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    sandbox.fault("platform", "truncated")
    try:
        finding = probe_webhook(environment)
    finally:
        sandbox.clear_faults()
    assert finding.status is Status.UNKNOWN
    assert finding.summary.startswith("platform: HTTP 200 with a body that is")
    assert probe_webhook(environment).status is Status.OK
