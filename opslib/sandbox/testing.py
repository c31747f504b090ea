"""Helpers for tests that need a running sandbox.

Typical use in a ``conftest.py``::

    @pytest.fixture(scope="session")
    def sandbox(tmp_path_factory):
        with running_sandbox(tmp_path_factory.mktemp("sandbox")) as started:
            with patched_environ(sandbox_environ(started)):
                yield started
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from opslib._config import ENVIRONMENTS_VARIABLE, Environment, load_environment

from ._sandbox import Sandbox


@contextmanager
def running_sandbox(
    state_dir: Path,
    scenario: str = "healthy",
    *,
    environment: Environment | None = None,
) -> Iterator[Sandbox]:
    """Start a sandbox on free ports, yield it, and always stop it.

    The sandbox is tied to this process: should it be killed before the stop,
    the sandbox's servers shut down by themselves.

    Args:
        state_dir: folder for the sandbox's files.
        scenario: scenario to start with.
        environment: environment to serve; ``load_environment("sandbox")`` if None.
    """
    sandbox = Sandbox(
        state_dir,
        environment or load_environment("sandbox"),
        ephemeral_ports=True,
        tied=True,
    )
    sandbox.start(scenario)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def sandbox_environ(sandbox: Sandbox) -> dict[str, str]:
    """Variables that make ``load_environment("sandbox")`` find the running sandbox.

    The secrets file named in the written environment carries the token and the
    test-account password; variables set in the process would win over it, so the
    returned mapping blanks them.
    """
    return {
        ENVIRONMENTS_VARIABLE: str(sandbox.environments_dir),
        "CLOUDFLARE_API_TOKEN": "",
        "RUNBOOK_TEST_ACCOUNT_PASSWORD": "",
    }


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set process environment variables for the block, restoring them after.

    An empty value removes the variable for the duration of the block.
    """
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
