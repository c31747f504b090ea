"""The stripe-webhooks verdict, from findings built by hand."""

import pytest

from opslib import (
    CAUSES,
    Finding,
    ParameterError,
    Status,
    diagnose_stripe_webhooks,
    load_environment,
    validate_params,
)
from opslib._webhookverdict import resend_phrase

PENDING = [
    {
        "id": "evt_1",
        "type": "invoice.payment_succeeded",
        "age_s": 600,
        "pending_webhooks": 1,
        "invoice": "in_1",
        "created": 0,
        "api_version": None,
    },
]


def finding(name, status=Status.OK, **facts):
    return Finding(name, status, name, (), facts)


def healthy_findings():
    return {
        "webhook-secret": finding("webhook-secret", present=True),
        "webhook-endpoints": finding(
            "webhook-endpoints", endpoints=[{"id": "we_1"}], disabled=[]
        ),
        "pending-events": finding("pending-events", pending=[]),
        "api-version": finding("api-version", newer=[]),
        "webhook-logs": finding(
            "webhook-logs", sync_crypto=0, signature_failed=0, handler_errors=0, slow=0
        ),
        "webhook-probe": finding(
            "webhook-probe", status_code=200, body='{"received":true}', seconds=0.01
        ),
    }


def verdict_of(**changes):
    found = healthy_findings()
    found.update(changes)
    return diagnose_stripe_webhooks(
        found.values(),
        environment=load_environment("sandbox"),
        api_version="2024-10-28.acacia",
        incident_id="INC-7",
    )


def failing_pending():
    return finding("pending-events", Status.FAIL, pending=PENDING)


def test_every_cause_is_in_the_vocabulary():
    assert CAUSES["stripe-webhooks"][-2:] == ("healthy", "inconclusive")


def test_all_quiet_is_healthy_without_a_gated_step():
    verdict = verdict_of()
    assert (verdict.status, verdict.cause, verdict.gated_step) == (
        Status.OK,
        "healthy",
        None,
    )


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        (
            {
                "webhook-endpoints": finding(
                    "webhook-endpoints",
                    Status.FAIL,
                    endpoints=[{"id": "we_1"}],
                    disabled=["we_1"],
                )
            },
            "endpoint-disabled",
        ),
        (
            {"webhook-secret": finding("webhook-secret", Status.FAIL)},
            "wrong-webhook-secret",
        ),
        (
            {
                "webhook-logs": finding(
                    "webhook-logs", Status.FAIL, sync_crypto=3, signature_failed=0
                )
            },
            "signature-check-broken-in-handler",
        ),
        (
            {
                "webhook-probe": finding(
                    "webhook-probe",
                    Status.FAIL,
                    status_code=400,
                    body='{"error":"Invalid signature"}',
                )
            },
            "wrong-webhook-secret",
        ),
        (
            {"api-version": finding("api-version", Status.FAIL, newer=["we_1"])},
            "api-version-mismatch",
        ),
        (
            {
                "webhook-logs": finding("webhook-logs", Status.FAIL, slow=4),
                "pending-events": failing_pending(),
            },
            "handler-timeout",
        ),
    ],
)
def test_each_sign_names_its_cause(changes, cause):
    verdict = verdict_of(**changes)
    assert verdict.status is Status.FAIL
    assert verdict.cause == cause
    if cause == "endpoint-disabled":
        action, phrase = "enable-webhook-endpoint", "enable webhook endpoint we_1"
    elif "pending-events" in changes:
        action, phrase = "resend-webhook-events", "resend 1 pending webhook event ["
    else:
        action, phrase = (
            "resend-webhook-events",
            "resend pending webhook events to we_1",
        )
    assert verdict.gated_step["action"] == action
    assert verdict.gated_step["confirm"].startswith(phrase)
    assert verdict.gated_step["confirm"].endswith("we_1 in sandbox")


def test_sync_crypto_text_wins_over_a_failing_probe():
    verdict = verdict_of(
        **{
            "webhook-logs": finding("webhook-logs", Status.FAIL, sync_crypto=2),
            "webhook-probe": finding(
                "webhook-probe", Status.FAIL, status_code=400, body="Invalid signature"
            ),
        }
    )
    assert verdict.cause == "signature-check-broken-in-handler"
    assert "constructEventAsync" in verdict.next_action


def test_wrong_secret_remedy_keeps_the_secret_out_of_shell_history():
    verdict = verdict_of(**{"webhook-secret": finding("webhook-secret", Status.FAIL)})
    assert "wrangler secret put STRIPE_WEBHOOK_SECRET" in verdict.next_action
    assert "shell history" in verdict.next_action


def test_resend_is_offered_only_after_the_fix_when_events_are_pending():
    verdict = verdict_of(
        **{
            "webhook-secret": finding("webhook-secret", Status.FAIL),
            "pending-events": failing_pending(),
        }
    )
    assert "Then, gated, resend the 1 pending event(s)" in verdict.next_action
    assert "only after the fix" in verdict.next_action


def test_disabled_endpoint_is_re_enabled_first_and_resent_in_a_later_run():
    verdict = verdict_of(
        **{
            "webhook-endpoints": finding(
                "webhook-endpoints",
                Status.FAIL,
                endpoints=[{"id": "we_1"}],
                disabled=["we_1"],
            ),
            "pending-events": failing_pending(),
        }
    )
    assert verdict.gated_step["action"] == "enable-webhook-endpoint"
    assert "run the runbook again afterwards to resend the 1" in verdict.next_action


def test_pending_events_without_a_sign_are_inconclusive_with_a_resend():
    verdict = verdict_of(**{"pending-events": failing_pending()})
    assert (verdict.status, verdict.cause) == (Status.UNKNOWN, "inconclusive")
    assert verdict.gated_step["action"] == "resend-webhook-events"


def test_unreadable_stripe_is_inconclusive():
    verdict = verdict_of(
        **{
            "webhook-endpoints": finding("webhook-endpoints", Status.UNKNOWN),
            "pending-events": finding("pending-events", Status.UNKNOWN),
        }
    )
    assert verdict.cause == "inconclusive"
    assert verdict.gated_step is None


@pytest.mark.parametrize("value", ["acacia", "2024-10-28", "2024-10-28.acacia; rm", ""])
def test_api_version_parameter_names_the_expected_form(value):
    with pytest.raises(ParameterError, match="api_version.*2024-10-28.acacia"):
        validate_params(api_version=value)


def test_no_endpoint_for_the_platform_is_never_healthy():
    verdict = verdict_of(
        **{
            "webhook-endpoints": finding(
                "webhook-endpoints", Status.FAIL, endpoints=[], disabled=[]
            )
        }
    )
    assert (verdict.status, verdict.cause) == (Status.UNKNOWN, "inconclusive")
    assert "No Stripe webhook endpoint points at the platform" in verdict.summary


def two_endpoints(old_status, new_status, old_version, new_version):
    rows = [
        {"id": "we_old", "status": old_status, "api_version": old_version},
        {"id": "we_new", "status": new_status, "api_version": new_version},
    ]
    disabled = [r["id"] for r in rows if r["status"] != "enabled"]
    status = Status.WARN if len(disabled) == 1 else Status.FAIL
    return finding("webhook-endpoints", status, endpoints=rows, disabled=disabled)


def test_retired_wrong_version_endpoint_is_not_offered_for_re_enabling():
    endpoints = two_endpoints(
        "disabled", "enabled", "2025-03-31.basil", "2024-10-28.acacia"
    )
    verdict = verdict_of(
        **{
            "webhook-endpoints": endpoints,
            "pending-events": failing_pending(),
            "api-version": finding(
                "api-version", newer=[], expected="2024-10-28.acacia"
            ),
        }
    )
    assert verdict.cause != "endpoint-disabled"
    assert verdict.gated_step["action"] == "resend-webhook-events"
    assert verdict.gated_step["endpoint"] == "we_new"


def test_disabled_endpoint_on_the_right_version_is_still_re_enabled():
    endpoints = two_endpoints(
        "disabled", "enabled", "2024-10-28.acacia", "2025-03-31.basil"
    )
    verdict = verdict_of(
        **{
            "webhook-endpoints": endpoints,
            "api-version": finding(
                "api-version", newer=[], expected="2024-10-28.acacia"
            ),
        }
    )
    assert verdict.cause == "endpoint-disabled"
    assert verdict.gated_step["endpoint"] == "we_old"


def test_the_resend_phrase_is_bound_to_the_events_pending():
    env = load_environment("sandbox")
    one = resend_phrase(env, "we_1", ["evt_1"])
    assert one.startswith("resend 1 pending webhook event [")
    assert one == resend_phrase(env, "we_1", ["evt_1"])
    two = resend_phrase(env, "we_1", ["evt_2", "evt_1"])
    assert two.startswith("resend 2 pending webhook events [")
    assert two == resend_phrase(env, "we_1", ["evt_1", "evt_2"])
    assert resend_phrase(env, "we_1", ["evt_3"]) != one
    later = verdict_of(
        **{
            "webhook-logs": finding("webhook-logs", Status.FAIL, slow=4),
            "pending-events": finding(
                "pending-events",
                Status.FAIL,
                pending=[*PENDING, {**PENDING[0], "id": "evt_9"}],
            ),
        }
    )
    assert later.gated_step["confirm"] == resend_phrase(env, "we_1", ["evt_1", "evt_9"])
