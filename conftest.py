"""Session-wide sandbox for the tests and for nbval's notebook runs.

One sandbox process serves the whole session on free loopback ports, with a
canary Cloudflare token: any record the suite writes must never contain it.
Notebooks collected by nbval start their kernels with the same environment, so
the hook below makes sure the sandbox is up, and healthy, before each notebook.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_state: dict[str, object] = {}


def start_session_sandbox() -> object:
    """Start the session's sandbox once and point the environment at it."""
    if "sandbox" in _state:
        return _state["sandbox"]
    from opslib import load_environment
    from opslib.sandbox import Sandbox

    folder = Path(tempfile.mkdtemp(prefix="opslib-test-sandbox-"))
    token = "cf-canary-" + secrets.token_hex(16)
    sandbox = Sandbox(
        folder,
        load_environment("sandbox"),
        token=token,
        ephemeral_ports=True,
        tied=True,
    )
    sandbox.start("healthy")
    os.environ["RUNBOOK_ENVIRONMENTS"] = str(sandbox.environments_dir)
    os.environ.pop("CLOUDFLARE_API_TOKEN", None)
    _state.update(sandbox=sandbox, token=token, folder=folder)
    return sandbox


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before nbval's first cell of each notebook: sandbox up, healthy scenario."""
    path = str(item.fspath)
    if path.endswith(".ipynb") and _state.get("notebook") != path:
        sandbox = start_session_sandbox()
        sandbox.reset("healthy")  # type: ignore[attr-defined]
        _state["notebook"] = path


def pytest_sessionfinish(session: pytest.Session) -> None:
    sandbox = _state.pop("sandbox", None)
    if sandbox is not None:
        sandbox.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[object]:
    """The running session sandbox (reset it to the scenario a test needs)."""
    yield start_session_sandbox()


@pytest.fixture(scope="session")
def sandbox_token(sandbox: object) -> str:
    """The canary Cloudflare token the session sandbox accepts."""
    return str(_state["token"])
