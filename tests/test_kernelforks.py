"""Kernels forked from a batch's template process, and the way back to plain ones."""

import asyncio
import logging
import os
from pathlib import Path

import pytest

from opslib import _kernelforks
from opslib._kernel import KernelWarmer
from opslib._kernelforks import KernelTemplate, template_socket

ROOT = Path(__file__).resolve().parent.parent


def run_code(code: str) -> dict:
    """Run code on a warmed kernel, return its pid and the text it printed."""
    warmer = KernelWarmer("python3", ROOT).start()
    manager = warmer.manager()
    assert manager is not None

    async def execute() -> str:
        client = manager.client()
        client.start_channels()
        try:
            msg_id = client.execute(code)
            printed = []
            while True:
                msg = await client.get_iopub_msg(timeout=30)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    printed.append(msg["content"]["text"])
                if msg["msg_type"] == "error":
                    raise AssertionError(msg["content"]["evalue"])
                if msg["msg_type"] == "status" and (
                    msg["content"]["execution_state"] == "idle"
                ):
                    return "".join(printed)
        finally:
            client.stop_channels()

    try:
        return {"pid": manager.provisioner.pid, "printed": asyncio.run(execute())}
    finally:
        warmer.shutdown()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_template_forks_kernels_that_end_with_their_run():
    with KernelTemplate() as template:
        assert template.wait_ready()
        assert template_socket() == template.socket_path
        found = run_code("import os; print(os.getppid())")
        # the kernel is the template's child, not a process we started
        assert int(found["printed"]) == template._process.pid
        assert found["pid"] != os.getpid()
        assert gone(found["pid"])  # shut down with its run
    assert template_socket() is None
    assert template._process.poll() is not None
    assert not Path(template.folder).exists()


def test_without_a_template_answering_the_kernel_starts_as_usual(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(_kernelforks, "_socket_path", str(tmp_path / "none.sock"))
    with caplog.at_level(logging.WARNING, logger="opslib._kernelforks"):
        found = run_code("import os; print(os.getppid())")
    assert int(found["printed"]) == os.getpid()  # started by us, the usual way
    assert "kernel template failed" in caplog.text


@pytest.mark.parametrize(
    ("cmd", "forkable"),
    [
        (["{python}", "-m", "ipykernel_launcher", "-f", "k.json"], True),
        (["/usr/bin/env", "-m", "ipykernel_launcher", "-f", "k.json"], False),
        (["{python}", "-m", "other_kernel", "-f", "k.json"], False),
    ],
)
def test_only_this_pythons_ipykernel_is_forked(cmd, forkable):
    import sys

    cmd = [part.format(python=sys.executable) for part in cmd]
    assert _kernelforks._forkable(cmd) is forkable


def test_template_starts_when_the_caller_holds_descriptors_above_1024():
    # A long test session or a long-lived receiver holds many descriptors; the
    # template's pipe then gets one that select() could not watch.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with KernelTemplate() as template:
            assert template._process.stdout.fileno() > 1024
            assert template.wait_ready()
    finally:
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_forked_kernels_draw_different_random_numbers():
    # Forks copy the template's random state; each kernel must get its own.
    draw = "import random, numpy; print(random.random(), numpy.random.random())"
    with KernelTemplate() as template:
        assert template.wait_ready()
        first, second = (run_code(draw) for _ in range(2))
    python_draws = {found["printed"].split()[0] for found in (first, second)}
    numpy_draws = {found["printed"].split()[1] for found in (first, second)}
    assert first["pid"] != second["pid"]
    assert len(python_draws) == 2 and len(numpy_draws) == 2


def test_a_template_whose_batch_is_gone_removes_its_folder():
    # A killed batch never calls stop(); its template's stdin closes all the same.
    template = KernelTemplate().start()
    try:
        assert template.wait_ready()
        assert Path(template.socket_path).exists()
        template._process.stdin.close()
        template._process.wait(timeout=30)
        assert not Path(template.folder).exists()
    finally:
        template.stop()  # still fine with nothing left to remove
    assert template_socket() is None
