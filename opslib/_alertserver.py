"""The alert receiver behind ``runbook serve-alerts``.

A small HTTP server on loopback that takes an UptimeRobot alert or a Stripe
event and starts a dry run of the runbook that diagnoses it (``_alerts``):

- ``GET|POST /uptimerobot`` (secret in the ``X-Runbook-Alert-Secret`` header)
  or ``/uptimerobot/<secret>``; the secret is ``RUNBOOK_ALERTS_SECRET``.
- ``POST /stripe``, verified by its ``Stripe-Signature`` against
  ``RUNBOOK_ALERTS_STRIPE_SECRET`` (the receiver's own endpoint secret) and
  dated within ``STRIPE_TOLERANCE_S`` of the receiver's clock, before or after.
- ``GET|HEAD /health`` for the proxy in front: how many runs are going.

Answers are JSON: 202 ``accepted`` with the record id reserved for the run,
which then goes on in a child process (senders time out in seconds); 200
``duplicate`` with the first run's record id when the same alert came within
the duplicate window; 200 ``ignored`` for alerts that start nothing; 400 for a
malformed alert (JSON nested too deeply included), 401 for a missing secret
or signature, 403 for a wrong one, 404 for an unknown or unconfigured route,
408 for a body that stops coming, 413 for a body over 64 KiB, 429 with ``Retry-After`` when ``max_runs`` runs are
going already. Nothing is run on any answer but 202, and a run never applies an
action: ``apply`` is forced off.

A body comes with a ``Content-Length`` or chunked (``Transfer-Encoding:
chunked``, as proxies forward it); a chunked one is held to the same 64 KiB,
counted in decoded bytes, and malformed chunk framing is a 400. A request
naming both, or another transfer coding, is refused. Every connection closes
after its answer (HTTP/1.0), so nothing left unread can pass as a next request.

The duplicate memory lives in the process: a restart forgets it.
"""

from __future__ import annotations

import datetime
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ._alerts import (
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
from ._config import Environment
from ._errors import ConfigError, ParameterError
from ._notebook import find_project_root, read_parameters, resolve_notebook
from ._records import new_record_id
from ._runner import check_run_request

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8780
DEFAULT_MAX_RUNS = 2
DEFAULT_DUPLICATE_WINDOW_S = 600.0
DEFAULT_PLATFORM_DELAY_S = 60.0
SECRET_VARIABLE = "RUNBOOK_ALERTS_SECRET"
STRIPE_SECRET_VARIABLE = "RUNBOOK_ALERTS_STRIPE_SECRET"
SECRET_HEADER = "X-Runbook-Alert-Secret"
MIN_SECRET_LENGTH = 16
MAX_BODY_BYTES = 64 * 1024
STRIPE_TOLERANCE_S = 300
RETRY_AFTER_S = 60
REQUEST_TIMEOUT_S = 10.0
OPERATOR = "serve-alerts"
_STOP_GRACE_S = 30.0
# Chunked framing: a size line is hex digits, maybe extensions after ";".
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r\n")
_MAX_FRAMING_LINE = 1024
_MAX_TRAILER_LINES = 32
_ROUTES = ("uptimerobot", "stripe", "health")


@dataclass(frozen=True)
class AlertSecrets:
    """The secrets senders prove themselves with; None turns a route off."""

    uptimerobot: str | None = field(default=None, repr=False)
    stripe: str | None = field(default=None, repr=False)


def load_alert_secrets(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = None
) -> AlertSecrets:
    """Read the receiver's secrets: environment variables, else the ``.env`` file.

    Args:
        environ: where to read variables (default ``os.environ``).
        dotenv: the dotenv file to fall back on (default the project's ``.env``).

    Raises:
        ConfigError: neither secret is set, or the UptimeRobot secret is short.
    """
    from dotenv import dotenv_values

    environ = os.environ if environ is None else environ
    path = find_project_root() / ".env" if dotenv is None else dotenv
    stored = dotenv_values(path) if path.is_file() else {}
    found = {
        name: environ.get(name) or stored.get(name) or None
        for name in (SECRET_VARIABLE, STRIPE_SECRET_VARIABLE)
    }
    secrets = AlertSecrets(found[SECRET_VARIABLE], found[STRIPE_SECRET_VARIABLE])
    if secrets.uptimerobot is None and secrets.stripe is None:
        raise ConfigError(
            f"no alert secret: set {SECRET_VARIABLE} (UptimeRobot) and/or "
            f"{STRIPE_SECRET_VARIABLE} (the Stripe endpoint's whsec_ secret) in "
            "the environment or the project's .env"
        )
    if secrets.uptimerobot is not None and len(secrets.uptimerobot) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{SECRET_VARIABLE}: {len(secrets.uptimerobot)} characters; expected at "
            f"least {MIN_SECRET_LENGTH} random ones, such as from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
        )
    return secrets


def check_loopback(host: str) -> None:
    """Refuse to listen anywhere but loopback.

    Raises:
        ConfigError: naming the host and what to do instead.
    """
    try:
        is_loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise ConfigError(
            f"--host: got {host!r}; expected a loopback address such as "
            "127.0.0.1 or ::1. The receiver listens on loopback only: put the "
            "team's reverse proxy or tunnel in front of it"
        )


@dataclass(frozen=True)
class ReceiverSettings:
    """How the receiver runs what alerts ask for.

    Attributes:
        environment: the environment every run goes against.
        records_dir: the archive the records go to.
        max_runs: runs going at once, waiting ones included.
        duplicate_window_s: how long an alert counts as seen.
        platform_delay_s: how long a run waits for the platform's own webhook
            handler to see the same Stripe event (checkout completions).
        timeout_s: seconds one cell of a run may take.
    """

    environment: Environment
    records_dir: Path
    max_runs: int = DEFAULT_MAX_RUNS
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    platform_delay_s: float = DEFAULT_PLATFORM_DELAY_S
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _refusal(status: int, error: str) -> Answer:
    return Answer(status, {"status": "refused", "error": error})


class AlertReceiver:
    """Checks alerts, drops duplicates, bounds and starts the runs.

    Thread-safe: the HTTP server calls it from one thread per request.
    """

    def __init__(self, settings: ReceiverSettings, secrets: AlertSecrets) -> None:
        self.settings = settings
        self._secrets = secrets
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, float]] = {}
        self._active = 0
        self._children: set[subprocess.Popen[str]] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def receive_uptimerobot(
        self,
        secret: str | None,
        query: str,
        body: bytes,
        content_type: str,
    ) -> Answer:
        """Take an UptimeRobot alert; ``secret`` from the header or the path."""
        refused = _check_secret(secret, self._secrets.uptimerobot, SECRET_VARIABLE)
        if refused is not None:
            return refused
        try:
            fields = read_uptimerobot_fields(query, body, content_type)
            mapped = map_uptimerobot(fields, self.settings.environment)
        except AlertError as error:
            return _refusal(400, str(error))
        return self._dispatch(mapped)

    def receive_stripe(self, signature: str | None, body: bytes) -> Answer:
        """Take a Stripe event, after its signature and age check out."""
        import stripe

        if self._secrets.stripe is None:
            return _unconfigured(STRIPE_SECRET_VARIABLE)
        if not signature:
            return _refusal(401, "Stripe-Signature header missing")
        try:
            text = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature, self._secrets.stripe, tolerance=STRIPE_TOLERANCE_S
            )
        except UnicodeDecodeError:
            return _refusal(400, "body: not UTF-8 text; expected a Stripe event")
        except stripe.SignatureVerificationError as error:
            return _refusal(403, f"Stripe-Signature does not verify: {error}")
        ahead = _signed_at(signature) - int(time.time())
        if ahead > STRIPE_TOLERANCE_S:
            # The SDK's age check only looks back; a signature dated ahead
            # would stay good long after the duplicate memory forgot it.
            return _refusal(
                403,
                f"Stripe-Signature is dated {ahead} s ahead of this host's clock; "
                f"expected a time within {STRIPE_TOLERANCE_S} s of now either way "
                "(check the clock where serve-alerts runs)",
            )
        try:
            mapped = map_stripe_event(read_json_object(text, "a Stripe event"))
        except AlertError as error:
            return _refusal(400, str(error))
        return self._dispatch(mapped)

    def health(self) -> Answer:
        """How many runs are going, against the bound."""
        with self._lock:
            active = self._active
        body = {"status": "ok", "runs": active, "max_runs": self.settings.max_runs}
        return Answer(200, body)

    def _dispatch(self, mapped: AlertRun | IgnoredAlert) -> Answer:
        if isinstance(mapped, IgnoredAlert):
            logger.info(
                "alert ignored source=%s reason=%s", mapped.source, mapped.reason
            )
            return Answer(200, {"status": "ignored", "reason": mapped.reason})
        specs = read_parameters(resolve_notebook(mapped.runbook))
        parameters = notebook_parameters(mapped, specs)
        try:
            check_run_request(
                mapped.runbook,
                parameters,
                environment=self.settings.environment.name,
                records_dir=self.settings.records_dir,
            )
        except ParameterError as error:
            return _refusal(400, mapping_refusal(mapped, error))
        return self._reserve(mapped, parameters)

    def _reserve(self, mapped: AlertRun, parameters: dict[str, object]) -> Answer:
        now = time.monotonic()
        with self._lock:
            self._forget_before(now - self.settings.duplicate_window_s)
            if mapped.key in self._seen:
                first = self._seen[mapped.key][0]
                return Answer(200, {"status": "duplicate", "record_id": first})
            if self._active >= self.settings.max_runs:
                return Answer(
                    429,
                    {"status": "busy", "error": f"{self._active} runs going already"},
                    {"Retry-After": str(RETRY_AFTER_S)},
                )
            started = datetime.datetime.now(datetime.UTC)
            incident_id = str(parameters.get("incident_id", ""))
            record_id = new_record_id(started, mapped.runbook, incident_id)
            self._seen[mapped.key] = (record_id, now)
            self._active += 1
            self._start_thread(record_id, mapped, parameters)
        return _accepted(mapped, record_id)

    def _forget_before(self, moment: float) -> None:
        for key in [k for k, (_, seen) in self._seen.items() if seen < moment]:
            del self._seen[key]

    def _start_thread(
        self, record_id: str, mapped: AlertRun, parameters: dict[str, object]
    ) -> None:
        thread = threading.Thread(
            target=self._run,
            args=(record_id, mapped, parameters),
            name=f"alert-run-{record_id}",
            daemon=True,
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _run(
        self, record_id: str, mapped: AlertRun, parameters: dict[str, object]
    ) -> None:
        try:
            delay = self.settings.platform_delay_s if mapped.wait_for_platform else 0
            if self._stopping.wait(delay):
                _log_dropped(record_id, mapped, parameters)
            else:
                self._run_child(record_id, mapped, parameters)
        except Exception:  # a run thread reports, it never takes the server down
            logger.exception("alert run could not start record_id=%s", record_id)
        finally:
            with self._lock:
                self._active -= 1

    def _run_child(
        self, record_id: str, mapped: AlertRun, parameters: dict[str, object]
    ) -> None:
        job = {
            "runbook": mapped.runbook,
            "parameters": parameters,
            "environment": self.settings.environment.name,
            "records_dir": str(self.settings.records_dir),
            "record_id": record_id,
            "timeout": self.settings.timeout_s,
            "operator": f"{OPERATOR}/{mapped.source}",
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "opslib._alertjob"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_environment(),
            text=True,
        )
        with self._lock:
            self._children.add(child)
        if self._stopping.is_set():
            child.send_signal(signal.SIGINT)
        try:
            out, _ = child.communicate(json.dumps(job))
        finally:
            with self._lock:
                self._children.discard(child)
        _log_child(record_id, child.returncode, out)

    def shutdown(self, grace_s: float = _STOP_GRACE_S) -> None:
        """Stop waiting runs; interrupt running ones, which archive what they have."""
        self._stopping.set()
        with self._lock:
            children = list(self._children)
            threads = list(self._threads)
        for child in children:
            child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for thread in threads:
            thread.join(grace_s)


def _signed_at(signature: str) -> int:
    """The ``t=`` of a Stripe-Signature header the SDK has already verified."""
    for item in signature.split(","):
        key, _, rest = item.partition("=")
        if key == "t":
            return int(rest.partition("=")[0])
    raise ValueError("Stripe-Signature: no t= in a header that verified")


def _accepted(mapped: AlertRun, record_id: str) -> Answer:
    logger.info(
        "alert accepted source=%s runbook=%s record_id=%s summary=%s",
        mapped.source,
        mapped.runbook,
        record_id,
        mapped.summary,
    )
    body = {
        "status": "accepted",
        "record_id": record_id,
        "runbook": mapped.runbook,
        "summary": mapped.summary,
    }
    return Answer(202, body)


def _check_secret(given: str | None, expected: str | None, name: str) -> Answer | None:
    """None when the secret matches; compared in constant time."""
    if expected is None:
        return _unconfigured(name)
    if not given:
        return _refusal(
            401, f"secret missing: send it in {SECRET_HEADER} or the URL path"
        )
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return _refusal(403, "secret does not match")
    return None


def _unconfigured(name: str) -> Answer:
    return _refusal(404, f"route not served: {name} is not set where serve-alerts runs")


def _child_environment() -> dict[str, str]:
    """The run's environment: the receiver's, without the receiver's secrets."""
    hidden = (SECRET_VARIABLE, STRIPE_SECRET_VARIABLE)
    return {k: v for k, v in os.environ.items() if k not in hidden}


def _log_dropped(
    record_id: str, mapped: AlertRun, parameters: dict[str, object]
) -> None:
    """Name a run the stop dropped before it began, so it can be run again."""
    logger.warning(
        "alert run dropped at stop record_id=%s source=%s alert=%s runbook=%s "
        "parameters=%s summary=%s: nothing ran and no record will come; re-send "
        "the alert, or run the runbook with these parameters",
        record_id,
        mapped.source,
        mapped.key,
        mapped.runbook,
        json.dumps(parameters, sort_keys=True),
        mapped.summary,
    )


def _log_child(record_id: str, returncode: int, out: str) -> None:
    lines = out.strip().splitlines()
    try:
        outcome = json.loads(lines[-1]) if lines else {}
    except ValueError:
        outcome = {}
    if returncode == 0:
        logger.info(
            "alert run finished record_id=%s verdict=%s cause=%s",
            record_id,
            outcome.get("verdict_status"),
            outcome.get("cause"),
        )
        return
    logger.warning(
        "alert run ended record_id=%s exit=%s status=%s error=%s",
        record_id,
        returncode,
        outcome.get("status"),
        outcome.get("error"),
    )


def read_chunked(stream: io.BufferedIOBase, limit: int) -> bytes | Answer:
    """Read a chunked body (RFC 9112 section 7.1) of at most ``limit`` bytes.

    Chunk extensions and trailer fields are read and dropped. Reading stops at
    the first problem, so an oversized or malformed body is never read whole.

    Returns:
        The decoded body, or the refusal: 413 when the chunks add up to more
        than ``limit`` bytes, 400 naming what is wrong with the framing.
    """
    body = bytearray()
    while True:
        line = stream.readline(_MAX_FRAMING_LINE + 1)
        if not line:
            return _bad_framing("ended before its last chunk", "a 0 size line last")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            return _bad_framing(
                f"got the size line {line[:40]!r}", "hex digits and CRLF"
            )
        size = int(match[1], 16)
        if size == 0:
            break
        if len(body) + size > limit:
            return _refusal(
                413, f"body: more than {limit} bytes in its chunks; at most {limit}"
            )
        data = stream.read(size)
        if len(data) < size:
            return _bad_framing(
                f"ended {len(data)} bytes into a chunk of {size}",
                "the whole chunk",
            )
        body += data
        end = stream.readline(3)
        if end != b"\r\n":
            return _bad_framing(
                f"got {end!r} after a chunk of {size} bytes",
                "CRLF (its size line says how long it is)",
            )
    for _ in range(_MAX_TRAILER_LINES):
        line = stream.readline(_MAX_FRAMING_LINE + 1)
        if line == b"\r\n":
            return bytes(body)
        if not line.endswith(b"\r\n"):
            return _bad_framing(
                f"got {line[:40]!r} after the last chunk",
                "trailer lines and an empty line",
            )
    return _bad_framing(
        f"more than {_MAX_TRAILER_LINES} trailer lines",
        f"at most {_MAX_TRAILER_LINES}, then an empty line",
    )


def _bad_framing(problem: str, expected: str) -> Answer:
    return _refusal(400, f"chunked body: {problem}; expected {expected}")


class _Handler(BaseHTTPRequestHandler):
    server: AlertServer
    server_version = "runbook-serve-alerts"
    # A sender that stops mid-request frees its thread after this many seconds.
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer("HEAD")

    def _answer(self, method: str) -> None:
        route = "-"
        try:
            parts = urlsplit(self.path)
            segments = [unquote(s) for s in parts.path.split("/") if s]
            first = segments[0] if segments else "/"
            route = first if first in _ROUTES else "other"
            answer = self._route(method, segments, parts.query)
        except Exception:  # one bad request never takes the server down
            logger.exception("alert request failed route=%s", route)
            answer = _refusal(500, "internal error; see the receiver's log")
        self._send(answer, with_body=method != "HEAD")
        logger.info(
            "alert request method=%s route=%s status=%s", method, route, answer.status
        )

    def _route(self, method: str, segments: list[str], query: str) -> Answer:
        receiver = self.server.receiver
        if segments == ["health"] and method in ("GET", "HEAD"):
            return receiver.health()
        if (
            segments[:1] == ["uptimerobot"]
            and len(segments) <= 2
            and method in ("GET", "POST")
        ):
            body = self._body()
            if isinstance(body, Answer):
                return body
            in_path = segments[1] if len(segments) == 2 else None
            secret = self.headers.get(SECRET_HEADER) or in_path
            content_type = self.headers.get("Content-Type", "")
            return receiver.receive_uptimerobot(secret, query, body, content_type)
        if segments == ["stripe"] and method == "POST":
            body = self._body()
            if isinstance(body, Answer):
                return body
            return receiver.receive_stripe(self.headers.get("Stripe-Signature"), body)
        return _refusal(404, "no such route; expected /uptimerobot, /stripe, /health")

    def _body(self) -> bytes | Answer:
        try:
            return self._read_body()
        except TimeoutError:
            return _refusal(
                408,
                f"body: nothing came for {REQUEST_TIMEOUT_S:g} s; expected the "
                "whole body at once",
            )

    def _read_body(self) -> bytes | Answer:
        codings = self.headers.get_all("Transfer-Encoding")
        if codings is not None:
            return self._chunked_body(", ".join(codings))
        length_text = self.headers.get("Content-Length") or "0"
        if not length_text.isdigit():
            return _refusal(400, f"Content-Length: got {length_text[:20]!r}")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            return _refusal(413, f"body: {length} bytes; at most {MAX_BODY_BYTES}")
        body = self.rfile.read(length)
        if len(body) < length:
            return _refusal(
                400,
                f"body: ended after {len(body)} of the {length} bytes its "
                "Content-Length says",
            )
        return body

    def _chunked_body(self, coding: str) -> bytes | Answer:
        if self.headers.get("Content-Length") is not None:
            return _refusal(
                400,
                "Content-Length and Transfer-Encoding: both given; expected one "
                "of them",
            )
        if coding.strip().lower() != "chunked":
            return _refusal(
                501,
                f"Transfer-Encoding: got {coding[:40]!r}; expected chunked, or a "
                "Content-Length",
            )
        return read_chunked(self.rfile, MAX_BODY_BYTES)

    def _send(self, answer: Answer, with_body: bool = True) -> None:
        payload = json.dumps(answer.body).encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the default line holds the path, where a secret may sit."""


class AlertServer(ThreadingHTTPServer):
    """The HTTP side; each request gets a thread and the shared receiver."""

    daemon_threads = True

    def __init__(self, host: str, port: int, receiver: AlertReceiver) -> None:
        check_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.receiver = receiver
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}"


def serve_alerts(server: AlertServer, echo: Callable[[str], None] = print) -> None:
    """Serve until SIGINT or SIGTERM, then stop the runs and close."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    echo(f"serve-alerts listening on {server.url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("serve-alerts stopping: interrupting runs still going")
    finally:
        server.server_close()
        server.receiver.shutdown()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
