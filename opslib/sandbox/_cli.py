"""The ``sandbox`` command group: start, stop and inspect the local stand-in.

The main ``runbook`` command adds this group with ``main.add_command(cli)``;
``python -m opslib.sandbox`` runs it directly. The hidden ``serve`` command is the
background process that ``start`` spawns.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from opslib._config import load_environment
from opslib._errors import ConfigError

from ._sandbox import Sandbox, default_state_dir
from ._scenarios import SCENARIOS

_STATE_DIR_HELP = "Folder for the sandbox's files [default: <project>/.sandbox]."


def _sandbox(
    state_dir: Path | None, *, any_ports: bool = False, to_start: bool = False
) -> Sandbox:
    """The sandbox of the state folder; only starting one loads the environment."""
    try:
        return Sandbox(
            state_dir or default_state_dir(),
            load_environment("sandbox") if to_start else None,
            ephemeral_ports=any_ports,
        )
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


@click.group(name="sandbox")
def cli() -> None:
    """Run a local stand-in of production on 127.0.0.1.

    The sandbox serves the platform API, the Cloudflare API, the Cloudflare status
    page and a seeded D1 database on loopback, so runbooks run against it through
    their usual clients. It uses the ports of parameters/environments/sandbox.yaml
    (8787, 8788, 8789).
    """


@cli.command()
@click.option(
    "--scenario",
    type=click.Choice(list(SCENARIOS)),
    default="healthy",
    show_default=True,
    help="Scenario to set up; every one but healthy injects one fault.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_STATE_DIR_HELP,
)
@click.option(
    "--any-ports",
    is_flag=True,
    help="Bind free loopback ports instead of 8787, 8788, ... so a second sandbox "
    "can run beside the default one (use with --state-dir).",
)
def start(scenario: str, state_dir: Path | None, any_ports: bool) -> None:
    """Start the sandbox in the background and wait until it is ready.

    Writes secrets.env (throw-away API token and test-account password), a seeded
    D1 copy and environments/sandbox.yaml into the state folder. Fails with exit
    code 1 when a port is busy or a sandbox already runs there.
    """
    sandbox = _sandbox(state_dir, any_ports=any_ports, to_start=True)
    try:
        sandbox.start(scenario)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"sandbox running, scenario {scenario}")
    for name, url in sandbox.urls.items():
        click.echo(f"  {name:<20} {url}")
    click.echo(f"  {'environments':<20} {sandbox.environments_dir}")
    if state_dir is not None:
        click.echo(
            "runbooks use the default sandbox; to use this one instead:\n"
            f"  export RUNBOOK_ENVIRONMENTS={sandbox.environments_dir}"
        )


@cli.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_STATE_DIR_HELP,
)
def stop(state_dir: Path | None) -> None:
    """Stop the sandbox running in the state folder (SIGTERM, then SIGKILL)."""
    sandbox = _sandbox(state_dir)
    if sandbox.stop():
        click.echo("sandbox stopped")
    else:
        click.echo(f"no sandbox was running in {sandbox.state_dir}")


@cli.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_STATE_DIR_HELP,
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(state_dir: Path | None, as_json: bool) -> None:
    """Show whether a sandbox runs, its scenario and URLs (exit 1 when stopped)."""
    sandbox = _sandbox(state_dir)
    info = sandbox.status()
    if info is None:
        click.echo(f"no sandbox running in {sandbox.state_dir}")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"sandbox running: pid {info['pid']}, scenario {info['scenario']}")
    for name, url in info["urls"].items():
        click.echo(f"  {name:<20} {url}")


@cli.command(hidden=True)
@click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True
)
@click.option("--scenario", type=click.Choice(list(SCENARIOS)), default="healthy")
def serve(state_dir: Path, scenario: str) -> None:
    """Run the sandbox servers in the foreground (spawned by ``start``)."""
    from ._server import serve as run_servers

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(run_servers(state_dir.resolve(), scenario))
