"""Run a runbook notebook headless and archive the executed copy as its record.

``run_notebook`` checks the parameters before any kernel starts, runs the notebook
with papermill's Python API, scrubs the executed notebook and writes it, with a
JSON sidecar, into the archive (see ``_records``). The executed notebook never
touches the disk unscrubbed: papermill writes it to an in-memory I/O handler
registered for a private scheme, so even after a failure (a cell raising, the
kernel dying, a timeout) the last state papermill saved is at hand.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import importlib.metadata
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._beforeimage import RECORDS_VARIABLE
from ._config import NAMED_ENVIRONMENT_VARIABLE, Environment, load_environment
from ._errors import ParameterError, RunError
from ._kernel import KernelWarmer
from ._objectrecords import (
    ObjectArchive,
    check_archive,
    is_object_archive,
    parse_archive,
    write_record,
)
from ._notebook import (
    ACTION_MIME,
    RECORD_ID_VARIABLE,
    REFERENCES_MIME,
    ParameterSpec,
    cell_timings,
    collect_outputs,
    collect_verdict,
    dump_notebook,
    failed_cell_index,
    find_project_root,
    join_streams,
    mark_stopped_cell,
    notebook_key,
    parse_notebook,
    read_parameters,
    resolve_notebook,
    runbook_name,
    started_cells,
)
from ._params import coerce_parameters
from ._records import (
    append_index,
    archive_dir,
    is_record_id,
    month_folder,
    new_record_id,
    record_folder,
    write_once,
)
from ._scratch import run_scratch_root
from ._scrub import Scrubber, scrub_tokens

if TYPE_CHECKING:  # nbformat costs ~1 s to import; runs import it lazily
    import nbformat

logger = logging.getLogger(__name__)

MEMORY_SCHEME = "opslib-memory://"
OPERATOR_VARIABLE = "RUNBOOK_OPERATOR"
SIDECAR_VERSION = 1
# The error value of a run interrupted before its first cell began.
INTERRUPTED_AT_START = "interrupted during kernel start-up, before the first cell ran"
_EVALUE_LIMIT = 500


@dataclass(frozen=True)
class RunRecord:
    """What ``run_notebook`` archived.

    Attributes:
        id: the record id, such as ``20261204T171501Z-api-down-INC-42-3fa9``.
        status: ``succeeded`` when the notebook ran to its end (whatever its
            verdict found), ``aborted`` when the person running it interrupted
            it (Ctrl-C, SIGINT), else ``failed`` (a cell raised, the kernel
            died, a timeout).
        record_path: the executed, scrubbed notebook (its ``s3://`` URL for
            an archive in object storage).
        sidecar_path: the JSON sidecar beside it.
        verdict: the notebook's last verdict, or None.
        error: ``{kind, ename, evalue, cell_index}`` for a failed run, else None.
        duration_s: seconds from the call to the end of the run.
        sidecar: the sidecar's content.
    """

    id: str
    status: str
    record_path: Path | str
    sidecar_path: Path | str
    verdict: dict[str, Any] | None
    error: dict[str, Any] | None
    duration_s: float
    sidecar: dict[str, Any]


class _MemoryHandler:
    """A papermill I/O handler that keeps the latest notebook written per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, str] = {}

    def read(self, path: str) -> str:
        with self._lock:
            if path not in self._latest:
                raise FileNotFoundError(path)
            return self._latest[path]

    def write(self, buf: str, path: str) -> None:
        with self._lock:
            self._latest[path] = buf

    def listdir(self, path: str) -> list[str]:
        raise NotImplementedError(f"{MEMORY_SCHEME} paths cannot be listed: {path}")

    def pretty_path(self, path: str) -> str:
        return path

    def pop(self, path: str) -> str | None:
        with self._lock:
            return self._latest.pop(path, None)


_MEMORY = _MemoryHandler()


def _memory_path() -> str:
    """Register the memory handler with papermill if needed; return a fresh path."""
    from papermill.iorw import papermill_io  # type: ignore[import-untyped]

    path = f"{MEMORY_SCHEME}{uuid.uuid4().hex}.ipynb"
    if papermill_io.get_handler(path) is not _MEMORY:
        papermill_io.register(MEMORY_SCHEME, _MEMORY)
    return path


def run_notebook(
    notebook: str | Path,
    *,
    parameters: Mapping[str, object] | None = None,
    raw: frozenset[str] = frozenset(),
    environment: str = "sandbox",
    records_dir: str | Path = "records",
    operator: str | None = None,
    timeout: float | None = 600,
    kernel_name: str | None = None,
    named_environment: bool = False,
    record_id: str | None = None,
) -> RunRecord:
    """Run a runbook headless and archive it as an incident record.

    Args:
        notebook: a runbook name (``api-down``) or a notebook path.
        parameters: values by name, from ``-p`` (text) and ``-f`` (YAML-typed).
        raw: the names in ``parameters`` whose values are command-line text.
        environment: the environment to run against; injected as the
            ``environment`` parameter when the notebook declares one.
        records_dir: the archive: a local folder, relative to the current
            directory, or ``s3://bucket/prefix`` (see ``_objectrecords``).
        operator: who runs it; default ``$RUNBOOK_OPERATOR``, else user@host. It
            is stored as given, so prefer a login name to an email address.
        timeout: seconds one cell may run (papermill's per-cell execution
            timeout, rounded up to whole seconds); None for no limit.
        kernel_name: the Jupyter kernel; default the notebook's own.
        named_environment: True when the caller named the environment
            explicitly (``--env``); the kernel then gets
            ``RUNBOOK_NAMED_ENVIRONMENT``, which the gate requires for production.
        record_id: an id the caller reserved earlier (``new_record_id``), so it
            could name the record before the run began; default a new one.

    Returns:
        The archived record. A run that failed is archived too and returned
        with status ``failed``; the caller decides the exit code.

    Raises:
        RunError: an unknown notebook, an unreadable parameters cell, a bad
            timeout, record id or archive folder, or a record that could not be
            written.
        ParameterError: a bad parameter; nothing was started or written.
        ConfigError: a broken environment; nothing was started or written.
    """
    started = _utcnow()
    request = check_run_request(
        notebook,
        parameters,
        raw=raw,
        environment=environment,
        records_dir=records_dir,
    )
    path, values, env = request.path, request.values, request.environment
    cell_timeout = _cell_timeout(timeout)
    _check_given_record_id(record_id)

    defaults = {name: spec.default for name, spec in request.specs.items()}
    effective = defaults | values
    target = prepare_target(records_dir, started)
    scrubber = _scrubber(env)
    # From here on, an interrupt leaves a record: the id is reserved.
    if record_id is None:
        record_id = new_record_id(started, runbook_name(path), _incident_id(effective))
    logger.info(
        "run started record_id=%s notebook=%s environment=%s", record_id, path, env.name
    )

    named = env.name if named_environment else None
    outcome: _Outcome | None = None
    try:
        with (
            _kernel_environment(named, _kernel_archive(records_dir), record_id),
            run_scratch_root(),
        ):
            outcome = _execute(path, values, cell_timeout, kernel_name)
    except KeyboardInterrupt:  # before the kernel was asked for, or once it ended
        if outcome is None:
            source = parse_notebook(path.read_text(encoding="utf-8"))
            outcome = source, _interrupted(INTERRUPTED_AT_START), True
        outcome = outcome[0], outcome[1], True
    nb, error, interrupted = outcome
    with _interrupts_held() as late:
        nb = _finish_notebook(nb, error, scrubber)
        name = runbook_name(path)
        run = _Run(record_id, path, name, env.name, started, effective, operator, error)
        record = _archive(run, nb, scrubber, target)
    if interrupted or late:
        raise RunInterrupted(record)
    return record


class RunInterrupted(KeyboardInterrupt):
    """A Ctrl-C (SIGINT) during a run, once its record id was reserved.

    The run is archived before this is raised, with the status ``aborted``;
    or, when the interrupt came only after the notebook had ended (while the
    kernel stopped or the record was written), whole, with the run's own
    status: the interrupt changed nothing then.

    Attributes:
        record: the archived record.
    """

    def __init__(self, record: RunRecord) -> None:
        super().__init__(f"run interrupted; archived as {record.id}")
        self.record = record

    def __repr__(self) -> str:
        return f"RunInterrupted(record_id={self.record.id!r})"


@dataclass(frozen=True)
class RunRequest:
    """A run that passed every check made before a kernel starts.

    Attributes:
        path: the notebook file.
        specs: the parameters its parameters cell declares.
        values: the given values, converted to their declared types (defaults
            are not included).
        environment: the environment to run against, loaded.
    """

    path: Path
    specs: Mapping[str, ParameterSpec]
    values: dict[str, object]
    environment: Environment


def check_run_request(
    notebook: str | Path,
    parameters: Mapping[str, object] | None = None,
    *,
    raw: frozenset[str] = frozenset(),
    environment: str = "sandbox",
    records_dir: str | Path = "records",
) -> RunRequest:
    """Check a run request the way ``run_notebook`` does before any kernel starts.

    Nothing is started or written: the notebook's parameters cell is read, the
    values are converted and checked against it, the environment is loaded and
    any record ids are looked up in the archive.

    Args:
        notebook: a runbook name (``api-down``) or a notebook path.
        parameters: values by name, from ``-p`` (text) and ``-f`` (YAML-typed).
        raw: the names in ``parameters`` whose values are command-line text.
        environment: the environment to run against.
        records_dir: the local archive folder, for ``record_ids``.

    Raises:
        RunError: an unknown notebook or an unreadable parameters cell.
        ParameterError: a bad parameter, naming it and the form expected.
        ConfigError: a broken environment.
    """
    path = resolve_notebook(str(notebook))
    specs = read_parameters(path)
    _check_object_archive(specs, records_dir)
    given = _parameters_with_environment(specs, dict(parameters or {}), environment)
    values = coerce_parameters(specs, given, raw=raw)
    _check_scrubbed_values(values)
    check_paired_parameters(runbook_name(path), specs, values)
    env = load_environment(environment)
    _check_record_ids(values, records_dir, env.name)
    return RunRequest(path, specs, values, env)


def _check_object_archive(
    specs: Mapping[str, ParameterSpec], records_dir: str | Path
) -> None:
    """Refuse an object-storage archive to a runbook that reads records.

    ``undo`` and ``post-incident-report`` read records (and before-images)
    from a local archive inside the kernel.

    Raises:
        RunError: naming ``--records`` and what to do instead.
    """
    if not is_object_archive(records_dir):
        return
    parse_archive(str(records_dir))
    readers = sorted({"record_id", "record_ids"} & set(specs))
    if readers:
        raise RunError(
            f"--records: got {str(records_dir)!r}, but this runbook reads records "
            f"({readers[0]}) from a local archive; expected a local folder: copy "
            "the records it needs from the bucket into one and give that folder"
        )


@contextlib.contextmanager
def _kernel_environment(
    named: str | None, archive: Path, record_id: str = ""
) -> Iterator[None]:
    """Variables the kernel inherits: the archive, the record's id, and the
    environment if named.

    A value left in the caller's shell never counts as naming the environment:
    the variable is removed unless this run named it. The variables are set on
    this process's environment while the kernel starts and runs (papermill may
    start its own kernel, which only inherits them), so two runs in threads of
    one process would see each other's values: run them in separate processes.
    """
    names = (NAMED_ENVIRONMENT_VARIABLE, RECORDS_VARIABLE, RECORD_ID_VARIABLE)
    saved = {k: os.environ.get(k) for k in names}
    os.environ[RECORDS_VARIABLE] = str(archive)
    if record_id:
        os.environ[RECORD_ID_VARIABLE] = record_id
    else:
        os.environ.pop(RECORD_ID_VARIABLE, None)
    if named:
        os.environ[NAMED_ENVIRONMENT_VARIABLE] = named
    else:
        os.environ.pop(NAMED_ENVIRONMENT_VARIABLE, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_given_record_id(record_id: str | None) -> None:
    if record_id is not None and not is_record_id(record_id):
        raise RunError(
            f"record_id: got {record_id!r}, expected an id as new_record_id makes "
            "it, such as '20261204T171501Z-api-down-INC-42-3fa9'"
        )


def _check_record_ids(
    values: Mapping[str, object], records_dir: str | Path, environment: str
) -> None:
    """Refuse record ids that name no record of this archive, before anything runs.

    Raises:
        ParameterError: naming ``record_ids`` and what was wrong.
    """
    ids = values.get("record_ids")
    if isinstance(ids, list) and ids:
        from ._report import load_report_records

        load_report_records(
            ids, records_dir=archive_dir(records_dir), environment=environment
        )


PAIRED_PARAMETERS: Mapping[str, Mapping[tuple[str, str], Mapping[str, str]]] = {
    "stripe": {
        ("operation", "refund"): {
            "charge": "a charge id (ch_...) or PaymentIntent id (pi_...)"
        },
        ("operation", "cancel"): {"subscription": "a subscription id (sub_...)"},
    },
    "security-breach": {
        ("step", "rotate-secret"): {
            "secret_name": "a Worker secret name such as JWT_SECRET"
        }
    },
}
"""Per runbook: (parameter, value) -> each parameter that value needs given, with
the form expected."""

EXCLUSIVE_PARAMETERS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "database": (("sql", "cleanup_test_accounts"),),
}
"""Per runbook: pairs of parameters of which at most one may be given."""


def _check_scrubbed_values(values: Mapping[str, object]) -> None:
    """Refuse values holding a token the record scrubber writes, such as
    ``<email:1f3a9c2e>``: pasted from a record, it would be written as it is."""
    problems = [
        f"{name}: holds {', '.join(sorted(set(tokens)))}, a value the records hide "
        "(an email pseudonym or a redacted secret); expected the real value: put "
        "it back in place of the token"
        for name, value in values.items()
        if (tokens := scrub_tokens(value))
    ]
    if problems:
        raise ParameterError(problems)


def check_paired_parameters(
    runbook: str, specs: Mapping[str, ParameterSpec], values: Mapping[str, object]
) -> None:
    """Refuse an operation without the parameters it needs, or two that exclude
    each other (``PAIRED_PARAMETERS``, ``EXCLUSIVE_PARAMETERS``).

    Raises:
        ParameterError: naming each missing or clashing parameter.
    """
    effective = {name: spec.default for name, spec in specs.items()} | dict(values)
    problems = []
    for (name, choice), needed in PAIRED_PARAMETERS.get(runbook, {}).items():
        if effective.get(name) != choice:
            continue
        problems += [
            f"{need}: empty, but {name} {choice!r} needs it; expected {form}"
            for need, form in needed.items()
            if need in specs and not effective.get(need)
        ]
    for first, second in EXCLUSIVE_PARAMETERS.get(runbook, ()):
        if effective.get(first) and effective.get(second):
            problems.append(
                f"{first}, {second}: both given, expected one of them: a run "
                "plans one write"
            )
    if problems:
        raise ParameterError(problems)


def _parameters_with_environment(
    specs: Mapping[str, ParameterSpec], given: dict[str, object], environment: str
) -> dict[str, object]:
    if "environment" not in specs:
        return given
    if given.get("environment", environment) != environment:
        raise ParameterError(
            [
                f"environment: got {given['environment']!r} as a parameter but "
                f"{environment!r} as the environment to run against — expected one "
                "environment; drop the parameter and use --env"
            ]
        )
    return given | {"environment": environment}


def _incident_id(values: Mapping[str, object]) -> str:
    incident_id = values.get("incident_id")
    return incident_id if isinstance(incident_id, str) else ""


def _cell_timeout(timeout: float | None) -> int | None:
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise RunError(
            f"timeout: got {timeout!r}, expected a positive number of seconds per "
            "cell, or None for no limit"
        )
    return math.ceil(timeout)


def prepare_target(
    records_dir: str | Path, started: datetime.datetime
) -> Path | ObjectArchive:
    """The local folder a record goes to, created; or the bucket, checked.

    Raises:
        RunError: when the folder cannot be created, or the bucket is not
            reachable or missing.
    """
    if not is_object_archive(records_dir):
        return prepare_folder(records_dir, started)
    archive = parse_archive(str(records_dir))
    check_archive(archive)
    return archive


def _kernel_archive(records_dir: str | Path) -> Path:
    """The local archive the kernel is told about (``RUNBOOK_RECORDS``).

    With an archive in object storage the kernel still gets a local one, the
    project's ``records/``: before-images hold live rows, unscrubbed, and stay
    on this machine rather than going to the bucket.
    """
    if is_object_archive(records_dir):
        return find_project_root().absolute() / "records"
    return archive_dir(records_dir).absolute()


def prepare_folder(records_dir: str | Path, started: datetime.datetime) -> Path:
    """Create the archive folder a record started at ``started`` goes to.

    Raises:
        RunError: when it cannot be created.
    """
    folder = record_folder(records_dir, started)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(
            f"records_dir: could not create {str(folder)!r} ({error}); expected a "
            "writable folder"
        ) from error
    return folder


# The notebook as last saved, the error, and whether Ctrl-C stopped the run.
_Outcome = tuple["nbformat.NotebookNode", dict[str, Any] | None, bool]


@contextlib.contextmanager
def _interrupts_held() -> Iterator[list[int]]:
    """Hold Ctrl-C while a kernel stops and a record is written; yield what came.

    A second Ctrl-C, or one just as the run ends, must not leave half a record;
    the caller reports the interrupt once the record is whole. Only the main
    thread can hold signals; elsewhere, and where SIGINT is ignored, nothing
    changes.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield held
        return
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


def _execute(
    path: Path,
    values: Mapping[str, object],
    timeout: int | None,
    kernel_name: str | None,
) -> _Outcome:
    """Run the notebook; return the last state saved, the error and a Ctrl-C flag."""
    source = path.read_text(encoding="utf-8")
    kernel = kernel_name or _kernel_name(source)
    warmer = KernelWarmer(kernel, find_project_root())
    memory_path = f"{MEMORY_SCHEME}unregistered"
    try:
        # Start the kernel first: registering the handler imports papermill (~1.5 s).
        warmer.start()
        memory_path = _memory_path()
        error, interrupted = _run_papermill(
            path, memory_path, values, timeout, kernel, warmer
        )
    except KeyboardInterrupt:  # while the kernel started or papermill was imported
        error, interrupted = _interrupted(""), True
    finally:
        with _interrupts_held() as late:
            warmer.shutdown()
            text = _MEMORY.pop(memory_path)
    interrupted = interrupted or bool(late)
    nb = parse_notebook(text if text else source)
    if error is not None and error["kind"] == "interrupted" and not started_cells(nb):
        error["evalue"] = INTERRUPTED_AT_START
    return nb, error, interrupted


def _kernel_name(source: str) -> str:
    """The notebook's own kernel, as papermill would pick it."""
    try:
        spec = json.loads(source).get("metadata", {}).get("kernelspec", {})
    except ValueError:
        spec = {}
    return str(spec.get("name") or "python3")


def _run_papermill(
    path: Path,
    output_path: str,
    values: Mapping[str, object],
    timeout: int | None,
    kernel_name: str,
    warmer: KernelWarmer,
) -> tuple[dict[str, Any] | None, bool]:
    # papermill imports while the warmer starts the kernel; then both meet.
    import papermill  # type: ignore[import-untyped]

    try:
        papermill.execute_notebook(
            str(path.absolute()),
            output_path,
            parameters=dict(values),
            kernel_name=kernel_name,
            progress_bar=sys.stderr.isatty(),  # a live bar for people, none in logs
            cwd=str(find_project_root()),
            execution_timeout=timeout,
            shutdown_kernel="immediate",
            km=warmer.manager(),
        )
    except KeyboardInterrupt:
        return _interrupted(""), True
    except Exception as exc:  # every failure is archived, then reported
        return _classify(exc), False
    return None, False


def _classify(exc: Exception) -> dict[str, Any]:
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError  # type: ignore[import-untyped]

    if isinstance(exc, PapermillExecutionError):
        return _error("cell-error", exc.ename, exc.evalue)
    kind = "runner-error"
    if isinstance(exc, DeadKernelError):
        kind = "kernel-died"
    elif isinstance(exc, (CellTimeoutError, TimeoutError)):
        kind = "timeout"
    elif isinstance(exc, NoSuchKernel):
        kind = "kernel-missing"
    return _error(kind, type(exc).__name__, str(exc))


def _interrupted(reason: str) -> dict[str, Any]:
    return _error("interrupted", "KeyboardInterrupt", reason)


def _error(kind: str, ename: str, evalue: str) -> dict[str, Any]:
    return {"kind": kind, "ename": ename, "evalue": evalue, "cell_index": None}


def _trimmed(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Shorten a long error value; only after scrubbing, so no secret is cut in two."""
    evalue = error["evalue"] if error else ""
    if error is None or len(evalue) <= _EVALUE_LIMIT:
        return error
    return {**error, "evalue": f"{evalue[:_EVALUE_LIMIT]}… ({len(evalue)} characters)"}


def _finish_notebook(
    nb: nbformat.NotebookNode, error: dict[str, Any] | None, scrubber: Scrubber
) -> nbformat.NotebookNode:
    """Mark a failure papermill did not mark, join streams, scrub, find the cell."""
    if error is not None and error["kind"] != "cell-error":
        mark_stopped_cell(nb, error)
    join_streams(nb)
    nb = scrubber.scrub_notebook(nb)
    if error is not None:
        error["cell_index"] = failed_cell_index(nb)
    return nb


@dataclass(frozen=True)
class _Run:
    id: str
    path: Path | None
    runbook: str
    environment: str
    started: datetime.datetime
    parameters: dict[str, object]
    operator: str | None
    error: dict[str, Any] | None
    source: str | None = None


def archive_notebook(
    nb: nbformat.NotebookNode,
    *,
    record_id: str,
    notebook: Path | None,
    runbook: str,
    environment: Environment,
    started: datetime.datetime,
    parameters: dict[str, object],
    operator: str | None,
    error: dict[str, Any] | None,
    records_dir: str | Path,
    source: str,
) -> RunRecord:
    """Scrub a notebook executed elsewhere (not by papermill) and archive it.

    The record has the shape of a headless run's, with ``source`` saying where
    the notebook was executed (``jupyterlab-gate`` for the gate widget).

    Raises:
        RunError: when the record cannot be written.
    """
    scrubber = _scrubber(environment)
    nb = scrubber.scrub_notebook(nb)
    if error is not None:
        error["cell_index"] = failed_cell_index(nb)
    run = _Run(
        record_id,
        notebook,
        runbook,
        environment.name,
        started,
        parameters,
        operator,
        error,
        source,
    )
    return _archive(run, nb, scrubber, prepare_target(records_dir, started))


def _scrubber(environment: Environment) -> Scrubber:
    scrubber = Scrubber.from_environment(extra_files=_dotenv_files())
    return scrubber.extended(environment.secrets)


def _archive(
    run: _Run,
    nb: nbformat.NotebookNode,
    scrubber: Scrubber,
    target: Path | ObjectArchive,
) -> RunRecord:
    """Write the record into a folder ``prepare_target`` made, or a bucket."""
    relative = f"{month_folder(run.started)}/{run.id}"
    sidecar = _sidecar(run, nb, scrubber, f"{relative}.ipynb")
    _stamp(nb, sidecar)
    sidecar_text = json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n"

    record_path: Path | str
    sidecar_path: Path | str
    if isinstance(target, ObjectArchive):
        record_path = target.url_of(f"{relative}.ipynb")
        sidecar_path = target.url_of(f"{relative}.json")
        write_record(
            target,
            (f"{relative}.ipynb", dump_notebook(nb)),
            (f"{relative}.json", sidecar_text),
        )
    else:
        record_path = target / f"{run.id}.ipynb"
        sidecar_path = target / f"{run.id}.json"
        write_once(record_path, dump_notebook(nb))
        write_once(sidecar_path, sidecar_text)
        _add_to_index(target.parent.parent, sidecar)
    _log_outcome(run)
    return RunRecord(
        id=run.id,
        status=sidecar["status"],
        record_path=record_path,
        sidecar_path=sidecar_path,
        verdict=sidecar["verdict"],
        error=sidecar["error"],
        duration_s=sidecar["duration_s"],
        sidecar=sidecar,
    )


def _add_to_index(root: Path, sidecar: Mapping[str, Any]) -> None:
    """Index the record; one that could not be indexed is still found by its id."""
    try:
        append_index(root, sidecar)
    except RunError as error:
        logger.warning("record not indexed record_id=%s error=%s", sidecar["id"], error)


def _stamp(nb: nbformat.NotebookNode, sidecar: Mapping[str, Any]) -> None:
    """Put the record's identity and outcome into the notebook's metadata."""
    nb.metadata["opslib"] = {
        "record_id": sidecar["id"],
        "verdict": sidecar["verdict"],
        "actions": sidecar["actions"],
        "environment": sidecar["environment"],
    }
    # papermill noted the private in-memory path; name where the record went
    nb.metadata.setdefault("papermill", {})["output_path"] = sidecar["record_path"]


def _log_outcome(run: _Run) -> None:
    if run.error is None:
        logger.info("run archived record_id=%s status=succeeded", run.id)
        return
    logger.warning(
        "run archived record_id=%s status=%s kind=%s cell_index=%s",
        run.id,
        _status(run.error),
        run.error["kind"],
        run.error["cell_index"],
    )


def _sidecar(
    run: _Run, nb: nbformat.NotebookNode, scrubber: Scrubber, record_path: str
) -> dict[str, Any]:
    finished = _utcnow()
    return {
        "sidecar_version": SIDECAR_VERSION,
        "id": run.id,
        "notebook": notebook_key(run.path) if run.path else None,
        "runbook": run.runbook,
        "environment": run.environment,
        "incident_id": scrubber.scrub_text(_incident_id(run.parameters)) or None,
        "parameters": scrubber.scrub_obj(run.parameters),
        "operator": scrubber.scrub_text(run.operator or _default_operator()),
        "started_at": _iso(run.started),
        "finished_at": _iso(finished),
        "duration_s": round((finished - run.started).total_seconds(), 3),
        "status": _status(run.error),
        "error": _trimmed(scrubber.scrub_obj(run.error)),
        "verdict": collect_verdict(nb),
        "actions": collect_outputs(nb, ACTION_MIME),
        "refers_to": _references(nb),
        "cells": cell_timings(nb),
        "opslib_version": _version("opslib"),
        "papermill_version": _version("papermill"),
        "record_path": record_path,
        **({"source": run.source} if run.source else {}),
    }


def _status(error: Mapping[str, Any] | None) -> str:
    """succeeded, aborted (interrupted by the person running it) or failed."""
    if error is None:
        return "succeeded"
    return "aborted" if error.get("kind") == "interrupted" else "failed"


def _references(nb: nbformat.NotebookNode) -> list[str]:
    """The record ids a report displayed as its references, in order, once each."""
    found = [
        str(record_id)
        for value in collect_outputs(nb, REFERENCES_MIME)
        if isinstance(value, dict)
        for record_id in value.get("refers_to") or []
    ]
    return list(dict.fromkeys(found))


def _dotenv_files() -> list[Path]:
    # The kernel runs in the checkout and could read its .env even when the
    # environment folder, whose .env the scrubber reads anyway, lies elsewhere.
    return [find_project_root() / ".env"]


def _default_operator() -> str:
    if os.environ.get(OPERATOR_VARIABLE):
        return os.environ[OPERATOR_VARIABLE]
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
