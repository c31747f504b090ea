"""JupyterLab on the sandbox in one command: ``runbook lab`` (``make lab``).

Starts the sandbox unless one already runs in the state folder, points the
notebooks at it (``RUNBOOK_ENVIRONMENTS``) and at the records archive
(``RUNBOOK_RECORDS``), and runs JupyterLab on 127.0.0.1 with the notebooks
folder as its root. Ctrl-C (or SIGTERM) stops JupyterLab, its kernels and the
sandbox, if this command started it; a sandbox that was already running stays up.

JupyterLab is told not to reach out on its own: no news feed, no check for a
newer version, and an extension manager that only lists what is installed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ._beforeimage import RECORDS_VARIABLE
from ._config import ENVIRONMENTS_VARIABLE, NAMED_ENVIRONMENT_VARIABLE
from ._notebook import find_notebooks_dir

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8888
STOP_TIMEOUT_S = 30.0
# Settings that keep JupyterLab from calling hosts other than the sandbox's.
QUIET_LAB = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
)


@dataclass(frozen=True)
class LabSettings:
    """How to start JupyterLab.

    Attributes:
        environments_dir: the sandbox's environments folder.
        records_dir: the archive the notebooks and the gate widget write to.
        port: the loopback port; taken or not at all (no retries on the next one).
        open_browser: whether JupyterLab opens a browser tab.
        allow_root: let JupyterLab run as root (it refuses otherwise).
    """

    environments_dir: Path
    records_dir: Path
    port: int = DEFAULT_PORT
    open_browser: bool = True
    allow_root: bool = False


def lab_command(settings: LabSettings) -> list[str]:
    """The command line of JupyterLab, run by this project's Python."""
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.ip={LOOPBACK}",
        f"--ServerApp.port={settings.port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={find_notebooks_dir()}",
        *QUIET_LAB,
    ]
    if not settings.open_browser:
        command.append("--no-browser")
    if settings.allow_root:
        command.append("--allow-root")
    return command


def lab_environment(
    settings: LabSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables JupyterLab and its kernels get.

    The sandbox's environments and the archive are set; a
    ``RUNBOOK_NAMED_ENVIRONMENT`` left in the shell is removed, as for a
    headless run: it would let a kernel change production.
    """
    env = dict(os.environ if environ is None else environ)
    env[ENVIRONMENTS_VARIABLE] = str(settings.environments_dir)
    env[RECORDS_VARIABLE] = str(settings.records_dir.absolute())
    env.pop(NAMED_ENVIRONMENT_VARIABLE, None)
    return env


class _Stop(Exception):
    """SIGTERM arrived: stop as for Ctrl-C."""


def run_lab(settings: LabSettings, *, say: Callable[[str], None] = print) -> int:
    """Run JupyterLab until it exits or Ctrl-C; return its exit code.

    JupyterLab runs in a session of its own, so Ctrl-C reaches this process
    only, which then stops JupyterLab with SIGTERM (JupyterLab shuts its
    kernels down) and waits for it.
    """
    process = subprocess.Popen(
        lab_command(settings),
        env=lab_environment(settings),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        return process.wait()
    except (KeyboardInterrupt, _Stop):
        say("stopping JupyterLab and its kernels")
        return _stop(process)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:  # a failure above: never leave it running
            _stop(process)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.warning("JupyterLab ignored SIGTERM, killing pid=%s", process.pid)
        process.kill()
        process.wait()
    return 0


def lab_on_sandbox(
    *,
    state_dir: Path | None,
    scenario: str,
    any_ports: bool,
    records_dir: Path,
    port: int,
    open_browser: bool,
    allow_root: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Start the sandbox if none runs in ``state_dir``, run JupyterLab on it,
    and stop the sandbox afterwards if it was started here.

    Raises:
        ConfigError: when the sandbox cannot be started.
    """
    from ._config import load_environment
    from .sandbox import Sandbox
    from .sandbox._sandbox import default_state_dir

    sandbox = Sandbox(
        state_dir or default_state_dir(),
        load_environment("sandbox"),
        ephemeral_ports=any_ports,
        tied=True,  # a sandbox started here goes with the lab, even a killed one
    )
    running = sandbox.status()
    if running is None:
        sandbox.start(scenario)
        say(f"sandbox started in {sandbox.state_dir} (scenario {scenario})")
    else:
        say(
            f"sandbox already running in {sandbox.state_dir} (scenario "
            f"{running['scenario']}); it stays up when JupyterLab stops"
        )
    settings = LabSettings(
        sandbox.environments_dir, records_dir, port, open_browser, allow_root
    )
    say(f"{ENVIRONMENTS_VARIABLE}={settings.environments_dir}")
    say(f"{RECORDS_VARIABLE}={settings.records_dir.absolute()}")
    say(f"JupyterLab on http://{LOOPBACK}:{port}/lab; Ctrl-C stops it")
    try:
        return run_lab(settings, say=say)
    finally:
        if running is None:
            sandbox.stop()
            say(f"sandbox in {sandbox.state_dir} stopped")
