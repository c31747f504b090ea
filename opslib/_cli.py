"""The ``runbook`` command: run runbooks headless, read records, drill the sandbox.

Exit codes, for people and schedulers alike:

- 0: the runbook reached its verdict (whatever it found) and no gate refused;
- 1: the run failed (a cell raised, the kernel died, a timeout); it is archived;
- 2: bad usage or parameters; nothing ran and nothing was written;
- 3: a gated action was refused or failed at the gate;
- 4: with ``--fail-on-verdict``, the verdict is not ok;
- 130: interrupted (Ctrl-C, SIGINT); a run that had begun is archived with the
  status aborted, and a batch starts no further run.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._config import DEFAULT_ENVIRONMENT
from ._errors import ConfigError, OpslibError, RunError

if TYPE_CHECKING:
    from ._batch import BatchRun

EXIT_FAILED_RUN = 1
EXIT_USAGE = 2
EXIT_GATE = 3
EXIT_VERDICT = 4
EXIT_INTERRUPTED = 130
_records_option = click.option(
    "--records",
    "records_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Archive folder for records and the index "
    "(default: records/ at the project root; drills: records/drills/); for run, "
    "records and show also s3://BUCKET/PREFIX.",
)


def _archive(records_dir: str | None, *, drills: bool = False) -> str:
    """The archive folder: the one given, else the project's own."""
    if records_dir:
        return records_dir
    from ._notebook import find_project_root

    folder = find_project_root() / "records"
    return str(folder / "drills" if drills else folder)


def _local_archive(records_dir: str | None) -> Path:
    """The archive folder, for commands that need it on this machine."""
    archive = _archive(records_dir)
    if "://" in archive:
        _usage_exit(
            RunError(
                f"--records: got {archive!r}, expected a local folder for this "
                "command (s3://BUCKET/PREFIX serves run, records and show)"
            )
        )
    return Path(archive)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opslib", prog_name="runbook")
def main() -> None:
    """Executable runbooks for the manuscript platform.

    Runs a runbook notebook headless with incident parameters, archives the executed
    notebook as the incident record (secrets scrubbed) and prints its verdict.
    Environments: sandbox (default, local stand-in), staging, production (only when
    named with --env).
    """


@main.command()
@click.argument("notebooks", nargs=-1, metavar="NOTEBOOK...")
@click.option(
    "--all",
    "group",
    default=None,
    metavar="GROUP",
    help="Run every runbook of GROUP: incidents, or procedures (those that can "
    "run without a target).",
)
@click.option(
    "--jobs",
    default=None,
    type=click.IntRange(min=1),
    help="With several runbooks: the most runs under way at once "
    "(default: two per CPU core).",
)
@click.option(
    "-p",
    "--parameter",
    "pairs",
    multiple=True,
    nargs=2,
    metavar="NAME VALUE",
    help="Set a parameter (repeatable), like papermill -p; with several "
    "runbooks, for each one that declares it.",
)
@click.option(
    "-f",
    "--parameters-file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file with a flat mapping of parameters (repeatable); -p wins.",
)
@click.option(
    "--env",
    "environment",
    default=None,
    help="Environment to run against: a name under parameters/environments/ "
    "(default: sandbox). Changing production needs it named here.",
)
@_records_option
@click.option(
    "--timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds one cell may run before the run is stopped as failed.",
)
@click.option(
    "--operator",
    default=None,
    help="Who runs it, for the record (default: $RUNBOOK_OPERATOR or user@host).",
)
@click.option(
    "--fail-on-verdict",
    is_flag=True,
    help="Exit 4 when the verdict is not ok (for schedulers and alerting).",
)
def run(
    notebooks: tuple[str, ...],
    group: str | None,
    jobs: int | None,
    pairs: tuple[tuple[str, str], ...],
    files: tuple[str, ...],
    environment: str | None,
    records_dir: str | None,
    timeout: float,
    operator: str | None,
    fail_on_verdict: bool,
) -> None:
    """Run NOTEBOOK (a runbook name like api-down, or a path) headless.

    Parameters are checked against the notebook's parameters cell before any kernel
    starts. The executed notebook and a JSON sidecar go to RECORDS/YYYY/MM/.

    Several NOTEBOOKs, or --all incidents (or procedures), run side by side, at
    most --jobs at a time, each into a record of its own, and end with one table;
    the exit code is the worst of theirs. Every parameter is checked for every
    runbook first; -p and -f values go to each runbook that declares them; apply
    true and a confirm phrase are refused (gates are passed one runbook at a
    time); a runbook given no incident_id gets the batch's own, BATCH-<start
    time>.

    Exit codes: 0 ran to its verdict, 1 failed, 2 bad usage or parameters (nothing
    ran), 3 refused at the gate, 4 verdict not ok with --fail-on-verdict, 130
    interrupted (Ctrl-C): the run is archived as aborted; in a batch no further
    run starts, the runs under way are archived as aborted and the table shows
    the others as not started.
    """
    try:
        _run(
            notebooks,
            group,
            jobs,
            pairs,
            files,
            environment,
            records_dir,
            timeout,
            operator,
            fail_on_verdict,
        )
    except KeyboardInterrupt:  # a run under way is caught where it runs
        click.echo("interrupted, with no run under way", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _run(
    notebooks: tuple[str, ...],
    group: str | None,
    jobs: int | None,
    pairs: tuple[tuple[str, str], ...],
    files: tuple[str, ...],
    environment: str | None,
    records_dir: str | None,
    timeout: float,
    operator: str | None,
    fail_on_verdict: bool,
) -> None:
    from ._params import load_parameter_file

    archive = _archive(records_dir)
    try:
        _check_command_line(pairs, operator)
        parameters: dict[str, object] = {}
        for path in files:
            parameters.update(load_parameter_file(path))
        parameters.update(dict(pairs))
    except (ConfigError, RunError) as error:
        _usage_exit(error)
    options: dict[str, Any] = {
        "environment": environment or DEFAULT_ENVIRONMENT,
        "operator": operator,
        "timeout": timeout,
        "named_environment": environment is not None,
    }
    raw = frozenset(name for name, _ in pairs)
    if group is None and len(notebooks) == 1 and jobs is None:
        _run_and_exit(
            archive,
            fail_on_verdict,
            notebook=notebooks[0],
            parameters=parameters,
            raw=raw,
            **options,
        )
    _run_batch_and_exit(
        archive, fail_on_verdict, notebooks, group, jobs, parameters, raw, options
    )


def _run_batch_and_exit(
    archive: str,
    fail_on_verdict: bool,
    notebooks: tuple[str, ...],
    group: str | None,
    jobs: int | None,
    parameters: dict[str, object],
    raw: frozenset[str],
    options: dict[str, Any],
) -> None:
    """Run several notebooks side by side, print their table, exit with the worst."""
    import datetime

    from ._batch import (
        batch_exit_code,
        batch_table,
        default_jobs,
        plan_batch,
        run_batch,
        select_group,
    )

    try:
        if (group is None) == (not notebooks):
            raise ConfigError(
                "give one NOTEBOOK, several, or --all incidents (or procedures), "
                "not both"
            )
        _check_archive(archive)
        selected = select_group(group) if group else list(notebooks)
        planned = plan_batch(
            selected,
            parameters,
            raw=raw,
            environment=options["environment"],
            started=datetime.datetime.now(datetime.UTC),
            records_dir=archive,
        )
    except (ConfigError, RunError) as error:
        _usage_exit(error)
    jobs = jobs or default_jobs()
    click.echo(f"running {len(planned)} runbooks, at most {jobs} at a time")
    results = run_batch(
        planned,
        jobs=jobs,
        raw=raw,
        echo=click.echo,
        records_dir=archive,
        **options,
    )
    click.echo("\n" + batch_table(results))
    for result in results:
        if result.problem and result.started:
            click.echo(f"{result.runbook}: no record: {result.problem}", err=True)
    click.echo(f"records in {archive}")
    codes = [_batch_run_code(result, fail_on_verdict) for result in results]
    sys.exit(batch_exit_code(codes))


def _batch_run_code(result: BatchRun, fail_on_verdict: bool) -> int:
    if result.interrupted:
        return EXIT_INTERRUPTED
    if result.record is None:
        return EXIT_FAILED_RUN
    return _exit_code(result.record.sidecar, fail_on_verdict)


def _run_and_exit(archive: str, fail_on_verdict: bool, **kwargs: Any) -> None:
    """Run a notebook into the archive, print its verdict, exit with its code."""
    from ._runner import RunInterrupted, run_notebook

    try:
        record = run_notebook(records_dir=archive, **kwargs)
    except (ConfigError, RunError) as error:
        _usage_exit(error)
    except RunInterrupted as stopped:
        record = stopped.record
        _print_record(record.sidecar, archive)
        if record.status == "aborted":
            click.echo("interrupted: the run was stopped and archived", err=True)
            sys.exit(EXIT_INTERRUPTED)
        # the notebook had ended: its record is whole and its outcome stands
        click.echo(
            "interrupted after the run ended: that changed nothing; the record "
            f"stands as {record.status}",
            err=True,
        )
        sys.exit(_exit_code(record.sidecar, fail_on_verdict))
    _print_record(record.sidecar, archive)
    sys.exit(_exit_code(record.sidecar, fail_on_verdict))


@main.command()
@click.argument("record_id")
@click.option(
    "--env",
    "environment",
    default=None,
    help="The record's environment, named (needed to change production); "
    "default: the environment the record names.",
)
@click.option(
    "--apply", "apply", is_flag=True, help="Apply the undo (default: dry run)."
)
@click.option("--confirm", default="", help="The confirm phrase the undo plan prints.")
@_records_option
@click.option(
    "--operator",
    default=None,
    help="Who runs it, for the record (default: $RUNBOOK_OPERATOR or user@host).",
)
def undo(
    record_id: str,
    environment: str | None,
    apply: bool,
    confirm: str,
    records_dir: str | None,
    operator: str | None,
) -> None:
    """Undo the action record RECORD_ID applied, from its before-image.

    Runs the `undo` procedure: a dry run that prints the restore plan and its
    confirm phrase unless --apply and --confirm PHRASE are given. The undo is
    archived as a record of its own.
    """
    from ._records import load_record

    archive = _archive(records_dir)
    try:
        sidecar = load_record(archive, record_id)
    except RunError as error:
        _usage_exit(error)
    _run_and_exit(
        archive,
        False,
        notebook="undo",
        parameters={
            "record_id": str(sidecar["id"]),
            "apply": apply,
            "confirm": confirm,
        },
        environment=environment or str(sidecar.get("environment")),
        operator=operator,
        named_environment=environment is not None,
    )


@main.command()
@_records_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--runbook",
    "--notebook",
    "runbook_name",
    default=None,
    help="Only this runbook (api-down...) or notebook path.",
)
@click.option("--env", "environment", default=None, help="Only this environment.")
@click.option(
    "--status",
    default=None,
    help="Only runs that succeeded, failed or were aborted, or verdicts ok, warn, "
    "fail, unknown, manual.",
)
@click.option("--cause", default=None, help="Only verdicts naming this cause.")
@click.option("--incident", "incident_id", default=None, help="Only this incident id.")
@click.option(
    "--since", default=None, help="Only records started on or after this ISO date."
)
@click.option(
    "--until", default=None, help="Only records started on or before this ISO date."
)
@click.option(
    "--words",
    default=None,
    help="Only records whose findings hold all these words (separated by spaces; "
    "each is searched as text, quotes and symbols included).",
)
def records(records_dir: str | None, limit: int, **filters: str | None) -> None:
    """List records, newest first, filtered by any of the options."""
    from ._objectrecords import is_object_archive
    from ._recordquery import OPTION_LABELS, RecordQuery
    from ._records import archive_dir, search_records

    archive = _archive(records_dir)
    query = RecordQuery(runbook=filters.pop("runbook_name"), **filters)
    filtered = not query.is_empty()
    try:
        root = archive if is_object_archive(archive) else archive_dir(archive)
        rows = search_records(
            archive, limit, query, labels=OPTION_LABELS, check_names=True
        )
    except (ConfigError, RunError) as error:
        _usage_exit(error)
    if not rows:
        click.echo(
            f"no records in {root} match" if filtered else f"no records in {root}"
        )
        return
    for row in rows:
        shown = {key: row.get(key) or "-" for key in row}
        click.echo(
            f"{row.get('id')}  {shown['status']:<9} {shown['environment']:<10} "
            f"{shown['verdict_status']:<7} {shown['cause']:<20} {row.get('gate') or ''}"
        )


@main.command()
@_records_option
def reindex(records_dir: str | None) -> None:
    """Rebuild the archive's index from the records' sidecars.

    Also migrates an archive indexed by index.jsonl, and replaces a damaged
    index (kept aside under another name). The records are not touched.
    """
    from ._index import rebuild
    from ._records import archive_dir

    root = archive_dir(_local_archive(records_dir))
    if not root.is_dir():
        _usage_exit(
            RunError(f"--records: got {str(root)!r}, expected an archive folder")
        )
    try:
        report = rebuild(root)
    except RunError as error:
        _usage_exit(error)
    click.echo("\n".join(report.lines(root)))


@main.command()
@_records_option
@click.option(
    "--older-than",
    default=None,
    metavar="AGE",
    help="Records started longer ago than AGE (days like 90d; or 12h, 30m) may go.",
)
@click.option(
    "--keep",
    default=None,
    type=click.IntRange(min=1),
    help="The N newest records of each notebook stay.",
)
@click.option("--apply", "apply", is_flag=True, help="Remove them (default: dry run).")
@click.option("--confirm", default="", help="The confirm phrase the dry run prints.")
@click.option(
    "--operator",
    default=None,
    help="Who prunes, for the prune log (default: $RUNBOOK_OPERATOR or user@host).",
)
def prune(
    records_dir: str | None,
    older_than: str | None,
    keep: int | None,
    apply: bool,
    confirm: str,
    operator: str | None,
) -> None:
    """Remove old records: a dry run that lists them, unless --apply and --confirm.

    A post-incident report and the records it refers to go or stay together:
    the report goes only when every record it refers to goes too, otherwise
    the report and all those records stay. Unreadable records stay. Both
    rules together remove only records both let go.
    """
    import shlex

    from ._prune import apply_prune, plan_prune

    archive = _archive(records_dir)
    try:
        age = _age_option(older_than)
        plan = plan_prune(archive, older_than=age, keep=keep)
    except (ConfigError, RunError) as error:
        _usage_exit(error)
    click.echo("\n".join(plan.lines()))
    result = apply_prune(
        plan,
        apply=apply,
        confirm=confirm,
        operator=operator,
    )
    click.echo(f"{result.outcome}: {result.detail}")
    if result.outcome == "dry-run":
        rules = f"--older-than {older_than} " if older_than else ""
        rules += f"--keep {keep} " if keep else ""
        click.echo(
            f"to remove them: runbook prune --records {shlex.quote(str(plan.archive))} "
            f"{rules}--apply --confirm {shlex.quote(plan.confirm_phrase)}"
        )
    sys.exit(EXIT_GATE if result.outcome == "refused" else 0)


def _age_option(text: str | None) -> datetime.timedelta | None:
    from ._prune import AGE_FORM, MAX_AGE
    from ._time import parse_duration

    if text is None:
        return None
    try:
        age = parse_duration(text)
    except (ValueError, OverflowError):
        age = None  # OverflowError: more days than a timedelta holds
    if age is None or age > MAX_AGE:
        raise ConfigError(f"--older-than: got {text!r}, expected {AGE_FORM}")
    return age


@main.command()
@click.argument("record_id")
@_records_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print the whole sidecar as JSON."
)
def show(record_id: str, records_dir: str | None, as_json: bool) -> None:
    """Print the verdict of record RECORD_ID (a unique prefix is enough)."""
    import json

    from ._records import format_verdict, load_record

    try:
        sidecar = load_record(_archive(records_dir), record_id)
    except RunError as error:
        _usage_exit(error)
    click.echo(json.dumps(sidecar, indent=2) if as_json else format_verdict(sidecar))


@main.command(name="list")
def list_runbooks() -> None:
    """List the runbooks and the parameters each one takes."""
    from ._notebook import (
        find_notebooks_dir,
        list_notebooks,
        read_parameters,
        runbook_name,
    )

    for path in list_notebooks():
        click.echo(f"{runbook_name(path)}  ({path.relative_to(find_notebooks_dir())})")
        for spec in read_parameters(path).values():
            click.echo(
                f"    {spec.name}: {spec.type_name} = {spec.default!r}  # {spec.help}"
            )


@main.command()
@click.argument("scenario", required=False)
@click.option("--all", "run_all", is_flag=True, help="Drill every scenario in turn.")
@_records_option
def drill(scenario: str | None, run_all: bool, records_dir: str | None) -> None:
    """Inject SCENARIO's fault into a fresh sandbox, run its runbook, score the verdict.

    Prints PASS or FAIL per scenario with the time to verdict; exits 1 if any failed.
    The drill's sandbox uses free ports in a temporary folder, so it never disturbs a
    sandbox you started yourself.
    """
    from .sandbox import SCENARIOS

    if run_all == bool(scenario):
        _usage_exit(
            ConfigError(
                "give one SCENARIO or --all; scenarios: " + ", ".join(SCENARIOS)
            )
        )
    names = list(SCENARIOS) if run_all else [str(scenario)]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        _usage_exit(
            ConfigError(
                f"scenario: got {unknown[0]!r}, expected one of: "
                + ", ".join(SCENARIOS)
            )
        )
    from ._drill import format_table, run_drills

    archive = _archive(records_dir, drills=True)
    results = run_drills(names, records_dir=archive, echo=click.echo)
    failed = [r for r in results if not r.passed]
    click.echo("\n" + format_table(results) + "\n")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


@main.command(name="serve-alerts")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address to listen on; any other is refused (put a reverse "
    "proxy or tunnel in front).",
)
@click.option(
    "--port",
    default=8780,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one (printed at start).",
)
@click.option(
    "--env",
    "environment",
    default=None,
    help="Environment the runs read (default: sandbox). Runs never apply anything.",
)
@_records_option
@click.option(
    "--max-runs",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Runs going at once; more alerts get 429 with Retry-After.",
)
@click.option(
    "--duplicate-window",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a repeat of the same alert is answered 'duplicate'.",
)
@click.option(
    "--platform-delay",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a checkout run waits for the platform's own webhook handler.",
)
@click.option(
    "--timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds one cell of a run may take.",
)
def serve_alerts(
    host: str,
    port: int,
    environment: str | None,
    records_dir: str | None,
    max_runs: int,
    duplicate_window: float,
    platform_delay: float,
    timeout: float,
) -> None:
    """Receive UptimeRobot alerts and Stripe events; run the matching runbook.

    Each accepted alert starts a dry run (apply is always off) in the background
    and is answered 202 with the record id at once. Secrets come from
    RUNBOOK_ALERTS_SECRET (UptimeRobot: header X-Runbook-Alert-Secret or
    /uptimerobot/SECRET) and RUNBOOK_ALERTS_STRIPE_SECRET (the Stripe endpoint's
    signing secret), from the environment or the project's .env.
    """
    import logging

    from ._alertserver import (
        AlertReceiver,
        AlertServer,
        ReceiverSettings,
        load_alert_secrets,
        serve_alerts as serve,
    )
    from ._config import load_environment
    from ._records import archive_dir

    try:
        secrets = load_alert_secrets()
        settings = ReceiverSettings(
            environment=load_environment(environment or DEFAULT_ENVIRONMENT),
            records_dir=archive_dir(_archive(records_dir)),
            max_runs=max_runs,
            duplicate_window_s=duplicate_window,
            platform_delay_s=platform_delay,
            timeout_s=timeout,
        )
        server = AlertServer(host, port, AlertReceiver(settings, secrets))
    except (ConfigError, RunError) as error:
        _usage_exit(error)
    except OSError as error:
        _usage_exit(
            ConfigError(f"--host/--port: cannot listen on {host}:{port} ({error})")
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    serve(server, echo=lambda line: click.echo(line, err=False))


@main.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The sandbox's folder [default: <project>/.sandbox]; a sandbox already "
    "running there is used and left running.",
)
@click.option(
    "--scenario",
    default="healthy",
    show_default=True,
    help="Scenario of a sandbox started here (see `runbook sandbox start --help`).",
)
@click.option(
    "--any-ports", is_flag=True, help="Start the sandbox on free loopback ports."
)
@_records_option
@click.option(
    "--port",
    default=8888,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="JupyterLab's port on 127.0.0.1 (used as given or not at all).",
)
@click.option(
    "--browser/--no-browser", default=True, help="Open JupyterLab in a browser."
)
@click.option(
    "--allow-root",
    is_flag=True,
    help="Let JupyterLab run as root (in a container); it refuses otherwise.",
)
def lab(
    state_dir: Path | None,
    scenario: str,
    any_ports: bool,
    records_dir: str | None,
    port: int,
    browser: bool,
    allow_root: bool,
) -> None:
    """Walk the runbooks in JupyterLab against the sandbox.

    Starts the sandbox unless one runs in --state-dir, sets RUNBOOK_ENVIRONMENTS
    and RUNBOOK_RECORDS for the notebooks, and runs JupyterLab on 127.0.0.1 with
    the notebooks folder. Ctrl-C stops JupyterLab, its kernels and a sandbox
    started here. Every click on a gate widget is archived in RECORDS. JupyterLab
    takes its token from $JUPYTER_TOKEN, else makes one and prints the URL.
    """
    from ._lab import lab_on_sandbox

    try:
        code = lab_on_sandbox(
            state_dir=state_dir,
            scenario=scenario,
            any_ports=any_ports,
            records_dir=_local_archive(records_dir),
            port=port,
            open_browser=browser,
            allow_root=allow_root,
            say=click.echo,
        )
    except (ConfigError, RunError) as error:
        _usage_exit(error)
    sys.exit(code)


def _add_sandbox_commands() -> None:
    from .sandbox._cli import cli as sandbox_cli

    main.add_command(sandbox_cli)


def _check_archive(records_dir: str) -> None:
    """Refuse an archive no run of a batch could write to, before any run starts."""
    from ._objectrecords import check_archive, is_object_archive, parse_archive
    from ._records import archive_dir

    if is_object_archive(records_dir):
        check_archive(parse_archive(records_dir))
        return
    archive_dir(records_dir)  # another URL is refused; click refuses a file


def _check_command_line(
    pairs: tuple[tuple[str, str], ...], operator: str | None
) -> None:
    from ._errors import ParameterError
    from ._params import check_text

    names = [name for name, _ in pairs]
    problems = [
        f"{name}: given {names.count(name)} times with -p — expected once"
        for name in dict.fromkeys(names)
        if names.count(name) > 1
    ]
    if operator is not None and (problem := check_text(operator)):
        problems.append(f"--operator: got {operator!r} — expected {problem}")
    if problems:
        raise ParameterError(problems)


def _print_record(sidecar: dict[str, Any], records_dir: str) -> None:
    from ._records import format_verdict

    click.echo(format_verdict(sidecar))
    relative = str(sidecar.get("record_path"))
    if records_dir.startswith("s3://"):
        click.echo(f"record file: {records_dir.rstrip('/')}/{relative}")
        return
    click.echo(f"record file: {Path(records_dir) / relative}")


def _exit_code(sidecar: dict[str, Any], fail_on_verdict: bool) -> int:
    if sidecar.get("status") == "aborted":
        return EXIT_INTERRUPTED
    if sidecar.get("status") != "succeeded":
        return EXIT_FAILED_RUN
    outcomes = [
        a.get("outcome")
        for a in sidecar.get("actions") or []
        if a.get("kind") == "result"
    ]
    if any(o in ("refused", "failed") for o in outcomes):
        return EXIT_GATE
    verdict = sidecar.get("verdict") or {}
    asked = (sidecar.get("parameters") or {}).get("apply") is True
    if asked and "applied" not in outcomes and verdict.get("status") != "ok":
        # Apply was asked, nothing was applied, and the runbook does not call
        # that fine (no plan could be made, a guard stopped it).
        return EXIT_GATE
    if fail_on_verdict and verdict.get("status") != "ok":
        return EXIT_VERDICT
    return 0


def _usage_exit(error: OpslibError) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(EXIT_USAGE)


@main.command()
@_records_option
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the pages (default: <records>-site beside the archive).",
)
def site(records_dir: str | None, out_dir: str | None) -> None:
    """Write the archive as static HTML: index.html and one page per record.

    The pages open from file:// with no server and load nothing from elsewhere.
    A rebuild renders only records without a page and rewrites only what changed.
    """
    from ._site import build_site

    try:
        report = build_site(_archive(records_dir), out_dir)
    except RunError as error:
        _usage_exit(error)
    click.echo("\n".join(report.lines()))
    if report.unreadable:
        sys.exit(EXIT_FAILED_RUN)


_add_sandbox_commands()


def entry() -> None:
    """The ``runbook`` executable: the command, then an exit Ctrl-C cannot change.

    Once the command has printed its outcome and chosen its exit code, a Ctrl-C
    while the interpreter shuts down would still end the process as
    interrupted (130), contradicting the record just printed; from then on
    SIGINT is ignored.
    """
    import signal

    try:
        main()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    entry()
