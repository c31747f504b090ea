"""`runbook serve-alerts` for real: a receiver on a free loopback port, real payloads.

Each receiver runs as its own process against the session sandbox; the runs it
starts archive records into a temporary folder, which the tests read back.
"""

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import httpx
import pytest
import stripe
from click.testing import CliRunner

from opslib import load_environment
from opslib._cli import main
from opslib._errors import RunError
from opslib._records import load_record
from opslib._runner import INTERRUPTED_AT_START

from kernel_helpers import slow_preload_kernel

UPTIME_SECRET = "ur-" + secrets.token_urlsafe(24)
STRIPE_SECRET = "whsec_" + secrets.token_hex(16)
# A ceiling on waiting for a background run, not a speed target.
RUN_CEILING_S = 300


class Receiver:
    def __init__(self, records, log, *options):
        env = os.environ | {
            "RUNBOOK_ALERTS_SECRET": UPTIME_SECRET,
            "RUNBOOK_ALERTS_STRIPE_SECRET": STRIPE_SECRET,
            "PYTHONUNBUFFERED": "1",
        }
        self.records = records
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opslib._cli", "serve-alerts", "--port", "0"]
            + ["--records", str(records), *options],
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            env=env,
            text=True,
        )
        line = self.process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        self.url = line.split()[-1]

    def post(self, path, **kwargs):
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)

    def record(self, record_id):
        """Wait for the run's record to be archived and return its sidecar."""
        deadline = time.monotonic() + RUN_CEILING_S
        while True:
            try:
                return load_record(self.records, record_id)
            except RunError:
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, f"no record {record_id}"
                time.sleep(0.5)


@pytest.fixture(scope="module")
def receiver(sandbox, tmp_path_factory):
    folder = tmp_path_factory.mktemp("alerts")
    running = Receiver(
        folder / "records", folder / "serve.log", "--platform-delay", "0"
    )
    yield running
    running.stop()


def uptime_alert(**fields):
    return {
        "monitorID": "778100",
        "monitorURL": load_environment("sandbox").platform_url + "/auth/me",
        "monitorFriendlyName": "API",
        "alertType": "1",
        "alertTypeFriendlyName": "Down",
        "alertDetails": "HTTP 502 - Bad Gateway",
        "alertDateTime": str(int(time.time())),
    } | fields


def signed(event, secret=STRIPE_SECRET):
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret)
    return {"content": body, "headers": {"Stripe-Signature": header}}


def stripe_event(kind, **obj):
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def assert_dry_run(sidecar):
    assert sidecar["status"] == "succeeded", sidecar["error"]
    assert sidecar["parameters"]["apply"] is False
    assert sidecar["parameters"]["confirm"] == ""
    assert not [a for a in sidecar["actions"] if a.get("outcome") == "applied"]


def record_files(folder):
    return sorted(folder.glob("*/*/*.json")) if folder.exists() else []


def test_an_uptimerobot_down_alert_runs_api_down_then_a_repeat_is_a_duplicate(
    receiver,
):
    alert = uptime_alert()
    answer = receiver.post(
        "/uptimerobot", json=alert, headers={"X-Runbook-Alert-Secret": UPTIME_SECRET}
    )
    assert answer.status_code == 202, answer.text
    record_id = answer.json()["record_id"]
    assert answer.json()["runbook"] == "api-down"

    # The same alert again, as UptimeRobot's query-string format with the
    # secret in the path: answered with the first run's record, nothing started.
    query = urllib.parse.urlencode(alert)
    again = httpx.get(f"{receiver.url}/uptimerobot/{UPTIME_SECRET}?{query}", timeout=30)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "record_id": record_id}

    sidecar = receiver.record(record_id)
    assert sidecar["id"] == record_id
    assert sidecar["runbook"] == "api-down"
    assert sidecar["incident_id"] == f"UR-778100-{alert['alertDateTime']}"
    assert sidecar["parameters"]["paths"] == ["/", "/manuscripts", "/auth/me"]
    assert sidecar["operator"] == "serve-alerts/uptimerobot"
    assert_dry_run(sidecar)
    assert len(record_files(receiver.records)) == 1


def test_a_signed_stripe_checkout_event_checks_that_customer(receiver, sandbox):
    customer = "cus_" + secrets.token_hex(7)
    event = stripe_event(
        "checkout.session.completed",
        id="cs_test_" + secrets.token_hex(8),
        object="checkout.session",
        mode="subscription",
        customer=customer,
        metadata={"userId": "u-1", "planType": "pro"},
    )
    answer = receiver.post("/stripe", **signed(event))
    assert answer.status_code == 202, answer.text
    assert answer.json()["runbook"] == "payment-without-subscription"

    sidecar = receiver.record(answer.json()["record_id"])
    assert sidecar["runbook"] == "payment-without-subscription"
    assert sidecar["incident_id"] == event["id"]
    assert sidecar["parameters"]["customer"] == customer
    assert sidecar["operator"] == "serve-alerts/stripe"
    assert_dry_run(sidecar)
    for path in receiver.records.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert UPTIME_SECRET not in text and STRIPE_SECRET not in text


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        ("/uptimerobot", {"json": {}}, 401),
        (
            "/uptimerobot",
            {"json": {}, "headers": {"X-Runbook-Alert-Secret": "x" * 30}},
            403,
        ),
        ("/uptimerobot/" + "y" * 30, {"json": {}}, 403),
        ("/stripe", {"content": "{}"}, 401),
    ],
)
def test_a_missing_or_wrong_secret_is_refused_and_runs_nothing(
    receiver, path, kwargs, status
):
    before = record_files(receiver.records)
    runs = httpx.get(receiver.url + "/health").json()["runs"]
    answer = receiver.post(path, **kwargs)
    assert answer.status_code == status
    assert answer.json()["status"] == "refused"
    # runs of earlier tests may still be finishing, but none started
    assert httpx.get(receiver.url + "/health").json()["runs"] <= runs
    assert record_files(receiver.records) == before


def test_a_stripe_event_signed_with_another_secret_or_too_old_or_far_ahead_is_refused(
    receiver,
):
    event = stripe_event("invoice.payment_failed", id="in_1", customer="cus_X")
    wrong = receiver.post("/stripe", **signed(event, "whsec_" + "0" * 32))
    assert wrong.status_code == 403
    assert "does not verify" in wrong.json()["error"]

    body = json.dumps(event)
    old = stripe.WebhookSignature.generate_signature_header(
        body, STRIPE_SECRET, timestamp=int(time.time()) - 3600
    )
    stale = receiver.post("/stripe", content=body, headers={"Stripe-Signature": old})
    assert stale.status_code == 403
    assert "tolerance" in stale.json()["error"]

    # The SDK lets a signature dated ahead through; the receiver does not.
    before = record_files(receiver.records)
    future = stripe.WebhookSignature.generate_signature_header(
        body, STRIPE_SECRET, timestamp=int(time.time()) + 3600
    )
    ahead = receiver.post("/stripe", content=body, headers={"Stripe-Signature": future})
    assert ahead.status_code == 403
    assert "ahead of this host's clock" in ahead.json()["error"]
    assert "within 300 s of now either way" in ahead.json()["error"]
    assert record_files(receiver.records) == before


@pytest.mark.parametrize(
    ("payload", "status", "expected"),
    [
        (uptime_alert(alertType="2"), 200, {"status": "ignored"}),
        (uptime_alert(alertType="3"), 200, {"status": "ignored"}),
        ({"alertType": "1"}, 400, {"error": "monitorID: missing"}),
        (uptime_alert(alertType="*alertType*"), 400, {"error": "alertType: missing"}),
        (uptime_alert(alertType="down"), 400, {"error": "alertType: got 'down'"}),
        (
            uptime_alert(alertDateTime="2026-12-05 01:00"),
            400,
            {"error": "alertDateTime: got '2026-12-05 01:00'; expected unix seconds"},
        ),
    ],
)
def test_uptimerobot_up_notice_and_malformed_alerts_run_nothing(
    receiver, payload, status, expected
):
    before = record_files(receiver.records)
    answer = receiver.post(
        "/uptimerobot",
        data=payload,  # UptimeRobot's "POST parameters" format
        headers={"X-Runbook-Alert-Secret": UPTIME_SECRET},
    )
    assert answer.status_code == status
    body = answer.json()
    for key, value in expected.items():
        assert value in body[key]
    assert record_files(receiver.records) == before


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        ("[1, 2]", 400, "got a JSON list"),
        ("not json", 400, "not valid JSON"),
        ("{}", 400, "expected a Stripe event id"),
        (
            json.dumps(stripe_event("customer.created", id="cus_Z")),
            200,
            "starts no runbook",
        ),
    ],
)
def test_signed_but_malformed_or_unrelated_stripe_bodies_run_nothing(
    receiver, content, status, message
):
    header = stripe.WebhookSignature.generate_signature_header(content, STRIPE_SECRET)
    answer = receiver.post(
        "/stripe", content=content, headers={"Stripe-Signature": header}
    )
    assert answer.status_code == status
    assert message in (answer.json().get("error") or answer.json().get("reason"))


def test_an_oversized_body_and_an_unknown_route_are_refused(receiver):
    big = receiver.post(
        "/stripe", content="x" * (65 * 1024), headers={"Stripe-Signature": "t=1"}
    )
    assert big.status_code == 413
    assert receiver.post("/apply", json={}).status_code == 404


def send_chunked(receiver, path, chunks, headers):
    """POST with http.client, which frames an iterable body as chunks."""
    parts = urllib.parse.urlsplit(receiver.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("POST", path, body=iter(chunks), headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def send_raw(receiver, path, head, body):
    """POST bytes as they are, framing and all; the answer's status and JSON."""
    parts = urllib.parse.urlsplit(receiver.url)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode() + body
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(request)
        response = http.client.HTTPResponse(conn)
        response.begin()
        return response.status, json.loads(response.read())


def test_chunked_bodies_are_read_like_ones_with_a_length(receiver):
    secret = {"X-Runbook-Alert-Secret": UPTIME_SECRET}
    form = {"Content-Type": "application/x-www-form-urlencoded"} | secret
    status, body = send_chunked(
        receiver, "/uptimerobot", [b"monitorID=5", b"6&alertType=2"], form
    )
    assert (status, body["status"]) == (200, "ignored")
    status, body = send_chunked(
        receiver, "/uptimerobot", [b"monitorID=56&", b"alertType=down"], form
    )
    assert (status, body["error"]) == (400, "alertType: got 'down'; expected 1, 2 or 3")

    # A signature over the whole body verifies when the body comes in pieces.
    request = signed(stripe_event("customer.created", id="cus_Z"))
    text = request["content"].encode()
    pieces = [text[i : i + 50] for i in range(0, len(text), 50)]
    status, body = send_chunked(receiver, "/stripe", pieces, request["headers"])
    assert status == 200, body
    assert body["reason"] == "event type 'customer.created' starts no runbook"


def test_chunked_bodies_over_64_kib_or_badly_framed_are_refused(receiver):
    before = record_files(receiver.records)
    head = f"X-Runbook-Alert-Secret: {UPTIME_SECRET}\r\nTransfer-Encoding: chunked\r\n"
    alert = urllib.parse.urlencode(uptime_alert()).encode()
    # a down alert that would run, padded with a field past the limit in chunks
    # of 4 KiB: each chunk is small, their decoded bytes add up to too many
    padding = [b"&pad=" + b"x" * 4091] + [b"x" * 4096] * 15
    framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [alert, *padding])
    status, body = send_raw(receiver, "/uptimerobot", head, framed + b"0\r\n\r\n")
    assert status == 413
    assert body["error"] == "body: more than 65536 bytes in its chunks; at most 65536"

    oversized_chunk = b"10001\r\n" + b"y" * 0x10001 + b"\r\n0\r\n\r\n"
    status, body = send_raw(receiver, "/uptimerobot", head, oversized_chunk)
    assert status == 413

    # one byte more than the size line says
    status, body = send_raw(receiver, "/uptimerobot", head, b"3\r\nabcd\r\n0\r\n\r\n")
    assert status == 400
    assert body["error"].startswith("chunked body: got b'd\\r\\n' after a chunk of 3")
    status, body = send_raw(receiver, "/uptimerobot", head, b"g\r\nab\r\n0\r\n\r\n")
    assert status == 400
    assert "expected hex digits and CRLF" in body["error"]

    both = head + "Content-Length: 5\r\n"
    status, body = send_raw(receiver, "/uptimerobot", both, b"5\r\nabcde\r\n0\r\n\r\n")
    assert status == 400
    assert body["error"].startswith("Content-Length and Transfer-Encoding: both")
    gzip = head.replace("chunked", "gzip, chunked")
    status, body = send_raw(receiver, "/stripe", gzip, b"0\r\n\r\n")
    assert status == 501
    assert "Transfer-Encoding: got 'gzip, chunked'; expected chunked" in body["error"]
    assert record_files(receiver.records) == before


def test_a_body_cut_short_or_that_stops_coming_is_refused_without_a_traceback(
    receiver,
):
    parts = urllib.parse.urlsplit(receiver.url)
    head = (
        f"POST /uptimerobot HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"X-Runbook-Alert-Secret: {UPTIME_SECRET}\r\n"
    )
    answers = []
    for framing, sent, close in [
        ("Content-Length: 40", b"monitorID=56&alertType=2", True),
        # the receiver gives up on a silent sender after 10 s
        ("Transfer-Encoding: chunked", b"5\r\nab", False),
    ]:
        with socket.create_connection((parts.hostname, parts.port), timeout=60) as conn:
            conn.sendall(f"{head}{framing}\r\n\r\n".encode() + sent)
            if close:
                conn.shutdown(socket.SHUT_WR)
            response = http.client.HTTPResponse(conn)
            response.begin()
            answers.append((response.status, json.loads(response.read())["error"]))
    assert answers == [
        (400, "body: ended after 24 of the 40 bytes its Content-Length says"),
        (408, "body: nothing came for 10 s; expected the whole body at once"),
    ]
    log = receiver.log.read_text()
    assert "TimeoutError" not in log and "Traceback" not in log


def test_json_nested_too_deeply_is_refused_on_both_routes(receiver):
    deep = "[" * 30000 + "]" * 30000  # well under 64 KiB
    uptime = receiver.post(
        "/uptimerobot",
        content=deep,
        headers={
            "X-Runbook-Alert-Secret": UPTIME_SECRET,
            "Content-Type": "application/json",
        },
    )
    header = stripe.WebhookSignature.generate_signature_header(deep, STRIPE_SECRET)
    event = receiver.post("/stripe", content=deep, headers={"Stripe-Signature": header})
    for answer in (uptime, event):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith(
            "body: JSON nested too deeply; expected "
        )
    log = receiver.log.read_text()
    assert "RecursionError" not in log and "Traceback" not in log


def test_head_health_answers_like_get_without_a_body(receiver):
    got = httpx.get(receiver.url + "/health")
    head = httpx.head(receiver.url + "/health")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Type"] == "application/json"
    assert head.headers["Content-Length"] == str(len(got.content))
    # HEAD is no way to send an alert
    before = record_files(receiver.records)
    query = urllib.parse.urlencode(uptime_alert(monitorID="778199"))
    alert = httpx.head(f"{receiver.url}/uptimerobot/{UPTIME_SECRET}?{query}")
    assert alert.status_code == 404
    assert httpx.get(receiver.url + "/health").json()["runs"] <= got.json()["runs"]
    assert record_files(receiver.records) == before


def test_the_receiver_log_holds_no_secret_and_no_line_a_sender_wrote(receiver):
    receiver.post(
        f"/uptimerobot/{UPTIME_SECRET}", data={"alertType": "2", "monitorID": "1"}
    )
    assert receiver.post("/%0Aforged-line", json={}).status_code == 404
    log = receiver.log.read_text()
    assert "alert request method=POST route=uptimerobot status=200" in log
    assert "alert request method=POST route=other status=404" in log
    assert UPTIME_SECRET not in log and STRIPE_SECRET not in log
    assert "forged-line" not in log


def test_runs_over_the_bound_get_429_with_retry_after(sandbox, tmp_path):
    # A checkout run waits for the platform first, so it holds its slot.
    bounded = Receiver(
        tmp_path / "records",
        tmp_path / "serve.log",
        "--max-runs",
        "1",
        "--platform-delay",
        "600",
    )
    try:
        first = stripe_event(
            "checkout.session.completed", mode="subscription", customer="cus_A"
        )
        second = stripe_event(
            "checkout.session.completed", mode="subscription", customer="cus_B"
        )
        assert bounded.post("/stripe", **signed(first)).status_code == 202
        busy = bounded.post("/stripe", **signed(second))
        assert busy.status_code == 429
        assert busy.headers["Retry-After"] == "60"
        assert httpx.get(bounded.url + "/health").json() == {
            "status": "ok",
            "runs": 1,
            "max_runs": 1,
        }
    finally:
        bounded.stop()
    assert bounded.process.returncode == 0
    assert record_files(bounded.records) == []


def test_a_run_dropped_at_stop_is_logged_with_its_record_and_its_event(
    sandbox, tmp_path
):
    waiting = Receiver(
        tmp_path / "records", tmp_path / "serve.log", "--platform-delay", "600"
    )
    customer = "cus_" + secrets.token_hex(6)
    event = stripe_event(
        "checkout.session.completed", mode="subscription", customer=customer
    )
    try:
        answer = waiting.post("/stripe", **signed(event))
        assert answer.status_code == 202, answer.text
        record_id = answer.json()["record_id"]
    finally:
        waiting.stop()
    assert waiting.process.returncode == 0
    assert record_files(waiting.records) == []
    dropped = [
        line
        for line in waiting.log.read_text().splitlines()
        if "alert run dropped at stop" in line
    ]
    assert len(dropped) == 1, waiting.log.read_text()
    assert (
        f"record_id={record_id} source=stripe alert=stripe:{event['id']} "
        in (dropped[0])
    )
    assert "runbook=payment-without-subscription" in dropped[0]
    logged = dropped[0].partition(" parameters=")[2]
    parameters, _ = json.JSONDecoder().raw_decode(logged)
    assert parameters["customer"] == customer
    assert parameters["incident_id"] == event["id"]
    assert parameters["apply"] is False


def test_a_malformed_customer_is_refused_before_anything_is_reserved(sandbox, tmp_path):
    # Runs wait out the platform delay, so an accepted one holds its slot and
    # never reaches a notebook: the health count shows what was reserved.
    waiting = Receiver(
        tmp_path / "records", tmp_path / "serve.log", "--platform-delay", "600"
    )
    try:
        event = stripe_event(
            "checkout.session.completed", mode="subscription", customer="cus_9!x"
        )
        refused = waiting.post("/stripe", **signed(event))
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error.startswith("data.object.customer: got 'cus_9!x'")
        assert "expected a Stripe customer id: cus_" in error
        assert httpx.get(waiting.url + "/health").json()["runs"] == 0

        # The same event id, well formed, is new to the receiver: not a duplicate.
        event["data"]["object"]["customer"] = "cus_9x"
        body = json.dumps(event)
        # dated a minute ahead: inside the tolerance, so taken
        header = stripe.WebhookSignature.generate_signature_header(
            body, STRIPE_SECRET, timestamp=int(time.time()) + 60
        )
        taken = waiting.post(
            "/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert taken.status_code == 202, taken.text
        assert httpx.get(waiting.url + "/health").json()["runs"] == 1
    finally:
        waiting.stop()
    assert record_files(waiting.records) == []


def test_a_non_loopback_host_is_refused_before_listening():
    env = {"RUNBOOK_ALERTS_SECRET": UPTIME_SECRET}
    result = CliRunner().invoke(main, ["serve-alerts", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "expected a loopback address" in result.output


def test_runs_stopped_while_their_kernels_preload_archive_within_the_grace(
    sandbox, tmp_path, monkeypatch
):
    """SIGTERM to a receiver whose two alert runs hang in kernel start-up (their
    kernels are ready but still importing opslib): each run archives an aborted
    record before the receiver's grace for a stopped run would kill it (a killed
    run leaves none), and no kernel folder, which holds the kernel's key."""
    _, marks = slow_preload_kernel(tmp_path, "python3")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TMPDIR", str(temp))
    receiver = Receiver(
        tmp_path / "records",
        tmp_path / "serve.log",
        "--max-runs",
        "2",
        "--platform-delay",
        "0",
    )
    try:
        record_ids = []
        for monitor in ("778201", "778202"):
            answer = receiver.post(
                "/uptimerobot",
                json=uptime_alert(monitorID=monitor),
                headers={"X-Runbook-Alert-Secret": UPTIME_SECRET},
            )
            assert answer.status_code == 202, answer.text
            record_ids.append(answer.json()["record_id"])
        deadline = time.monotonic() + RUN_CEILING_S
        while len(list(marks.iterdir())) < 2:
            assert receiver.process.poll() is None, receiver.log.read_text()
            assert time.monotonic() < deadline, "the kernels never preloaded"
            time.sleep(0.1)
    finally:
        receiver.stop()

    assert receiver.process.returncode == 0, receiver.log.read_text()
    for record_id in record_ids:
        sidecar = load_record(receiver.records, record_id)
        assert sidecar["status"] == "aborted", receiver.log.read_text()
        assert sidecar["error"]["evalue"] == INTERRUPTED_AT_START
        assert {cell["status"] for cell in sidecar["cells"]} == {"pending"}
    assert list(temp.glob("opslib-kernel-*")) == []
    assert "Traceback" not in receiver.log.read_text()
