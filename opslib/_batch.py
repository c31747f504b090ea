"""Run several runbooks at once: ``runbook run A B C`` and ``runbook run --all GROUP``.

Every run is a complete ``run_notebook`` run with its own kernel and its own record;
a batch only adds how they are chosen, checked and scheduled:

- the parameters of every runbook are checked before any kernel starts, so a bad
  value stops the whole batch with nothing run or written;
- a ``-p`` parameter goes to every runbook that declares it; a name that none of
  them declares is refused as a typo would be;
- no gate is passed in a batch (``apply`` true and a ``confirm`` phrase are
  refused; false and empty are fine): a confirm phrase names one target in one
  runbook;
- a runbook that declares ``incident_id`` and is given none gets the batch's id,
  ``BATCH-<start time UTC>``: it names the batch, not an incident from the pager,
  and the records of one batch share it;
- at most ``jobs`` runs are under way at a time, each in a worker process forked
  from a fresh fork server that imported papermill and the runner once (never
  from this process: a process that already ran kernels holds ZeroMQ sockets and
  threads a forked child cannot use, and such a child hangs), and each on a
  kernel forked from a template process that imported IPython, opslib, pandas
  and matplotlib (``_kernelforks``): the batch pays for those imports once, where
  runs one by one pay for them every time. A worker takes this process's
  environment and working folder as they are when the batch starts;
- Ctrl-C (SIGINT) stops the batch: no further run starts, the runs under way
  are interrupted and archived as aborted, and the table still comes, the runs
  that never started shown as such. Each worker sits in a process group of its
  own, so a terminal's Ctrl-C reaches this process alone, which passes it on to
  each worker once: a run interrupted twice could be stopped while it archives.

``--all procedures`` leaves out the procedures that cannot run blind (see
``NOT_BLIND``): they need a target that only the operator can name.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed, wait
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ._errors import OpslibError, ParameterError, RunError
from ._notebook import (
    find_notebooks_dir,
    read_parameters,
    resolve_notebook,
    runbook_name,
)
from ._runner import RunInterrupted, RunRecord, check_run_request, run_notebook
from ._table import render_table

GROUPS = ("incidents", "procedures")
# Procedures that need something only the operator can name, so --all leaves them out.
NOT_BLIND = {
    "undo": "needs record_id, the record whose action to undo",
    "post-incident-report": "needs record_ids, the records of one incident",
    "deploy-verify": "belongs to one deploy and watches it for 15 minutes",
}
# Parameters a batch refuses when set: a gate is passed one runbook at a time.
GATE_PARAMETERS = ("apply", "confirm")
BATCH_ID_PREFIX = "BATCH-"
# Exit codes of single runs, from best to worst (see _cli): ok, verdict, gate,
# failed, interrupted.
_EXIT_RANK = (0, 4, 3, 1, 130)
NOT_STARTED = "not started"


@dataclass(frozen=True)
class BatchRun:
    """One runbook of a batch and how it ended.

    Attributes:
        runbook: the runbook's name.
        record: the archived record, or None when no record could be written.
        problem: why there is no record (the runner's error), else "".
        seconds: wall time of the run.
        interrupted: True when Ctrl-C stopped it (its record is aborted) or
            kept it from starting (it has no record).
    """

    runbook: str
    record: RunRecord | None
    problem: str
    seconds: float
    interrupted: bool = False

    @property
    def started(self) -> bool:
        """False for a run that Ctrl-C kept from starting."""
        return self.record is not None or self.problem != NOT_STARTED


def default_jobs() -> int:
    """Runs under way at once: two per core, since runs mostly wait on the systems."""
    return max(2, 2 * (os.cpu_count() or 1))


def select_group(group: str) -> list[Path]:
    """The notebooks ``--all GROUP`` runs: every incident, or the blind-safe procedures.

    Raises:
        ParameterError: for a group other than incidents or procedures.
    """
    if group not in GROUPS:
        raise ParameterError(
            [f"--all: got {group!r} — expected one of: {', '.join(GROUPS)}"]
        )
    found = sorted((find_notebooks_dir() / group).glob("*.ipynb"))
    return [path for path in found if runbook_name(path) not in NOT_BLIND]


def batch_id(started: datetime.datetime) -> str:
    """The incident id runs of a batch get when none was given."""
    return BATCH_ID_PREFIX + started.strftime("%Y%m%dT%H%M%SZ")


def plan_batch(
    notebooks: Sequence[str | Path],
    parameters: Mapping[str, object],
    *,
    raw: frozenset[str],
    environment: str,
    started: datetime.datetime,
    records_dir: str | Path = "records",
) -> list[tuple[Path, dict[str, object]]]:
    """Each notebook with the parameters it will get, all checked before any run.

    Every run is checked by ``check_run_request``, the checks ``run_notebook``
    makes before a kernel starts; a batch adds its own: no gate, no name that
    no runbook declares, no runbook named twice.

    Raises:
        RunError: an unknown notebook.
        ConfigError: a broken environment.
        ParameterError: every problem at once: a gate parameter, a name no
            notebook declares, a notebook named twice, a bad value or an archive
            a runbook cannot read (named with the runbook it was checked for).
    """
    paths = [resolve_notebook(str(notebook)) for notebook in notebooks]
    specs = {path: read_parameters(path) for path in paths}
    names = [runbook_name(path) for path in paths]
    problems = [
        f"runbooks: {name!r} named {names.count(name)} times — expected once"
        for name in dict.fromkeys(names)
        if names.count(name) > 1
    ]
    declared = {name for spec in specs.values() for name in spec}
    problems += [
        f"{name}: no runbook of this batch ({', '.join(names)}) declares it — "
        "expected a parameter of at least one of them"
        for name in parameters
        if name not in declared
    ]
    planned: list[tuple[Path, dict[str, object]]] = []
    for path in paths:
        spec = specs[path]
        given = {name: value for name, value in parameters.items() if name in spec}
        if "incident_id" in spec and "incident_id" not in given:
            given["incident_id"] = batch_id(started)
        try:
            request = check_run_request(
                path,
                given,
                raw=raw,
                environment=environment,
                records_dir=records_dir,
            )
            problems += _gate_problems(request.values)
        except ParameterError as error:
            problems += [f"{runbook_name(path)}: {p}" for p in error.problems]
        except RunError as error:
            problems.append(f"{runbook_name(path)}: {error}")
        planned.append((path, given))
    if problems:
        raise ParameterError(list(dict.fromkeys(problems)))
    return planned


def _gate_problems(values: Mapping[str, object]) -> list[str]:
    """A gate asked for: apply true or a confirm phrase (false and empty are fine)."""
    return [
        f"{name}: got {values[name]!r} for a batch run — expected no gate in a "
        "batch; run the runbook alone to apply its action"
        for name in GATE_PARAMETERS
        if values.get(name)
    ]


def run_batch(
    planned: Sequence[tuple[Path, Mapping[str, object]]],
    *,
    jobs: int,
    raw: frozenset[str],
    echo: Callable[[str], None] = print,
    **run_options: Any,
) -> list[BatchRun]:
    """Run the planned notebooks, at most ``jobs`` at a time; results in plan order.

    Args:
        planned: what ``plan_batch`` returned.
        jobs: the most runs under way at once (at least 1).
        raw: the parameter names given as command-line text.
        echo: called with one line as each run ends.
        run_options: passed to ``run_notebook`` for every run (environment,
            records_dir, operator, timeout, named_environment).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_WORKER_PRELOAD))
    results: dict[int, BatchRun] = {}
    # A flag in shared memory, not an Event: Event.set() waits for every process
    # that ever waited on it, and hangs for good on a worker that has exited.
    stop = context.RawValue("b", 0)
    with _sigterm_as_interrupt():
        _run_pool(planned, jobs, raw, echo, run_options, context, stop, results)
    return [
        results.get(index) or _not_started(path)
        for index, (path, _) in enumerate(planned)
    ]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the batch as Ctrl-C does: the runs under way archive as
    aborted, the table comes, and the pool's processes and semaphores are
    released rather than left to die with a killed process. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run_pool(
    planned: Sequence[tuple[Path, Mapping[str, object]]],
    jobs: int,
    raw: frozenset[str],
    echo: Callable[[str], None],
    run_options: dict[str, Any],
    context: Any,
    stop: Any,
    results: dict[int, BatchRun],
) -> None:
    from ._kernelforks import KernelTemplate

    try:
        with KernelTemplate() as template:
            template.wait_ready()
            from ._kernelforks import template_socket

            worker_setup = (template_socket(), dict(os.environ), os.getcwd(), stop)
            with ProcessPoolExecutor(
                max_workers=max(1, jobs),
                mp_context=context,
                initializer=_start_worker,
                initargs=worker_setup,
            ) as pool:
                futures: dict[Future[BatchRun], int] = {
                    pool.submit(_run_one, path, dict(given), raw, run_options): index
                    for index, (path, given) in enumerate(planned)
                }
                try:
                    for future in as_completed(futures):
                        _collect(future, futures, planned, results, echo)
                except KeyboardInterrupt:
                    echo(
                        "interrupted: no further run starts; stopping the runs under way"
                    )
                    stop.value = 1  # each worker interrupts its run, once
                    for future in futures:
                        future.cancel()  # those not handed to a worker yet
                    _drain(futures, planned, results, echo)
    except KeyboardInterrupt:
        stop.value = 1
        if len(results) == len(planned):  # while the pool or template closed
            echo("interrupted after every run ended: that changed nothing")
        else:  # before any run was handed out: none starts
            echo("interrupted: no run starts")


def _collect(
    future: Future[BatchRun],
    futures: Mapping[Future[BatchRun], int],
    planned: Sequence[tuple[Path, Mapping[str, object]]],
    results: dict[int, BatchRun],
    echo: Callable[[str], None],
) -> None:
    index = futures[future]
    if future.cancelled():
        result = _not_started(planned[index][0])
    else:
        try:
            result = future.result()
        except Exception as error:  # a worker that died leaves no record
            problem = f"stopped without a record ({type(error).__name__}: {error})"
            result = BatchRun(runbook_name(planned[index][0]), None, problem, 0)
    results[index] = result
    echo(_progress_line(result))


def _drain(
    futures: Mapping[Future[BatchRun], int],
    planned: Sequence[tuple[Path, Mapping[str, object]]],
    results: dict[int, BatchRun],
    echo: Callable[[str], None],
) -> None:
    """Wait for the interrupted runs to archive; a further Ctrl-C changes nothing."""
    while True:
        try:
            wait(futures)
            break
        except KeyboardInterrupt:
            echo("interrupted again: waiting for the runs under way to archive")
    for future, index in futures.items():
        if index not in results:
            _collect(future, futures, planned, results, echo)


def _not_started(path: Path) -> BatchRun:
    return BatchRun(runbook_name(path), None, NOT_STARTED, 0, interrupted=True)


# What the fork server imports once, before it forks any worker.
_WORKER_PRELOAD = ("papermill", "opslib._runner")


# In a worker: the batch's stop, set on Ctrl-C, and a lock held while a run is
# under way; see _start_worker.
_stop: Any = None
_running = threading.Lock()
# Seconds between a worker's looks at the batch's stop flag and whether the
# batch process is still there.
_STOP_CHECK_S = 0.1


def _start_worker(
    socket: str | None, environ: dict[str, str], cwd: str, stop: Any
) -> None:
    """Give a new worker the batch's environment, folder, kernel template and stop.

    The worker leaves the terminal's process group, so a Ctrl-C there reaches
    the batch alone; a thread waits for the batch's stop, or for the batch to be
    gone (killed), and then interrupts the worker's run, once. Between runs the
    worker ignores SIGINT. A worker whose batch is gone ends once its run is
    archived: it would otherwise wait for work forever, since it holds both
    ends of the pipes the pool feeds it through.
    """
    global _stop
    from . import _kernelforks

    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    _kernelforks.use_template(socket)
    _stop = stop
    threading.Thread(
        target=_interrupt_on_stop, name="opslib-batch-stop", daemon=True
    ).start()


def _interrupt_on_stop() -> None:
    while not _stop.value and not _is_orphaned():
        time.sleep(_STOP_CHECK_S)
    os.kill(os.getpid(), signal.SIGINT)
    if _is_orphaned():
        with _running:  # the run under way, if any, is archived
            os._exit(1)


def _is_orphaned() -> bool:
    """True once the batch process is gone (a worker's parent is the fork server,
    which outlives it: the batch is the process that asked for the worker)."""
    batch = multiprocessing.parent_process()
    return batch is not None and not batch.is_alive()


def _is_stopping() -> bool:
    return _stop is not None and (bool(_stop.value) or _is_orphaned())


def _run_one(
    path: Path, given: dict[str, object], raw: frozenset[str], options: dict[str, Any]
) -> BatchRun:
    """One run in a worker; one the batch's stop reaches before it began never starts."""
    started = time.perf_counter()
    name = runbook_name(path)
    record: RunRecord | None = None
    try:
        with _running:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                if _is_stopping():
                    raise KeyboardInterrupt
                record = run_notebook(path, parameters=given, raw=raw, **options)
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
    except RunInterrupted as stopped:
        return BatchRun(name, stopped.record, "", _since(started), interrupted=True)
    except KeyboardInterrupt:
        if record is not None:  # it ended just as the batch stopped
            return BatchRun(name, record, "", _since(started), interrupted=True)
        return _not_started(path)  # before its record id was given out
    except OpslibError as error:  # checked before; a record that could not be written
        return BatchRun(name, None, str(error), _since(started))
    return BatchRun(name, record, "", _since(started))


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _progress_line(result: BatchRun) -> str:
    if not result.started:
        return f"{result.runbook}: {NOT_STARTED}"
    if result.record is None:
        return f"{result.runbook}: no record: {result.problem}"
    return f"{result.runbook}: {result.record.status} in {result.seconds:.1f} s"


def batch_table(results: Sequence[BatchRun]) -> str:
    """One line per run: runbook, record id, status, verdict, cause, seconds."""
    header = ("runbook", "record", "status", "verdict", "cause", "seconds")
    rows = []
    for result in results:
        sidecar = result.record.sidecar if result.record else {}
        verdict = sidecar.get("verdict") or {}
        rows.append(
            (
                result.runbook,
                str(sidecar.get("id") or "-"),
                str(
                    sidecar.get("status")
                    or (NOT_STARTED if not result.started else "no record")
                ),
                str(verdict.get("status") or "-"),
                str(verdict.get("cause") or "-"),
                f"{result.seconds:.1f}",
            )
        )
    return render_table(header, rows)


def batch_exit_code(codes: Sequence[int]) -> int:
    """The worst of the runs' exit codes: interrupted, failed, gate, verdict, 0."""
    return max(codes, key=_EXIT_RANK.index, default=0)
