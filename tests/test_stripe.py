"""The Stripe reader against the sandbox's localstripe, and its error mapping."""

import dataclasses
from pathlib import Path

import pytest
import stripe

from opslib import AuthError, StripeReader, UnreachableError, load_environment
from opslib._stripe import _translate


@pytest.fixture()
def reader(sandbox):
    sandbox.reset("healthy")
    client = StripeReader(load_environment("sandbox"))
    yield client
    client.close()


def test_active_subscriptions_match_the_seeded_paid_rows(reader):
    subs = reader.active_subscriptions()
    assert len(subs) == 32
    assert {s["status"] for s in subs} == {"active"}
    assert all(s["id"].startswith("sub_") for s in subs)
    assert all(set(s["metadata"]) == {"userId", "planType"} for s in subs)


def test_customer_by_id_by_email_and_unknown(reader):
    sub = reader.active_subscriptions()[0]
    customer = reader.customer(sub["customer"])
    assert customer is not None
    assert customer["metadata"]["userId"] == sub["metadata"]["userId"]
    assert [c["id"] for c in reader.customers_by_email(customer["email"])] == [
        sub["customer"]
    ]
    assert reader.customer("cus_doesnotexist00") is None


def test_checkout_sessions_carry_camel_case_metadata(reader):
    sub = reader.active_subscriptions()[0]
    sessions = reader.checkout_sessions(sub["id"])
    assert [s["subscription"] for s in sessions] == [sub["id"]]
    assert sessions[0]["object"] == "checkout.session"
    assert set(sessions[0]["metadata"]) == {"userId", "planType"}


def test_missing_key_is_an_auth_error_naming_the_variable(sandbox):
    environment = dataclasses.replace(load_environment("sandbox"), secrets={})
    client = StripeReader(environment)
    with pytest.raises(AuthError, match="STRIPE_API_KEY is not set"):
        client.active_subscriptions()
    client.close()


def test_nothing_listening_is_unreachable(sandbox):
    environment = dataclasses.replace(
        load_environment("sandbox"), stripe_api_url="http://127.0.0.1:9"
    )
    client = StripeReader(environment)
    with pytest.raises(UnreachableError, match="no answer"):
        client.active_subscriptions()
    client.close()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (stripe.AuthenticationError("bad key", http_status=401), AuthError),
        (stripe.PermissionError("rak_subscription_read", http_status=403), AuthError),
    ],
)
def test_sdk_errors_become_service_errors(error, kind):
    assert isinstance(_translate(error, "http://127.0.0.1:1"), kind)


def test_telemetry_is_off_and_no_id_file_is_written(reader, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    reader.active_subscriptions()
    assert stripe.enable_telemetry is False
    assert not list(Path(tmp_path).rglob("telemetry_id"))


def test_no_stripe_url_is_unreachable_and_has_no_default(sandbox):
    environment = dataclasses.replace(load_environment("sandbox"), stripe_api_url="")
    client = StripeReader(environment)
    with pytest.raises(UnreachableError, match="names no stripe_api_url"):
        client.active_subscriptions()
    client.close()
