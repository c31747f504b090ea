"""Runs that end early leave a whole record: a killed kernel, a Ctrl-C.

Both are real: the fixture notebook kills its own kernel with SIGKILL, and a
``runbook run`` process gets SIGINT while a cell sleeps, or while its kernel
starts (a kernel that never becomes ready holds the run there). Each leaves a
sidecar that is complete JSON and an executed notebook nbformat reads, with the
status ``failed`` (the kernel died) or ``aborted`` (the person running it
stopped it); an interrupted ``runbook run`` exits 130.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from opslib._config import SECRET_VARIABLES
from opslib._records import list_records, load_record
from opslib import _runner
from opslib._runner import INTERRUPTED_AT_START, RunInterrupted, run_notebook
from kernel_helpers import slow_preload_kernel

NOTEBOOKS = Path(__file__).parent / "notebooks"
ENVIRONMENTS = Path(__file__).parents[1] / "parameters" / "environments"
RUNBOOK = Path(sys.executable).parent / "runbook"


@pytest.fixture
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sandbox environment alone, no secrets in the process environment."""
    folder = tmp_path / "environments"
    folder.mkdir()
    shutil.copy(ENVIRONMENTS / "sandbox.yaml", folder)
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(folder))
    monkeypatch.setenv("RUNBOOK_OPERATOR", "oncall-7")
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return folder


def _only_record(records: Path) -> tuple[dict[str, object], nbformat.NotebookNode]:
    """The archive's one sidecar, read as plain JSON, and its notebook."""
    [row] = list_records(records)
    sidecar = load_record(records, str(row["id"]))
    [sidecar_file] = list(records.rglob(f"{row['id']}*.json"))
    assert json.loads(sidecar_file.read_text(encoding="utf-8")) == sidecar
    nb = nbformat.read(records / str(sidecar["record_path"]), as_version=4)
    nbformat.validate(nb)
    return sidecar, nb


def _outputs_of(nb: nbformat.NotebookNode, source_start: str) -> str:
    [cell] = [c for c in nb.cells if c.source.startswith(source_start)]
    return str(cell.outputs)


def test_a_kernel_killed_by_sigkill_leaves_a_failed_record(
    environments: Path, tmp_path: Path
) -> None:
    records = tmp_path / "records"

    record = run_notebook(NOTEBOOKS / "sigkills_kernel.ipynb", records_dir=records)

    sidecar, nb = _only_record(records)
    assert record.status == sidecar["status"] == "failed"
    error = sidecar["error"]
    assert isinstance(error, dict) and error["kind"] == "kernel-died"
    assert "SIGKILL" in nb.cells[error["cell_index"]].source
    assert nb.cells[0].source.startswith("**This run failed: the kernel died")
    statuses = [cell["status"] for cell in sidecar["cells"]]  # type: ignore[attr-defined]
    assert statuses[-2:] == ["failed", "pending"]
    assert "about to be killed" in _outputs_of(nb, 'print("about to be killed"')


@pytest.mark.parametrize("to_group", [False, True], ids=["process", "ctrl-c-group"])
def test_sigint_to_runbook_run_mid_cell_leaves_an_aborted_record(
    environments: Path, tmp_path: Path, to_group: bool
) -> None:
    """SIGINT to the runbook process alone, or to its whole process group as a
    terminal's Ctrl-C sends it."""
    records = tmp_path / "records"
    started = tmp_path / "started"
    process = subprocess.Popen(
        [
            str(RUNBOOK),
            "run",
            str(NOTEBOOKS / "waits_for_interrupt.ipynb"),
            "--records",
            str(records),
            "-p",
            "started_file",
            str(started),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=True,  # its own group, so the test can signal all of it
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the long cell never started"
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        if to_group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, stderr
    sidecar, nb = _only_record(records)
    assert sidecar["status"] == "aborted", stderr
    error = sidecar["error"]
    assert isinstance(error, dict) and error["kind"] == "interrupted"
    assert "time.sleep(120)" in nb.cells[error["cell_index"]].source
    assert "first cell done" in _outputs_of(nb, 'print("first cell done"')
    assert "never runs" not in str([cell.get("outputs") for cell in nb.cells])


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting to be reaped has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition: object, what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not condition() and process.poll() is None:  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _never_ready_kernel(folder: Path) -> tuple[Path, Path]:
    """A kernelspec whose kernel writes its pid and never answers, and a notebook
    on it: a run of that notebook stays in kernel start-up until interrupted."""
    pid_file = folder / "kernel.pid"
    spec = folder / "jupyter" / "kernels" / "never-ready"
    spec.mkdir(parents=True)
    code = (
        "import os, pathlib, time; "
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        "time.sleep(600)"
    )
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", code, "{connection_file}"],
                "display_name": "never ready",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('incident_id: str = "INC-1"  # the incident')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell('print("first cell ran")')]
    nb.metadata["kernelspec"] = {"name": "never-ready", "display_name": "never ready"}
    nb.metadata["language_info"] = {"name": "python"}
    notebook = folder / "never_ready.ipynb"
    nbformat.write(nb, notebook)
    return notebook, pid_file


def test_sigint_during_kernel_start_up_leaves_an_aborted_record(
    environments: Path, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    notebook, pid_file = _never_ready_kernel(tmp_path)
    process = subprocess.Popen(
        [str(RUNBOOK), "run", str(notebook), "--records", str(records)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, JUPYTER_PATH=str(tmp_path / "jupyter")),
        start_new_session=True,
    )
    try:
        _wait_for(pid_file.exists, "the kernel never started", process)
        assert process.poll() is None, process.communicate()
        kernel_pid = int(pid_file.read_text(encoding="utf-8"))
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, stderr
    sidecar, nb = _only_record(records)
    assert sidecar["status"] == "aborted", stderr
    assert sidecar["error"] == {
        "kind": "interrupted",
        "ename": "KeyboardInterrupt",
        "evalue": INTERRUPTED_AT_START,
        "cell_index": None,
    }
    assert sidecar["id"] in stdout
    assert nb.cells[0].source.startswith("**This run was interrupted")
    assert "failed" not in nb.cells[0].source
    assert "before any cell ran" in nb.cells[0].source
    assert [c["status"] for c in sidecar["cells"]] == ["pending", "pending"]  # type: ignore[index]
    assert [c["duration_s"] for c in sidecar["cells"]] == [None, None]  # type: ignore[index]
    assert "first cell ran" not in str([cell.get("outputs") for cell in nb.cells])
    assert not _alive(kernel_pid)  # the kernel was stopped, not left behind


def test_two_runs_interrupted_while_their_kernels_preload_end_at_once(
    environments: Path, tmp_path: Path
) -> None:
    """Two runs at once, each interrupted while its kernel is ready but still
    importing opslib: each archives an aborted record well within the 30 s an
    alert receiver grants a stopped run (the preload's own limit is 60 s), with
    its cells pending, its kernel ended and its connection folder gone."""
    notebook, marks = slow_preload_kernel(tmp_path, "slow-preload")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, JUPYTER_PATH=str(tmp_path / "jupyter"), TMPDIR=str(temp))
    processes = [
        subprocess.Popen(
            [str(RUNBOOK), "run", str(notebook), "--records", str(tmp_path / f"r{n}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        for n in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            _wait_for(
                lambda: len(list(marks.iterdir())) == 2, "no kernel preloads", process
            )
            assert process.poll() is None, process.communicate()
        kernel_pids = [int(mark.name) for mark in marks.iterdir()]
        for process in processes:
            os.kill(process.pid, signal.SIGINT)
        deadline = time.monotonic() + 30  # an alert receiver's grace for a run
        for process in processes:
            remaining = max(0.1, deadline - time.monotonic())
            outputs.append(process.communicate(timeout=remaining))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for n, (process, (stdout, stderr)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 130, stderr
        sidecar, nb = _only_record(tmp_path / f"r{n}")
        assert sidecar["status"] == "aborted", stderr
        assert sidecar["error"]["evalue"] == INTERRUPTED_AT_START  # type: ignore[index]
        assert [c["status"] for c in sidecar["cells"]] == ["pending", "pending"]  # type: ignore[index]
        assert "first cell ran" not in str([cell.get("outputs") for cell in nb.cells])
        assert "Exception in thread" not in stderr
    assert not any(_alive(pid) for pid in kernel_pids)
    assert list(temp.glob("opslib-kernel-*")) == []


def test_a_kernel_that_dies_while_preloading_ends_the_warm_up_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warmer watches its kernel: a kernel killed during the preload makes
    warming fail with that reason (papermill then starts its own), rather than
    after the preload's 60 s limit; its folder goes with it."""
    from opslib._kernel import KernelWarmer

    _, marks = slow_preload_kernel(tmp_path, "slow-preload")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    warmer = KernelWarmer("slow-preload", tmp_path).start()
    try:
        deadline = time.monotonic() + 60
        while not list(marks.iterdir()):
            assert time.monotonic() < deadline, "the kernel never preloaded"
            time.sleep(0.05)
        [mark] = list(marks.iterdir())
        os.kill(int(mark.name), signal.SIGKILL)

        assert warmer.manager() is None
    finally:
        warmer.shutdown()
    assert "the kernel ended while it started" in str(warmer._error)
    assert not Path(warmer._folder).exists()


def test_a_cancelled_warm_up_is_remembered_not_raised_in_its_thread(
    tmp_path: Path,
) -> None:
    from opslib._kernel import KernelWarmer

    warmer = KernelWarmer("python3", tmp_path)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    warmer._ready = cancelled  # type: ignore[method-assign]
    warmer._warm()  # the thread's body: nothing escapes it

    assert isinstance(warmer._error, asyncio.CancelledError)
    warmer.shutdown()
    assert not Path(warmer._folder).exists()


@pytest.mark.parametrize("where", ["kernel-launch", "before-kernel"])
def test_an_interrupt_before_the_kernel_answers_is_archived(
    environments: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Ctrl-C while the kernel is launched, or while the run readies its
    scratch folder before that: the reserved record is still written."""

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if where == "kernel-launch":
        monkeypatch.setattr(_runner.KernelWarmer, "start", interrupt)
    else:
        monkeypatch.setattr(_runner, "run_scratch_root", interrupt)
    records = tmp_path / "records"

    with pytest.raises(RunInterrupted) as stopped:
        run_notebook(NOTEBOOKS / "ok.ipynb", records_dir=records)

    sidecar, nb = _only_record(records)
    assert stopped.value.record.id == sidecar["id"]
    assert sidecar["status"] == "aborted"
    assert sidecar["error"]["evalue"] == INTERRUPTED_AT_START  # type: ignore[index]
    assert all(not cell.get("outputs") for cell in nb.cells)


def test_an_interrupt_after_the_notebook_ended_changes_nothing(
    environments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT while the finished run stops its kernel: the record stays
    whole with the run's own status, and ``runbook run`` exits as that status
    says, telling that the interrupt came after the end."""
    from click.testing import CliRunner

    from opslib._cli import main

    stop_kernel = _runner.KernelWarmer.shutdown

    def shutdown_interrupted(warmer: _runner.KernelWarmer) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # held while the kernel stops
        stop_kernel(warmer)

    monkeypatch.setattr(_runner.KernelWarmer, "shutdown", shutdown_interrupted)
    records = tmp_path / "records"

    result = CliRunner().invoke(
        main, ["run", str(NOTEBOOKS / "ok.ipynb"), "--records", str(records)]
    )

    sidecar, _ = _only_record(records)
    assert sidecar["status"] == "succeeded", result.output
    assert sidecar["error"] is None
    assert result.exit_code == 0, result.output
    assert "interrupted after the run ended: that changed nothing" in result.output
    assert "the run was stopped and archived" not in result.output
    assert sidecar["id"] in result.output


def _processes_marked(marker: str) -> list[int]:
    """Processes whose environment holds the marker: a run's whole family."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _alive(int(entry.name)):
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # ended meanwhile, or not ours
            continue
        if marker.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


BATCH = ["ok", "waits_for_interrupt", "raises_in_second_cell"]


def _start_batch(folder: Path, marker: str) -> subprocess.Popen[str]:
    """``runbook run`` of BATCH with --jobs 1, its family marked in its environment;
    returns once the first run is archived and the second waits in its cell."""
    records, started = folder / "records", folder / "started"
    process = subprocess.Popen(
        [
            str(RUNBOOK),
            "run",
            *(str(NOTEBOOKS / f"{name}.ipynb") for name in BATCH),
            "--jobs",
            "1",
            "--records",
            str(records),
            "-p",
            "started_file",
            str(started),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OPSLIB_TEST_BATCH=marker.split("=", 1)[1]),
        start_new_session=True,
    )

    def second_run_waits() -> bool:
        return started.exists() and any(records.rglob("*.json"))

    try:
        _wait_for(second_run_waits, "the second run never reached its cell", process)
        assert process.poll() is None, process.communicate()
        # runbook, fork server, worker, kernel template, kernel (at least)
        assert len(_processes_marked(marker)) >= 5
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process


def _left_running(marker: str) -> list[int]:
    """The marked processes still running once they had time to end."""
    deadline = time.monotonic() + 30
    while (left := _processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.parametrize("to_group", [False, True], ids=["process", "ctrl-c-group"])
def test_sigint_to_a_batch_stops_it_archives_the_running_and_starts_no_more(
    environments: Path, tmp_path: Path, to_group: bool
) -> None:
    """--jobs 1: the first run ends, the second waits in a cell and gets the
    interrupt, the third never starts; the table lists all three; exit 130."""
    marker = f"OPSLIB_TEST_BATCH={os.getpid()}-{time.monotonic_ns()}"
    process = _start_batch(tmp_path, marker)
    try:
        if to_group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, stdout + stderr
    found = sidecars_by_runbook(tmp_path / "records")
    assert sorted(found) == ["ok", "waits_for_interrupt"]
    assert found["ok"]["status"] == "succeeded"
    assert found["waits_for_interrupt"]["status"] == "aborted"
    assert found["waits_for_interrupt"]["error"]["kind"] == "interrupted"
    table = stdout.split("\n\n")[-1].splitlines()
    rows = {line.split()[0]: line for line in table if line.split()[0] in BATCH}
    assert sorted(rows) == sorted(BATCH), stdout
    for name, sidecar in found.items():
        assert sidecar["id"] in rows[name] and sidecar["status"] in rows[name]
    assert "not started" in rows["raises_in_second_cell"]
    assert "raises_in_second_cell: no record" not in stderr
    assert _left_running(marker) == []


def test_sigterm_to_a_batch_stops_it_as_ctrl_c_does_and_quietly(
    environments: Path, tmp_path: Path
) -> None:
    """SIGTERM: the run under way archives as aborted, the queued one never
    starts, the table comes, exit 130; no thread's traceback and no semaphore
    left for the resource tracker to clean up."""
    marker = f"OPSLIB_TEST_BATCH={os.getpid()}-{time.monotonic_ns()}"
    process = _start_batch(tmp_path, marker)
    try:
        process.terminate()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, stdout + stderr
    found = sidecars_by_runbook(tmp_path / "records")
    assert sorted(found) == ["ok", "waits_for_interrupt"]
    assert found["waits_for_interrupt"]["status"] == "aborted"
    assert "raises_in_second_cell" in stdout.split("\n\n")[-1]
    assert "Traceback" not in stderr and "Exception in thread" not in stderr
    assert "leaked semaphore" not in stderr
    assert _left_running(marker) == []


def test_a_killed_batch_leaves_its_run_archived_and_starts_no_more(
    environments: Path, tmp_path: Path
) -> None:
    """SIGKILL to the batch process: its worker notices, stops the run under
    way, which archives, and starts no queued one; nothing is left running."""
    marker = f"OPSLIB_TEST_BATCH={os.getpid()}-{time.monotonic_ns()}"
    process = _start_batch(tmp_path, marker)
    process.kill()
    process.communicate(timeout=60)

    assert _left_running(marker) == []
    found = sidecars_by_runbook(tmp_path / "records")
    assert sorted(found) == ["ok", "waits_for_interrupt"]
    # the worker's interrupt and the kernel's end with its template race
    assert found["waits_for_interrupt"]["status"] in ("aborted", "failed")
    assert found["waits_for_interrupt"]["finished_at"]


def sidecars_by_runbook(records: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        json.loads(path.read_text(encoding="utf-8"))["runbook"]: json.loads(
            path.read_text(encoding="utf-8")
        )
        for path in records.rglob("*.json")
    }


@pytest.mark.parametrize("archived", [True, False], ids=["archived", "before-record"])
def test_an_interrupted_alert_job_names_its_record_when_it_has_one(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    archived: bool,
) -> None:
    import io

    from opslib import _alertjob

    record = _runner.RunRecord(
        id="20261205T010000Z-api-down-INC-9-0a1b",
        status="aborted",
        record_path="2026/12/x.ipynb",
        sidecar_path="2026/12/x.json",
        verdict=None,
        error={"kind": "interrupted"},
        duration_s=1.0,
        sidecar={},
    )

    def interrupted(job: object) -> None:
        raise RunInterrupted(record) if archived else KeyboardInterrupt

    monkeypatch.setattr(_alertjob, "run_job", interrupted)
    monkeypatch.setattr(sys, "stdin", io.StringIO("{}"))
    previous = signal.getsignal(signal.SIGINT)
    try:
        code = _alertjob.main()
    finally:
        signal.signal(signal.SIGINT, previous)

    printed = json.loads(capsys.readouterr().out)
    assert code == 130
    if archived:
        assert printed == {
            "record_id": record.id,
            "status": "aborted",
            "error": "interrupted",
        }
    else:
        assert printed == {"error": "interrupted"}


LATE_INTERRUPT = """\
import atexit, os, signal, sys

def late():
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    sys.stderr.write(f"sigint-ignored={ignored}\\n")
    os.kill(os.getpid(), signal.SIGINT)

atexit.register(late)
sys.argv = ["runbook", "--help"]
from opslib._cli import ENTRY
ENTRY()
"""


def test_a_ctrl_c_after_the_command_ended_does_not_change_its_exit_code(tmp_path):
    # Once the command has chosen its exit code, SIGINT is ignored while the
    # interpreter shuts down (where Python would otherwise end the process by
    # the signal). An atexit hook runs then: it reports SIGINT's disposition
    # and sends one.
    script = tmp_path / "late_interrupt.py"
    script.write_text(LATE_INTERRUPT.replace("ENTRY", "entry"))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    assert "sigint-ignored=True" in done.stderr
    assert "KeyboardInterrupt" not in done.stderr
