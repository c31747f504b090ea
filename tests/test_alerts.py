"""How alerts from UptimeRobot and Stripe map onto runbooks, without a server."""

import io
import json

import pytest

from opslib._alerts import (
    AlertError,
    AlertRun,
    IgnoredAlert,
    map_stripe_event,
    map_uptimerobot,
    mapping_refusal,
    notebook_parameters,
    read_json_object,
    read_uptimerobot_fields,
)
from opslib._alertserver import (
    Answer,
    _signed_at,
    check_loopback,
    load_alert_secrets,
    read_chunked,
)
from opslib._config import load_environment
from opslib._errors import ConfigError, ParameterError
from opslib._notebook import read_parameters, resolve_notebook
from opslib._runner import check_run_request


@pytest.fixture(scope="module")
def environment():
    return load_environment("sandbox")


def down(**fields):
    return {
        "monitorID": "7781",
        "alertType": "1",
        "alertDateTime": "1796380000",
    } | fields


def test_query_string_and_form_body_are_read_with_the_body_winning():
    fields = read_uptimerobot_fields(
        "monitorID=1&alertType=2",
        b"alertType=1&alertDetails=HTTP+502",
        "application/x-www-form-urlencoded",
    )
    assert fields == {"monitorID": "1", "alertType": "1", "alertDetails": "HTTP 502"}


def test_json_body_numbers_become_text_and_unfilled_placeholders_are_absent():
    body = json.dumps(
        {
            "monitorID": 42,
            "alertType": 1,
            "sslExpiryDate": "x",
            "alertDetails": "*alertDetails*",
        }
    ).encode()
    fields = read_uptimerobot_fields("", body, "application/json")
    assert fields == {"monitorID": "42", "alertType": "1"}


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[1, 2]", "application/json", "got a JSON list"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe", "text/plain", "not UTF-8"),
    ],
)
def test_malformed_bodies_are_named(body, content_type, message):
    with pytest.raises(AlertError, match=message):
        read_uptimerobot_fields("", body, content_type)


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("monitorID=79&monitorID=80", b""),
        ("", b"alertType=1&monitorID=79&monitorID=80"),
    ],
)
def test_a_variable_given_twice_with_two_values_is_refused(query, body):
    with pytest.raises(AlertError, match=r"monitorID: given twice .*'79'.*'80'"):
        read_uptimerobot_fields(query, body, "application/x-www-form-urlencoded")


def test_a_variable_repeated_with_the_same_value_or_an_unknown_one_is_kept():
    fields = read_uptimerobot_fields(
        "", b"monitorID=79&monitorID=79&x=1&x=2&alertType=1", "text/plain"
    )
    assert fields["monitorID"] == "79"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"alertType": "1"}, "monitorID: missing"),
        ({"monitorID": "12a", "alertType": "1"}, "monitorID: got '12a'"),
        (
            {"monitorID": "12"},
            r"alertType: missing; expected 1, 2 or 3 \(put \*alertType\*",
        ),
        ({"monitorID": "12", "alertType": "9"}, "alertType: got '9'"),
    ],
)
def test_uptimerobot_fields_missing_or_malformed_are_refused(
    fields, message, environment
):
    with pytest.raises(AlertError, match=message):
        map_uptimerobot(fields, environment)


@pytest.mark.parametrize("alert_type", ["2", "3"])
def test_up_alerts_and_expiry_notices_start_nothing(alert_type, environment):
    mapped = map_uptimerobot(down(alertType=alert_type), environment)
    assert isinstance(mapped, IgnoredAlert)


def test_a_down_monitor_on_the_platform_probes_its_path(environment):
    url = environment.platform_url + "/auth/me?x=1"
    mapped = map_uptimerobot(down(monitorURL=url), environment)
    assert isinstance(mapped, AlertRun)
    assert mapped.runbook == "api-down"
    assert mapped.parameters["incident_id"] == "UR-7781-1796380000"
    params = notebook_parameters(mapped, read_parameters(resolve_notebook("api-down")))
    assert params["paths"] == ["/", "/manuscripts", "/auth/me"]
    assert params["apply"] is False


def test_a_monitor_elsewhere_runs_api_down_on_its_default_paths(environment):
    mapped = map_uptimerobot(
        down(monitorURL="https://status.example.org/", alertDateTime="*alertDateTime*"),
        environment,
    )
    assert isinstance(mapped, AlertRun)
    assert mapped.parameters == {"incident_id": "UR-7781"}
    assert mapped.key == "uptimerobot:7781:"


@pytest.mark.parametrize(
    "when",
    ["2026-12-05T01:00:00Z", "1796380000000", "1796380000.5", "-1796380000", "soon"],
)
def test_an_alert_time_that_is_not_unix_seconds_is_refused_by_name(when, environment):
    with pytest.raises(AlertError) as caught:
        map_uptimerobot(down(alertDateTime=when), environment)
    assert str(caught.value).startswith(f"alertDateTime: got {when!r}")
    assert "expected unix seconds" in str(caught.value)


def test_an_alert_time_left_out_of_the_template_only_coarsens_the_incident_id(
    environment,
):
    fields = down()
    del fields["alertDateTime"]
    mapped = map_uptimerobot(fields, environment)
    assert isinstance(mapped, AlertRun)
    assert mapped.parameters["incident_id"] == "UR-7781"
    assert mapped.key == "uptimerobot:7781:"


@pytest.mark.parametrize("path", ["/a'b", "/a b", "/" + "x" * 250])
def test_a_monitored_path_the_run_would_refuse_is_refused_naming_monitor_url(
    path, environment
):
    with pytest.raises(AlertError) as caught:
        map_uptimerobot(down(monitorURL=environment.platform_url + path), environment)
    message = str(caught.value)
    assert message.startswith("monitorURL: its path maps to a bad api-down paths: got")
    assert "URL paths, each starting with '/'" in message


def test_a_monitor_on_the_webhook_path_runs_stripe_webhooks(environment):
    url = environment.platform_url + "/webhooks/stripe"
    mapped = map_uptimerobot(down(monitorURL=url), environment)
    assert isinstance(mapped, AlertRun) and mapped.runbook == "stripe-webhooks"


def event(kind, **obj):
    return {"id": "evt_1Abc", "type": kind, "data": {"object": obj}}


def test_a_failed_invoice_runs_the_stripe_procedure_for_its_customer():
    mapped = map_stripe_event(
        event("invoice.payment_failed", id="in_1", customer="cus_Q")
    )
    assert isinstance(mapped, AlertRun)
    assert (mapped.runbook, mapped.key) == ("stripe", "stripe:evt_1Abc")
    assert mapped.parameters == {"incident_id": "evt_1Abc", "customer": "cus_Q"}
    params = notebook_parameters(mapped, read_parameters(resolve_notebook("stripe")))
    assert params["apply"] is False and "operation" not in params


def test_a_subscription_checkout_waits_for_the_platform_then_checks_the_customer():
    mapped = map_stripe_event(
        event("checkout.session.completed", mode="subscription", customer="cus_Q")
    )
    assert isinstance(mapped, AlertRun)
    assert mapped.runbook == "payment-without-subscription"
    assert mapped.wait_for_platform


BAD_CUSTOMERS = [
    "cus_",
    "cus_abc-def",
    "cus_Q Z",
    "cus_" + "a" * 65,  # past the run's own length rule
    "ops@example.com",  # the run takes an email; a Stripe event never names one
    "CUS_Q",
    42,
    {"id": "cus_Q"},
]


@pytest.mark.parametrize("customer", BAD_CUSTOMERS)
@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "invoice.payment_failed", "id": "in_1"},
        {"kind": "checkout.session.completed", "mode": "subscription"},
    ],
)
def test_a_malformed_customer_id_is_refused_naming_its_field(fields, customer):
    payload = event(**fields, customer=customer)
    with pytest.raises(AlertError) as caught:
        map_stripe_event(payload)
    message = str(caught.value)
    assert message.startswith("data.object.customer: got ")
    assert "expected a Stripe customer id: cus_ and 1-64 letters or digits" in message


def test_an_event_object_naming_no_customer_runs_for_none():
    mapped = map_stripe_event(event("invoice.payment_failed", id="in_1", customer=None))
    assert isinstance(mapped, AlertRun)
    assert mapped.parameters["customer"] == ""
    assert mapped.summary.endswith("for no customer named")


def test_a_value_the_run_refuses_is_answered_with_the_runs_message_and_field():
    mapped = AlertRun(
        "stripe",
        "k",
        "payment-without-subscription",
        {"incident_id": "evt_1", "customer": "cus_bad!"},
        sources={"incident_id": "id", "customer": "data.object.customer"},
    )
    specs = read_parameters(resolve_notebook(mapped.runbook))
    with pytest.raises(ParameterError) as caught:
        check_run_request(mapped.runbook, notebook_parameters(mapped, specs))
    answer = mapping_refusal(mapped, caught.value)
    assert answer.startswith(
        "data.object.customer: maps to a bad payment-without-subscription "
        "parameter customer: got 'cus_bad!'"
    )
    # the same words `runbook run` gives for the value
    assert caught.value.problems[0] in answer


@pytest.mark.parametrize(
    ("header", "expected"),
    [("t=1796380000,v1=ab", 1796380000), ("v1=ab,v0=cd,t=17", 17)],
)
def test_the_signing_time_is_read_from_the_header(header, expected):
    assert _signed_at(header) == expected


@pytest.mark.parametrize(
    "payload",
    [
        event("checkout.session.completed", mode="payment", customer="cus_Q"),
        event("customer.created", id="cus_Q"),
    ],
)
def test_other_stripe_events_start_nothing(payload):
    assert isinstance(map_stripe_event(payload), IgnoredAlert)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "invoice.payment_failed"}, "expected a Stripe event id"),
        ({"id": "evt_1", "type": "x", "data": []}, "data.object"),
    ],
)
def test_malformed_events_are_refused(payload, message):
    with pytest.raises(AlertError, match=message):
        map_stripe_event(payload)


def test_a_long_bad_event_id_is_not_echoed_whole():
    with pytest.raises(AlertError) as refused:
        map_stripe_event({"id": "x" * 5000, "type": "invoice.payment_failed"})
    assert "expected a Stripe event id" in str(refused.value)
    assert len(str(refused.value)) < 200


def test_a_payload_can_never_ask_for_apply_or_confirm():
    mapped = AlertRun(
        "stripe",
        "k",
        "stripe",
        {"incident_id": "evt_1", "apply": True, "confirm": "yes"},
    )
    params = notebook_parameters(mapped, read_parameters(resolve_notebook("stripe")))
    assert params["apply"] is False and "confirm" not in params


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "example.org", "::"])
def test_only_loopback_hosts_are_served(host):
    with pytest.raises(ConfigError, match="loopback"):
        check_loopback(host)


def test_secrets_come_from_the_environment_or_the_dotenv_file(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("RUNBOOK_ALERTS_STRIPE_SECRET=whsec_fromfile\n")
    secrets = load_alert_secrets({"RUNBOOK_ALERTS_SECRET": "s" * 20}, dotenv)
    assert (secrets.uptimerobot, secrets.stripe) == ("s" * 20, "whsec_fromfile")
    assert "whsec_fromfile" not in repr(secrets)
    with pytest.raises(ConfigError, match="no alert secret"):
        load_alert_secrets({}, tmp_path / "missing.env")
    with pytest.raises(ConfigError, match="at least 16"):
        load_alert_secrets({"RUNBOOK_ALERTS_SECRET": "short"}, dotenv)


def test_sender_text_reaches_the_summary_on_one_line(environment):
    fields = down(monitorFriendlyName="API\nINFO forged line", alertDetails="x\x1b[2J")
    mapped = map_uptimerobot(fields, environment)
    assert isinstance(mapped, AlertRun)
    assert "\n" not in mapped.summary and "\x1b" not in mapped.summary
    assert mapped.summary.startswith("API INFO forged line down (x [2J)")


def test_runs_inherit_the_environment_without_the_receivers_secrets(monkeypatch):
    from opslib._alertserver import _child_environment

    monkeypatch.setenv("RUNBOOK_ALERTS_SECRET", "u" * 20)
    monkeypatch.setenv("RUNBOOK_ALERTS_STRIPE_SECRET", "whsec_x")
    monkeypatch.setenv("RUNBOOK_OPERATOR", "oncall")
    child = _child_environment()
    assert "RUNBOOK_ALERTS_SECRET" not in child
    assert "RUNBOOK_ALERTS_STRIPE_SECRET" not in child
    assert child["RUNBOOK_OPERATOR"] == "oncall"


DEEP = "[" * 30000 + "]" * 30000


def test_json_nested_too_deeply_is_refused_naming_the_body():
    with pytest.raises(AlertError, match="^body: JSON nested too deeply; expected"):
        read_json_object(DEEP, "a Stripe event")
    with pytest.raises(AlertError, match="^body: JSON nested too deeply"):
        read_uptimerobot_fields("", ('{"a": ' + DEEP + "}").encode(), "text/plain")


def chunked(*chunks, trailers=b""):
    framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return io.BytesIO(framed + b"0\r\n" + trailers + b"\r\nnext request")


def test_a_chunked_body_is_decoded_without_extensions_or_trailers():
    stream = io.BytesIO(
        b"7;name=value\r\nalertTy\r\n"
        b"00000009 ; x\r\npe=2&moni\r\n"
        b"A\r\ntorID=5678\r\n"
        b"0\r\nX-Checksum: 1\r\n\r\nnext request"
    )
    assert read_chunked(stream, 64) == b"alertType=2&monitorID=5678"
    # it reads up to the end of the body, not a byte more
    assert stream.read() == b"next request"


@pytest.mark.parametrize(
    ("chunks", "unread"),
    [
        # the decoded bytes count: 16 chunks fill the limit, one more byte is over
        ([b"a" * 4] * 16 + [b"b"], b"b\r\n0\r\n\r\nnext request"),
        # one chunk whose size line says too much is refused before it is read
        ([b"c" * 65], b"c" * 65 + b"\r\n0\r\n\r\nnext request"),
    ],
)
def test_a_chunked_body_over_the_limit_is_413_and_not_read_further(chunks, unread):
    stream = chunked(*chunks)
    assert read_chunked(chunked(*chunks[:-1]), 64) == b"".join(chunks[:-1])
    answer = read_chunked(stream, 64)
    assert isinstance(answer, Answer)
    assert answer.status == 413
    assert answer.body["error"] == "body: more than 64 bytes in its chunks; at most 64"
    assert stream.read() == unread


@pytest.mark.parametrize(
    ("framed", "message"),
    [
        (b"zz\r\nab\r\n0\r\n\r\n", "got the size line b'zz\\r\\n'"),
        (b"-1\r\nab\r\n0\r\n\r\n", "got the size line"),
        (b"2\nab\r\n0\r\n\r\n", "got the size line b'2\\n'; expected hex"),
        (b"2\r\nabc\r\n0\r\n\r\n", "got b'c\\r\\n' after a chunk of 2 bytes"),
        (b"5\r\nab", "ended 2 bytes into a chunk of 5"),
        (b"2\r\nab\r\n", "ended before its last chunk"),
        (b"2\r\nab\r\n0\r\n", "got b'' after the last chunk"),
        (b"1" * 2000 + b"\r\n", "got the size line b'1111"),
        (b"0\r\n" + b"X: 1\r\n" * 40 + b"\r\n", "more than 32 trailer lines"),
    ],
)
def test_malformed_chunk_framing_is_400_naming_the_problem(framed, message):
    answer = read_chunked(io.BytesIO(framed), 64)
    assert isinstance(answer, Answer)
    assert answer.status == 400
    assert answer.body["error"].startswith("chunked body: ")
    assert message in answer.body["error"]
