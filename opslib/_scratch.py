"""Scratch folders that go away when the run is done.

A procedure that needs room on this machine (a downloaded backup and its
restored copy) asks :func:`make_scratch` for a folder. Under ``runbook run`` the
folder is made inside the run's own scratch root (``RUNBOOK_SCRATCH``), which
the runner removes once the kernel has stopped, whether the run succeeded,
failed or was interrupted. Elsewhere (JupyterLab, nbval, a script) it is made
in the system's temp folder; the procedure's last step removes it
(:func:`discard_scratch`), and so does the interpreter on a clean exit.

A folder the user asked to keep is made in the system's temp folder, never in
the run's root, and is left alone: the procedure says where it is.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

SCRATCH_VARIABLE = "RUNBOOK_SCRATCH"
_PENDING: set[Path] = set()


def make_scratch(prefix: str, *, keep: bool = False) -> Path:
    """Create a new scratch folder and return its path.

    Args:
        prefix: the start of the folder's name, such as ``runbook-restore-``.
        keep: the user asked to keep what goes in it: made in the system's
            temp folder and never removed here.
    """
    root = None if keep else os.environ.get(SCRATCH_VARIABLE) or None
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    if not keep:
        _PENDING.add(folder)
    return folder


def discard_scratch(folder: str | Path) -> bool:
    """Remove a scratch folder and everything in it; True if it was there."""
    path = Path(folder)
    _PENDING.discard(path)
    existed = path.exists()
    shutil.rmtree(path, ignore_errors=True)
    return existed


@atexit.register
def _discard_pending() -> None:
    for folder in list(_PENDING):
        discard_scratch(folder)


@contextlib.contextmanager
def run_scratch_root() -> Iterator[Path]:
    """A scratch root for one run, named in ``RUNBOOK_SCRATCH`` while it lasts.

    The kernel started inside inherits the variable; the root and everything
    made in it are removed on the way out, whatever happened.
    """
    root = Path(tempfile.mkdtemp(prefix="runbook-run-"))
    saved = os.environ.get(SCRATCH_VARIABLE)
    os.environ[SCRATCH_VARIABLE] = str(root)
    try:
        yield root
    finally:
        if saved is None:
            os.environ.pop(SCRATCH_VARIABLE, None)
        else:
            os.environ[SCRATCH_VARIABLE] = saved
        shutil.rmtree(root, ignore_errors=True)
