"""The sandbox process: loopback servers, moto and localstripe around one state.

``python -m opslib.sandbox serve --state-dir DIR --scenario NAME`` reads
``DIR/serve.json`` (environment names and wanted ports, written by
``Sandbox.start``) and the token from ``DIR/secrets.env``, prepares the scenario,
binds the platform, Cloudflare API, status page, MailChannels, Stripe front and
control servers, and only then writes ``DIR/sandbox.json``: its appearance means
"ready". SIGTERM or SIGINT shuts the servers down and removes the status files;
so does the death of the process that started it, when ``--parent`` names it (its
pid is no longer this process's parent once it is gone, even after a SIGKILL).
localstripe watches this process the same way.

Every server but the control server takes the transport faults of its system
(``_transport``). localstripe (a child process) and moto (R2) listen on private
ports behind the sandbox's own fronts (``_front``), so their faults are the
fronts'.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from opslib._config import Environment

from ._cloudflare import CloudflareApp
from ._front import ProxyApp
from ._http import LOOPBACK, App, AppServer, Request, Response
from ._mailchannels import MailChannelsApp
from ._platform import PlatformApp
from ._r2 import R2Server
from ._scenarios import SCENARIOS, start_scenario, truth
from ._state import FAULT_NAMES, World
from ._statuspage import StatusPageApp
from ._stripe import StripeProcess
from ._transport import SYSTEMS, parse_fault

logger = logging.getLogger(__name__)

CONFIG_FILE = "serve.json"
STATUS_FILE = "sandbox.json"
PID_FILE = "sandbox.pid"
SECRETS_FILE = "secrets.env"
EXIT_PORT_BUSY = 3
SERVER_NAMES = (
    "platform",
    "cloudflare",
    "status_page",
    "mailchannels",
    "stripe",
    "r2",
    "control",
)


def serve(state_dir: Path, scenario: str, *, parent: int | None = None) -> int:
    """Run the sandbox until SIGTERM (or until ``parent`` dies, when given).

    Returns:
        The process exit code.
    """
    config = json.loads((state_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    credentials = read_dotenv(state_dir / SECRETS_FILE)
    world = World(
        _environment(config["environment"]),
        state_dir,
        credentials.get("CLOUDFLARE_API_TOKEN", ""),
    )
    world.webhook_secret = credentials.get("STRIPE_WEBHOOK_SECRET", "")
    try:
        r2 = R2Server(world, 0)
        stripe = StripeProcess(state_dir)
    except OSError as error:
        logger.error("sandbox port is busy: %s", error)
        return EXIT_PORT_BUSY
    start_scenario(world, scenario)
    try:
        servers = _bind(world, config["ports"], state_dir, stripe, r2.port)
    except OSError as error:
        logger.error("sandbox port is busy: %s", error)
        stripe.stop()
        return EXIT_PORT_BUSY
    stripe.webhook_url = f"http://{LOOPBACK}:{servers['platform'].port}/webhooks/stripe"
    stripe.webhook_secret = world.webhook_secret

    for name, server in servers.items():
        if name != "control":
            server.register_faults(world.transport, name)
        server.serve_in_thread()
    r2.start()
    # Seeding delivers Stripe's recent events to the platform, so it runs once
    # the platform answers.
    stripe.seed(world)
    status = _status(servers, scenario, world.started_at, state_dir)
    status["urls"]["stripe_api_url"] = f"http://{LOOPBACK}:{servers['stripe'].port}"
    status["urls"]["r2_endpoint_url"] = f"http://{LOOPBACK}:{servers['r2'].port}"
    write_status(state_dir, status)
    logger.info("sandbox ready pid=%s scenario=%s", os.getpid(), scenario)

    _wait_for_signal(parent)
    for server in servers.values():
        server.shutdown()
        server.server_close()
    stripe.stop()
    r2.stop()
    _remove_own_files(state_dir)
    logger.info("sandbox stopped pid=%s", os.getpid())
    return 0


def read_dotenv(path: Path) -> dict[str, str]:
    """Read ``NAME=value`` lines of a dotenv file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip().strip("'\"")
    return values


def write_status(state_dir: Path, data: dict[str, Any]) -> None:
    """Replace ``sandbox.json`` in one step, so readers never see half a file."""
    partial = state_dir / (STATUS_FILE + ".partial")
    partial.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(partial, state_dir / STATUS_FILE)


def _environment(data: dict[str, Any]) -> Environment:
    data = dict(data)
    data["required_secrets"] = tuple(data.get("required_secrets") or ())
    return Environment(**data)


def _bind(
    world: World,
    ports: dict[str, int],
    state_dir: Path,
    stripe: StripeProcess,
    r2_port: int,
) -> dict[str, AppServer]:
    apps: dict[str, tuple[App, str]] = {
        "platform": (PlatformApp(world), "cloudflare"),
        "cloudflare": (CloudflareApp(world), "cloudflare"),
        "status_page": (StatusPageApp(world), "nginx"),
        "mailchannels": (MailChannelsApp(world), "nginx"),
        "stripe": (ProxyApp(stripe.port), "nginx"),
        "r2": (ProxyApp(r2_port), "cloudflare"),
        "control": (ControlApp(world, state_dir, stripe), "opslib-sandbox"),
    }
    servers: dict[str, AppServer] = {}
    try:
        for name in SERVER_NAMES:
            app, header = apps[name]
            servers[name] = AppServer(int(ports.get(name, 0)), app, name, header)
    except OSError:
        for server in servers.values():
            server.server_close()
        raise
    return servers


def _status(
    servers: dict[str, AppServer], scenario: str, started_at: float, state_dir: Path
) -> dict[str, Any]:
    ports = {name: server.port for name, server in servers.items()}
    base = {name: f"http://{LOOPBACK}:{port}" for name, port in ports.items()}
    return {
        "pid": os.getpid(),
        "scenario": scenario,
        "started_at": started_at,
        "state_dir": str(state_dir),
        "ports": ports,
        "urls": {
            "platform_url": base["platform"],
            "cloudflare_api_url": base["cloudflare"] + "/client/v4",
            "status_page_url": base["status_page"] + "/api/v2",
            "mailchannels_url": base["mailchannels"] + "/tx/v1",
            "control_url": base["control"],
        },
    }


def _wait_for_signal(parent: int | None = None) -> None:
    """Wait for SIGTERM or SIGINT, or for ``parent`` to stop being the parent."""
    stop = threading.Event()

    def _handle(signum: int, _frame: object) -> None:
        logger.info("sandbox got signal=%s", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    while not stop.wait(0.1):
        if parent is not None and os.getppid() != parent:
            logger.info(
                "the process that started the sandbox is gone parent=%s", parent
            )
            return


def _remove_own_files(state_dir: Path) -> None:
    status = state_dir / STATUS_FILE
    try:
        owner = json.loads(status.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError):
        return
    if owner == os.getpid():
        status.unlink(missing_ok=True)
        (state_dir / PID_FILE).unlink(missing_ok=True)


class ControlApp:
    """The sandbox's own loopback API for ``Sandbox`` and tests.

    Routes: GET /__sandbox/health, GET /__sandbox/truth, GET or POST
    /__sandbox/faults, POST /__sandbox/reset with ``{"scenario": name}``; GET
    /__sandbox/transport (the transport faults in force), POST
    /__sandbox/transport with one fault (``_transport.parse_fault``) and POST
    /__sandbox/transport/clear with ``{"system": name}`` or ``{}`` for all.
    """

    def __init__(
        self, world: World, state_dir: Path, stripe: StripeProcess | None = None
    ) -> None:
        self.world = world
        self.state_dir = state_dir
        self.stripe = stripe

    def __call__(self, request: Request) -> Response:
        """Answer one control request."""
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/__sandbox/health"):
            return Response.json(
                200,
                {"ok": True, "pid": os.getpid(), "scenario": self.world.scenario.name},
            )
        if route == ("GET", "/__sandbox/truth"):
            return Response.json(200, truth(self.world))
        if route == ("GET", "/__sandbox/faults"):
            return Response.json(200, {"faults": dict(self.world.faults)})
        if route == ("POST", "/__sandbox/faults"):
            return self._faults(request)
        if route == ("POST", "/__sandbox/reset"):
            return self._reset(request)
        if route == ("GET", "/__sandbox/transport"):
            return Response.json(200, {"transport": self.world.transport.pending()})
        if route == ("POST", "/__sandbox/transport"):
            return self._transport(request)
        if route == ("POST", "/__sandbox/transport/clear"):
            return self._clear_transport(request)
        return Response.json(404, {"error": "Not Found", "path": request.path})

    def _reset(self, request: Request) -> Response:
        try:
            name = request.json().get("scenario")
        except (ValueError, AttributeError):
            return Response.json(400, {"error": 'body must be {"scenario": name}'})
        if name not in SCENARIOS:
            known = ", ".join(SCENARIOS)
            return Response.json(
                400, {"error": f"unknown scenario {name!r}; known: {known}"}
            )
        started = time.monotonic()
        start_scenario(self.world, name)
        if self.stripe is not None:
            self.stripe.seed(self.world)
        status_path = self.state_dir / STATUS_FILE
        status = json.loads(status_path.read_text(encoding="utf-8"))
        status.update(scenario=name, started_at=self.world.started_at)
        write_status(self.state_dir, status)
        return Response.json(
            200, {"scenario": name, "seconds": round(time.monotonic() - started, 4)}
        )

    def _faults(self, request: Request) -> Response:
        try:
            faults = request.json()
        except ValueError:
            faults = None
        if not isinstance(faults, dict):
            return Response.json(400, {"error": "body must be a JSON object"})
        problems = [
            f"{k!r}: expected a non-negative integer"
            for k, v in faults.items()
            if isinstance(v, bool) or not isinstance(v, int) or v < 0
        ]
        problems += [f"unknown fault {k!r}" for k in faults if k not in FAULT_NAMES]
        if problems:
            return Response.json(
                400, {"error": "; ".join(problems), "known": list(FAULT_NAMES)}
            )
        return Response.json(200, {"faults": self.world.inject(faults)})

    def _transport(self, request: Request) -> Response:
        try:
            fault = parse_fault(request.json())
        except ValueError as error:
            return Response.json(400, {"error": str(error)})
        return Response.json(200, {"transport": self.world.transport.set(fault)})

    def _clear_transport(self, request: Request) -> Response:
        try:
            body = request.json() or {}
        except ValueError:
            body = None
        system = body.get("system") if isinstance(body, dict) else None
        if not isinstance(body, dict) or (system is not None and system not in SYSTEMS):
            return Response.json(
                400,
                {"error": f'body must be {{}} or {{"system": one of {list(SYSTEMS)}}}'},
            )
        return Response.json(200, {"transport": self.world.transport.clear(system)})
