"""Starting, watching and stopping the sandbox process from Python.

``Sandbox.start`` prepares the state folder (secrets, seeded D1 template, server
configuration), spawns ``python -m opslib.sandbox serve`` in its own session and
waits for its ``sandbox.json``; then it writes an environment file pointing at the
actual ports, so clients load it like any other environment. A sandbox started
``tied`` is given the starter's pid (``--parent``) and shuts down once that process
is gone, so a killed test session leaves no servers behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from opslib._config import Environment, find_environments_dir
from opslib._errors import ConfigError

from ._http import LOOPBACK
from ._process import call_control, is_port_busy, is_sandbox_process, read_json
from ._scenarios import SCENARIOS
from ._seed import ensure_template
from ._server import (
    CONFIG_FILE,
    EXIT_PORT_BUSY,
    PID_FILE,
    SECRETS_FILE,
    STATUS_FILE,
    read_dotenv,
)
from ._state import FAULT_NAMES

logger = logging.getLogger(__name__)

LOG_FILE = "sandbox.log"
_URL_PORTS = (
    ("platform", "platform_url"),
    ("cloudflare", "cloudflare_api_url"),
    ("status_page", "status_page_url"),
    ("mailchannels", "mailchannels_url"),
    ("stripe", "stripe_api_url"),
    ("r2", "r2_endpoint_url"),
)


def default_state_dir() -> Path:
    """Return ``<project root>/.sandbox``, the project root being two levels above
    the environments folder."""
    return find_environments_dir().parent.parent / ".sandbox"


class Sandbox:
    """A local stand-in for production, run as a background process.

    Args:
        state_dir: folder for the sandbox's files (created if needed).
        environment: the environment whose names the sandbox serves, normally
            ``load_environment("sandbox")``; None is enough to stop a sandbox or
            read its status, which need only the state folder.
        token: the Cloudflare API token the stand-in accepts; random when None.
        ephemeral_ports: bind free ports instead of those in the environment's URLs.
        tied: stop the sandbox's servers when the process that started it dies,
            even by SIGKILL (tests, drills, a lab session). Off for
            ``runbook sandbox start``, whose sandbox outlives the command.
    """

    def __init__(
        self,
        state_dir: Path,
        environment: Environment | None,
        *,
        token: str | None = None,
        ephemeral_ports: bool = False,
        tied: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.environment = environment
        self.token = token
        self.ephemeral_ports = ephemeral_ports
        self.tied = tied
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Sandbox(state_dir={str(self.state_dir)!r})"

    @property
    def environments_dir(self) -> Path:
        """Folder holding the ``sandbox.yaml`` written by ``start``."""
        return self.state_dir / "environments"

    @property
    def urls(self) -> dict[str, str]:
        """platform_url, cloudflare_api_url, status_page_url, mailchannels_url,
        stripe_api_url and control_url.

        Raises:
            ConfigError: when no sandbox runs in the state folder.
        """
        return dict(self._require_status()["urls"])

    def start(self, scenario: str = "healthy", *, timeout: float = 20.0) -> None:
        """Start the sandbox in the background and wait until it answers.

        Raises:
            ConfigError: for an unknown scenario, a sandbox already running in the
                folder, a busy port, or a process that is not ready in time.
        """
        _check_scenario(scenario)
        _check_stand_ins_installed()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        running = self.status()
        if running is not None:
            raise ConfigError(
                f"a sandbox already runs in {str(self.state_dir)!r} (pid "
                f"{running['pid']}); stop it first (runbook sandbox stop --state-dir "
                f"{self.state_dir})"
            )
        self._remove_files()

        ports = self._ports()
        password = self._write_secrets()
        ensure_template(self.state_dir, password)
        self._write_config(ports)
        process = self._spawn(scenario)
        status = self._wait_ready(process, timeout)
        (self.state_dir / PID_FILE).write_text(f"{process.pid}\n", encoding="utf-8")
        self._write_environment(status["urls"])
        logger.info("sandbox started pid=%s scenario=%s", process.pid, scenario)

    def stop(self, *, timeout: float = 10.0) -> bool:
        """Stop the sandbox: SIGTERM, wait, then SIGKILL.

        Returns:
            False when no sandbox was running.
        """
        pid = self._recorded_pid()
        if pid is None or not self._is_running(pid):
            self._remove_files()
            return False
        os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            logger.warning("sandbox ignored SIGTERM, killing pid=%s", pid)
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, timeout)
        self._remove_files()
        logger.info("sandbox stopped pid=%s", pid)
        return True

    def status(self) -> dict[str, Any] | None:
        """Return {pid, scenario, urls, started_at, state_dir}, or None if stopped."""
        data = read_json(self.state_dir / STATUS_FILE)
        if not isinstance(data, dict) or not self._is_running(int(data.get("pid", 0))):
            return None
        keys = ("pid", "scenario", "urls", "started_at", "state_dir")
        return {key: data.get(key) for key in keys}

    def reset(self, scenario: str) -> None:
        """Switch the running sandbox to a fresh copy of ``scenario``.

        Raises:
            ConfigError: for an unknown scenario or when no sandbox runs.
        """
        _check_scenario(scenario)
        self._control("POST", "/__sandbox/reset", {"scenario": scenario})

    def truth(self) -> dict[str, Any]:
        """Return {scenario, notebook, cause, details} of the running scenario."""
        result: dict[str, Any] = self._control("GET", "/__sandbox/truth")
        return result

    def inject(self, **faults: int) -> None:
        """Inject faults into the running sandbox.

        Counted faults (``cloudflare_429``, ``cloudflare_500``, ``platform_500``,
        ``status_page_500``) make the next N calls fail; delays
        (``cloudflare_delay_ms``, ``platform_delay_ms``) apply until changed or
        until the next reset. A value replaces the pending one, so 0 clears it.

        Raises:
            ConfigError: for an unknown fault name or a negative value.
        """
        unknown = sorted(set(faults) - set(FAULT_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown fault(s) {unknown!r}; expected some of: "
                f"{', '.join(FAULT_NAMES)}"
            )
        self._control("POST", "/__sandbox/faults", dict(faults))

    def fault(self, system: str, kind: str, **options: Any) -> dict[str, Any]:
        """Lay a transport fault over one system of the running sandbox.

        Args:
            system: platform, cloudflare, status_page, mailchannels, stripe or r2.
            kind: timeout, 429, 5xx, refused or truncated (``_transport``).
            **options: ``count`` (the next N requests only), ``retry_after``
                (429), ``status`` (5xx), ``hold_s`` (timeout).

        Returns:
            The transport faults now in force, by system.

        Raises:
            ConfigError: naming what is wrong with the fault, or when no sandbox runs.
        """
        body = {"system": system, "kind": kind, **options}
        answer = self._control("POST", "/__sandbox/transport", body)
        return dict(answer["transport"])

    def clear_faults(self, system: str | None = None) -> dict[str, Any]:
        """Clear the transport faults of one system, or of all; returns those left."""
        body = {} if system is None else {"system": system}
        answer = self._control("POST", "/__sandbox/transport/clear", body)
        return dict(answer["transport"])

    def transport_faults(self) -> dict[str, Any]:
        """The transport faults in force, by system."""
        return dict(self._control("GET", "/__sandbox/transport")["transport"])

    # -- start helpers -------------------------------------------------------------

    def _template(self) -> Environment:
        if self.environment is None:
            raise ConfigError(
                "starting a sandbox needs the sandbox environment it imitates "
                "(parameters/environments/sandbox.yaml); none was given"
            )
        return self.environment

    def _ports(self) -> dict[str, int]:
        if self.ephemeral_ports:
            return {name: 0 for name, _ in _URL_PORTS}
        ports = {}
        for name, key in _URL_PORTS:
            url = getattr(self._template(), key)
            if not url:  # an optional URL the environment leaves out: any free port
                ports[name] = 0
                continue
            ports[name] = urlsplit(url).port or 80
            if is_port_busy(ports[name]):
                raise ConfigError(
                    f"port {ports[name]} of {key} ({url}) is busy on {LOOPBACK}: "
                    "another sandbox or a local server holds it; stop that, or "
                    "start with --any-ports (and its own --state-dir)"
                )
        return ports

    def _write_secrets(self) -> str:
        path = self.state_dir / SECRETS_FILE
        password = read_dotenv(path).get("RUNBOOK_TEST_ACCOUNT_PASSWORD") or (
            "Sb!" + secrets.token_urlsafe(15) + "9x"
        )
        self.token = self.token or secrets.token_urlsafe(30)
        path.write_text(
            "# Written by the sandbox: throw-away credentials of the local stand-in.\n"
            f"CLOUDFLARE_API_TOKEN={self.token}\n"
            f"RUNBOOK_TEST_ACCOUNT_PASSWORD={password}\n"
            f"STRIPE_API_KEY=sk_test_{secrets.token_hex(12)}\n"
            f"STRIPE_WEBHOOK_SECRET=whsec_{secrets.token_hex(16)}\n"
            f"R2_ACCESS_KEY_ID={secrets.token_hex(16)}\n"
            f"R2_SECRET_ACCESS_KEY={secrets.token_hex(32)}\n",
            encoding="utf-8",
        )
        path.chmod(0o600)
        return password

    def _write_config(self, ports: dict[str, int]) -> None:
        environment = asdict(self._template())
        environment.pop("secrets", None)
        environment["required_secrets"] = list(environment["required_secrets"])
        config = {"environment": environment, "ports": {**ports, "control": 0}}
        path = self.state_dir / CONFIG_FILE
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def _spawn(self, scenario: str) -> subprocess.Popen[bytes]:
        package_root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(package_root), env.get("PYTHONPATH", "")) if p
        )
        command = [
            sys.executable,
            "-m",
            "opslib.sandbox",
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--scenario",
            scenario,
        ]
        if self.tied:
            command += ["--parent", str(os.getpid())]
        with open(self.state_dir / LOG_FILE, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.state_dir,
                env=env,
            )
        return self._process

    def _wait_ready(
        self, process: subprocess.Popen[bytes], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise ConfigError(self._failure_message(code))
            status = read_json(self.state_dir / STATUS_FILE)
            if isinstance(status, dict) and status.get("pid") == process.pid:
                return status
            time.sleep(0.02)
        process.kill()
        process.wait()
        raise ConfigError(
            f"the sandbox did not become ready within {timeout:g} s; last lines of "
            f"{self.state_dir / LOG_FILE}:\n{self._log_tail()}"
        )

    def _failure_message(self, code: int) -> str:
        reason = "a port is busy" if code == EXIT_PORT_BUSY else f"exit code {code}"
        return (
            f"the sandbox stopped before it was ready ({reason}); last lines of "
            f"{self.state_dir / LOG_FILE}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.state_dir / LOG_FILE).read_text(
                encoding="utf-8", errors="replace"
            )
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _write_environment(self, urls: dict[str, str]) -> None:
        env = self._template()
        data: dict[str, Any] = {
            "name": "sandbox",
            "description": env.description
            or "Local stand-in started by opslib.sandbox",
            **{key: urls[key] for _, key in _URL_PORTS},
            "account_id": env.account_id,
            "worker_name": env.worker_name,
            "d1_database_id": env.d1_database_id,
            "d1_database_name": env.d1_database_name,
            "kv_namespaces": dict(env.kv_namespaces),
            "r2_buckets": dict(env.r2_buckets),
            "queues": dict(env.queues),
            "required_secrets": list(env.required_secrets),
            "test_account_email": env.test_account_email or "prodtest1@example.com",
            "allowed_origins": list(env.allowed_origins),
            "secrets_file": str(self.state_dir / SECRETS_FILE),
        }
        if env.timeout_s is not None:
            data["timeout_s"] = env.timeout_s
        self.environments_dir.mkdir(exist_ok=True)
        text = "# Written by opslib.sandbox for the running sandbox; do not edit.\n"
        text += yaml.safe_dump(data, sort_keys=False)
        (self.environments_dir / "sandbox.yaml").write_text(text, encoding="utf-8")

    # -- running-process helpers ---------------------------------------------------

    def _recorded_pid(self) -> int | None:
        status = read_json(self.state_dir / STATUS_FILE)
        if isinstance(status, dict) and status.get("pid"):
            return int(status["pid"])
        try:
            return int((self.state_dir / PID_FILE).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def _is_running(self, pid: int) -> bool:
        if pid <= 0:
            return False
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return is_sandbox_process(pid)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._is_running(pid):
                return True
            time.sleep(0.02)
        return False

    def _remove_files(self) -> None:
        for name in (STATUS_FILE, PID_FILE):
            (self.state_dir / name).unlink(missing_ok=True)

    def _require_status(self) -> dict[str, Any]:
        status = self.status()
        if status is None:
            raise ConfigError(
                f"no sandbox runs in {str(self.state_dir)!r}; start one "
                "with Sandbox.start() or `runbook sandbox start`"
            )
        return status

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        url = self._require_status()["urls"]["control_url"]
        return call_control(url, method, path, body)


def _check_scenario(name: str) -> None:
    if name not in SCENARIOS:
        raise ConfigError(
            f"scenario: got {name!r}, expected one of: {', '.join(SCENARIOS)}"
        )


def _check_stand_ins_installed() -> None:
    """Refuse early, and say how to fix it, when the Stripe or R2 stand-in is missing."""
    import importlib.util

    missing = [
        name
        for name in ("localstripe", "moto")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ConfigError(
            f"the sandbox needs {', '.join(missing)}, which is not installed; install "
            "the sandbox extra: pip install -e '.[sandbox]' (make setup does this)"
        )
