"""Kernels forked from a template process that has already imported what runbooks use.

A fresh kernel spends two to three seconds of CPU importing IPython, opslib, pandas
and matplotlib before the first cell runs. A batch of runbooks would pay that once
per runbook; on a machine with two cores that is most of the batch. So a batch
starts one *template*: a Python process that imports all of it once, then waits on
a Unix socket in a private folder. For each kernel the batch asks for, it forks; the
child starts its own session, takes the run's working directory and environment
and becomes an ordinary IPython kernel on the connection file jupyter_client wrote.
The kernel is then managed like any other (``ForkedProvisioner``): interrupted,
killed and waited for by its process id.

Only the kernel the template can stand in for is forked: the ``ipykernel_launcher``
module on this very interpreter. Anything else, or a template that does not
answer, launches the kernel the usual way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import select
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

logger = logging.getLogger(__name__)

LAUNCHER_MODULE = "ipykernel_launcher"
READY_LINE = "ready"
START_TIMEOUT_S = 60.0
_MATPLOTLIB_INLINE = "module://matplotlib_inline.backend_inline"
_socket_path: str | None = None


class KernelTemplate:
    """The template process of one batch; a context manager that always stops it."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="opslib-forks-")
        self.socket_path = str(Path(self.folder) / "template.sock")
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> KernelTemplate:
        """Start importing in the template; returns at once (see ``wait_ready``)."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, self.socket_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        return self

    def wait_ready(self) -> bool:
        """Wait until the template listens; then forked kernels are used from here on.

        Returns False, with a warning logged, when the template did not come up;
        kernels then start the usual way.
        """
        global _socket_path
        assert self._process is not None and self._process.stdout is not None
        # A selector, not select(): a long-lived caller may hold descriptors
        # above 1024, which select() cannot watch.
        with selectors.DefaultSelector() as watch:
            watch.register(self._process.stdout, selectors.EVENT_READ)
            ready = watch.select(START_TIMEOUT_S)
        line = self._process.stdout.readline().strip() if ready else ""
        if line != READY_LINE:
            logger.warning("kernel template did not start; kernels start one by one")
            return False
        _socket_path = self.socket_path
        return True

    def stop(self) -> None:
        """Stop the template (its stdin closing tells it to) and remove its folder."""
        global _socket_path
        _socket_path = None
        if self._process is not None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
        _remove_folder(Path(self.folder))

    def __enter__(self) -> KernelTemplate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove_folder(folder: Path) -> None:
    """Remove the template's folder and its socket; the template may have already."""
    for leftover in folder.glob("*"):
        leftover.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except FileNotFoundError:
        pass


def template_socket() -> str | None:
    """The socket of this process's template, if a batch started one."""
    return _socket_path


def use_template(socket: str | None) -> None:
    """Make this process (a batch worker) fork its kernels from that template."""
    global _socket_path
    _socket_path = socket


class ForkedProvisioner(LocalProvisioner):
    """Launches the kernel by asking the template to fork it, else as usual."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        path = template_socket()
        if path is None or not _forkable(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        request = {
            "argv": cmd[3:],
            "cwd": str(kwargs.get("cwd") or os.getcwd()),
            "env": dict(kwargs.get("env") or os.environ),
        }
        try:
            pid = await asyncio.to_thread(_ask_for_kernel, path, request)
        except (OSError, ValueError) as error:
            logger.warning("kernel template failed, starting a kernel error=%s", error)
            return await super().launch_kernel(cmd, **kwargs)
        # what the provisioner uses of a Popen, for a process that is not our child
        self.process = _ForkedProcess(pid)  # type: ignore[assignment]
        self.pid = self.pgid = pid
        self.cwd = request["cwd"]
        return self.connection_info


def _forkable(cmd: list[str]) -> bool:
    """True for ``<this python> -m ipykernel_launcher ...``, what the template runs."""
    return (
        len(cmd) >= 3
        and cmd[1:3] == ["-m", LAUNCHER_MODULE]
        and os.path.realpath(cmd[0]) == os.path.realpath(sys.executable)
    )


def _ask_for_kernel(path: str, request: dict[str, Any]) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(START_TIMEOUT_S)
        connection.connect(path)
        connection.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(connection.makefile("rb").readline())
    pid = answer.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"kernel template answered {answer!r}, expected a pid")
    return pid


class _ForkedProcess:
    """The parts of ``subprocess.Popen`` the provisioner uses, for a forked kernel.

    The kernel is the template's child, not ours: the template reaps it, and we
    see it gone when its process id no longer answers signal 0.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0
            except PermissionError:  # the id went to a process of another user
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else _now() + timeout
        while self.poll() is None:
            if deadline is not None and _now() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
            _sleep(0.05)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _now() -> float:
    import time

    return time.monotonic()


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def serve(path: str) -> None:
    """The template: import, listen, fork a kernel per request; end when stdin closes."""
    if sys.path and Path(sys.path[0]) == Path.cwd():  # as ipykernel_launcher does
        del sys.path[0]
    os.environ.setdefault("MPLBACKEND", _MATPLOTLIB_INLINE)  # as ipykernel would
    import ipykernel.kernelapp  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import pandas  # type: ignore[import-untyped]  # noqa: F401

    import opslib

    opslib._import_all()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped for us
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    print(READY_LINE, flush=True)
    os.dup2(2, 1)  # kernels write where a kernel would: not into our pipe
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            # the batch stopped us, or is gone: then nobody else removes these
            listener.close()
            _remove_folder(Path(path).parent)
            return
        if listener in ready:
            connection, _ = listener.accept()
            with connection:
                _fork_kernel(listener, connection)


def _fork_kernel(listener: socket.socket, connection: socket.socket) -> None:
    try:
        request = json.loads(connection.makefile("rb").readline())
        pid = os.fork()
    except (OSError, ValueError) as error:
        connection.sendall(json.dumps({"error": str(error)}).encode() + b"\n")
        return
    if pid == 0:
        code = 1
        try:
            listener.close()
            connection.close()
            code = _become_kernel(request)
        finally:
            os._exit(code)
    connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def _reseed_random() -> None:
    """Give this forked kernel random state of its own.

    A fork copies the template's state of Python's ``random`` and numpy's global
    generator, so every kernel of a batch would draw the same numbers.
    """
    random.seed(os.urandom(32))
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(numpy.frombuffer(os.urandom(32), dtype=numpy.uint32))


def _become_kernel(request: dict[str, Any]) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _reseed_random()
    # The kernel's parent is the template: the kernel ends if the template does,
    # and, like any kernel with a parent, prints no console banner.
    argv = [str(arg) for arg in request["argv"]]
    argv.append(f"--IPKernelApp.parent_handle={os.getppid()}")
    sys.argv = [LAUNCHER_MODULE, *argv]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv=argv)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by KernelTemplate
    serve(sys.argv[1])
