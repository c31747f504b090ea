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
from ._transport import KINDS, SYSTEMS

_STATE_DIR_HELP = "Folder for the sandbox's files [default: <project>/.sandbox]."


def _sandbox(
    state_dir: Path | None, *, any_ports: bool = False, to_start: bool = False
) -> Sandbox:
    """The sandbox of the state folder; only starting one loads the environment."""
    try:
        return Sandbox(
            state_dir or default_state_dir(),
            load_environment("sandbox", with_secrets=False) if to_start else None,
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


@cli.command()
@click.option(
    "--system",
    type=click.Choice(list(SYSTEMS)),
    default=None,
    help="The system whose calls fail; with --clear, clear only this one.",
)
@click.option(
    "--kind",
    type=click.Choice(list(KINDS)),
    default=None,
    help="timeout: held past the client's timeout; 429: with Retry-After; 5xx: an "
    "error status; refused: nothing listens on the port; truncated: a 200 whose "
    "body is cut.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Fault only the next N requests, then recover [default: until cleared].",
)
@click.option(
    "--retry-after",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Seconds named in Retry-After (429).",
)
@click.option(
    "--no-retry-after",
    is_flag=True,
    help="Send the 429 without a Retry-After header.",
)
@click.option(
    "--status",
    "status_code",
    type=click.IntRange(500, 599),
    default=503,
    show_default=True,
    help="The status sent (5xx).",
)
@click.option(
    "--hold",
    "hold_s",
    type=click.FloatRange(min=0, max=600, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds a request is held before the connection closes (timeout).",
)
@click.option("--clear", is_flag=True, help="Clear the transport faults instead.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_STATE_DIR_HELP,
)
def fault(
    system: str | None,
    kind: str | None,
    count: int | None,
    retry_after: int,
    no_retry_after: bool,
    status_code: int,
    hold_s: float,
    clear: bool,
    state_dir: Path | None,
) -> None:
    """Make one system's calls fail in transit, over whatever scenario runs.

    The fault applies at once, without a restart, and lasts until --clear, the
    end of --count, or the next scenario reset. One fault per system: a new one
    replaces the last.
    """
    sandbox = _sandbox(state_dir)
    try:
        if clear:
            pending = sandbox.clear_faults(system)
        elif system is None or kind is None:
            raise click.UsageError("give --system and --kind, or --clear")
        else:
            options: dict[str, object] = {
                "retry_after": None if no_retry_after else retry_after,
                "status": status_code,
                "hold_s": hold_s,
            }
            if count is not None:
                options["count"] = count
            pending = sandbox.fault(system, kind, **options)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    if not pending:
        click.echo("no transport faults")
    for name, item in pending.items():
        left = "until cleared" if item["count"] is None else f"{item['count']} left"
        click.echo(f"  {name:<13} {item['kind']:<10} {left}")


@cli.command(hidden=True)
@click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True
)
@click.option("--scenario", type=click.Choice(list(SCENARIOS)), default="healthy")
@click.option(
    "--parent",
    type=click.IntRange(min=1),
    default=None,
    help="Shut down once the process with this pid is no longer the parent.",
)
def serve(state_dir: Path, scenario: str, parent: int | None) -> None:
    """Run the sandbox servers in the foreground (spawned by ``start``)."""
    from ._server import serve as run_servers

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(run_servers(state_dir.resolve(), scenario, parent=parent))
