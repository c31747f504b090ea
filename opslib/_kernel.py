"""Warm kernels: start the kernel while the runner is still importing papermill.

Importing papermill costs more than a second (nbformat's schema validation pulls in
heavy dependencies), and so do starting a kernel and importing opslib and pandas
inside it. The papermill CLI does these one after the other; the runner does them at
once: a background thread starts the kernel over IPC sockets in a private folder
and imports opslib in it, while the main thread imports papermill. papermill then
runs the notebook on that kernel.

If warming fails for any reason, the runner logs a warning and lets papermill start
a kernel of its own, so warming can only make a run faster, never break it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Imported in the kernel before the first cell; side-effect free.
PRELOAD = "import opslib, pandas; opslib._import_all()"
HEADLESS_VARIABLE = "RUNBOOK_HEADLESS"
START_TIMEOUT_S = 60.0
# Seconds between the warmer's looks at whether it was stopped or its kernel died.
WATCH_S = 0.1


class WarmupStopped(Exception):
    """The warmer was stopped (the run was interrupted) before its kernel was ready."""


class KernelWarmer:
    """Start a kernel in a background thread and pre-import opslib in it.

    Args:
        kernel_name: the kernelspec to start, such as "python3".
        cwd: the kernel's working directory.
    """

    def __init__(self, kernel_name: str, cwd: Path) -> None:
        self.kernel_name = kernel_name
        self.cwd = cwd
        self._folder = tempfile.mkdtemp(prefix="opslib-kernel-")
        self._manager: Any = None
        self._clients: list[Any] = []
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._warm, name="opslib-kernel-warmer")

    def start(self) -> KernelWarmer:
        """Launch the kernel process now, then ready it in the background.

        Launching takes a fraction of a second and is done before the caller's
        heavy imports, so the kernel boots on the other core meanwhile.
        """
        try:
            self._manager = self._new_manager()
            asyncio.run(self._launch(self._manager))
        except Exception as error:  # warming is optional: remember why, go on
            self._error = error
            return self
        self._thread.start()
        return self

    def manager(self) -> Any:
        """Wait for the warm kernel; return its manager, or None if warming failed."""
        if self._thread.ident is not None:
            self._thread.join(START_TIMEOUT_S + 5)
        if self._error is not None or self._manager is None:
            logger.warning(
                "kernel warm-up failed, papermill starts its own error=%s", self._error
            )
            self.shutdown()
            return None
        return self._manager

    def shutdown(self) -> None:
        """Stop the kernel at once and remove its socket folder.

        A kernel still starting (the run was interrupted meanwhile) is killed
        first, and the warmer, which watches for the stop, gives up its waits
        within ``WATCH_S``: the run ends at once rather than at a time limit.
        The folder, which holds the kernel's key, goes whatever else fails.
        """
        try:
            self._stop_kernel()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _stop_kernel(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._kill_starting_kernel()
        if self._thread.ident is not None:
            self._thread.join(START_TIMEOUT_S + 5)
        # A client its caller was handed (papermill's) is left open by nbclient,
        # which closes only clients of managers it made itself: close them here,
        # or each run would keep its sockets, heartbeat thread and ZeroMQ context.
        while self._clients:
            try:
                self._clients.pop().stop_channels()
            except Exception as error:  # a client half made or closed already
                logger.debug("kernel client stop error=%s", error)
        if self._manager is not None:
            try:
                asyncio.run(self._manager.shutdown_kernel(now=True))
            except Exception as error:  # the kernel may be gone already
                logger.debug("kernel shutdown error=%s", error)
            self._manager = None

    def _warm(self) -> None:
        try:
            asyncio.run(self._ready())
        # reported by manager(), never raised here; a stopped warmer is quiet
        except (Exception, asyncio.CancelledError) as error:
            self._error = error

    def _kill_starting_kernel(self) -> None:
        provisioner = getattr(self._manager, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is not None:
            try:
                process.kill()
            except OSError as error:  # gone already
                logger.debug("kernel kill error=%s", error)

    def _new_manager(self) -> Any:
        from jupyter_client.manager import AsyncKernelManager

        from ._kernelforks import ForkedProvisioner, template_socket

        manager = AsyncKernelManager(
            kernel_name=self.kernel_name,
            transport="ipc",
            connection_file=str(Path(self._folder) / "kernel.json"),
        )
        make_client = manager.client

        def client(**kwargs: Any) -> Any:
            made = make_client(**kwargs)
            self._clients.append(made)
            return made

        manager.client = client  # type: ignore[method-assign]
        if template_socket() is not None:  # in a batch: fork it from the template
            manager.kernel_id = str(uuid.uuid4())
            manager.provisioner = ForkedProvisioner(
                kernel_id=manager.kernel_id,
                kernel_spec=manager.kernel_spec,
                parent=manager,
            )
        return manager

    async def _launch(self, manager: Any) -> None:
        # Tells opslib in the kernel that nobody watches: no progress bars.
        env = {**os.environ, HEADLESS_VARIABLE: "1"}
        await manager.start_kernel(cwd=str(self.cwd), env=env)

    async def _ready(self) -> None:
        client = self._manager.client()
        client.start_channels()
        try:
            await self._watched(_preload(client))
        finally:
            client.stop_channels()

    async def _watched(self, work: Coroutine[Any, Any, None]) -> None:
        """Await ``work`` while it lasts, the warmer is not stopped and the
        kernel lives, at most ``START_TIMEOUT_S``; else cancel it and raise.

        Raises:
            WarmupStopped: ``shutdown`` was called meanwhile.
            RuntimeError: the kernel process ended.
            TimeoutError: the kernel was not ready in time.
        """
        task = asyncio.ensure_future(work)
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=WATCH_S)
                if done:
                    return task.result()
                if self._stopping.is_set():
                    raise WarmupStopped("the run stopped while its kernel started")
                if not await self._manager.is_alive():
                    raise RuntimeError("the kernel ended while it started")
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"kernel not ready in {START_TIMEOUT_S:.0f} s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})


async def _preload(client: Any) -> None:
    await client.wait_for_ready(timeout=START_TIMEOUT_S)
    msg_id = client.execute(PRELOAD, silent=True, store_history=False)
    await _wait_reply(client, msg_id)


async def _wait_reply(client: Any, msg_id: str) -> None:
    while True:
        reply = await client.get_shell_msg(timeout=START_TIMEOUT_S)
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"preload failed: {reply['content'].get('evalue')}")
            return
