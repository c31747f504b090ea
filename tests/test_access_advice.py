"""The advice after checks that could not look fits what stopped each one."""

import pytest
import stripe
from botocore.exceptions import ClientError

from opslib._errors import APIError, AuthError, RateLimitError, UnreachableError
from opslib._finding import Finding, Status, check
from opslib._r2 import R2Client
from opslib._stripe import _translate
from opslib._unreached import access_advice, blind_advice, fault_kind

SERVER_SIDE = "failed on its side"


def blind(name, error=None, status_code=None):
    facts = {} if error is None else {"error": error, "status_code": status_code}
    return Finding(name, Status.UNKNOWN, f"{name}: could not look", facts=facts)


@pytest.mark.parametrize(
    ("error", "status_code", "kind"),
    [
        ("RateLimitError", 429, "rate-limit"),
        ("APIError", 429, "rate-limit"),
        ("APIError", 503, "server"),
        ("APIError", 500, "server"),
        ("APIError", 200, "server"),  # a 2xx whose body could not be read
        ("APIError", None, "server"),
        ("APIError", 404, "access"),
        ("AuthError", 403, "access"),
        ("UnreachableError", None, "access"),
    ],
)
def test_each_error_is_sorted_by_kind(error, status_code, kind):
    assert fault_kind(blind("x", error, status_code)) == kind


def test_a_rate_limit_asks_to_wait_only():
    text = access_advice([blind("events", "RateLimitError", 429)])
    assert "events met a rate limit" in text and "wait" in text
    assert "credentials" not in text and SERVER_SIDE not in text


def test_a_server_error_points_at_the_service_not_at_access():
    text = access_advice([blind("d1", "APIError", 502)])
    assert SERVER_SIDE in text and "status page" in text
    assert "fix access" not in text.lower() and "rate limit" not in text


def test_unreachable_or_refused_asks_to_fix_access():
    for error in ("UnreachableError", "AuthError"):
        text = access_advice([blind("d1", error)], access="the token needs D1 Read")
        assert text.startswith("Fix access") and "the token needs D1 Read" in text
        assert SERVER_SIDE not in text and "rate limit" not in text


def test_mixed_kinds_get_each_its_advice_by_name():
    text = access_advice(
        [
            blind("a", "UnreachableError"),
            blind("b", "APIError", 500),
            blind("c", "RateLimitError", 429),
            Finding("d", Status.OK, "fine"),
        ]
    )
    assert "For a, fix access" in text
    assert f"for b, the service {SERVER_SIDE}" in text
    assert "c met a rate limit" in text
    assert "d," not in text and "d met" not in text


def test_a_step_skipped_after_another_adds_no_advice_of_its_own():
    text = access_advice([blind("stripe", "RateLimitError", 429), blind("rows")])
    assert "rows" not in text and "fix access" not in text.lower()
    # Alone, it still gets the general advice.
    assert access_advice([blind("rows")]).startswith("Fix access")


def test_blind_advice_is_empty_when_every_check_looked():
    assert blind_advice([Finding("a", Status.FAIL, "broken")]) == ""
    text = blind_advice([Finding("a", Status.OK, "ok"), blind("b", "APIError", 503)])
    assert (
        text.startswith(" For what could not be checked (b): ") and SERVER_SIDE in text
    )


@pytest.mark.parametrize(
    "error", [RateLimitError, APIError, AuthError, UnreachableError]
)
def test_a_check_records_the_error_and_its_status(error):
    @check("probe")
    def probe():
        raise error("probe: no", system="x", status_code=418)

    finding = probe()
    assert finding.facts["error"] == error.__name__
    assert finding.facts["status_code"] == 418


def test_a_stripe_rate_limit_names_the_wait_the_server_asked():
    asked = stripe.RateLimitError(
        "Too many requests", http_status=429, headers={"Retry-After": "7"}
    )
    translated = _translate(asked, "http://127.0.0.1:1/v1/events")
    assert isinstance(translated, RateLimitError)
    assert "Stripe's Retry-After asks to wait 7 s" in str(translated)
    plain = _translate(stripe.RateLimitError("Too many", http_status=429), "u")
    assert "no Retry-After: back off and retry in a minute" in str(plain)


def test_an_r2_rate_limit_names_the_wait_the_server_asked():
    client = R2Client.__new__(R2Client)
    client.endpoint = "http://127.0.0.1:1"
    answer = {
        "Error": {"Code": "SlowDown"},
        "ResponseMetadata": {
            "HTTPStatusCode": 429,
            "HTTPHeaders": {"retry-after": "7"},
        },
    }
    translated = client._error(ClientError(answer, "GetObject"), "b", "k")
    assert isinstance(translated, RateLimitError)
    assert "R2's Retry-After asks to wait 7 s" in str(translated)
