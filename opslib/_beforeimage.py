"""Before-images of database rows, kept whole so an undo can restore them exactly.

A gated write records its before-image in the plan, and so in the record; but the
record is scrubbed (email addresses become pseudonyms), and a row put back with a
pseudonym is not the row that was there. So the applier also writes the rows,
unscrubbed, to ``<archive>/before-images/<sha256>.json`` before it changes
anything. The file is named after the SHA-256 of its content, which the plan
carries, written once, readable by its owner only, and never edited. Treat that
folder like a database backup: it holds live rows (addresses, password hashes).

The archive is ``$RUNBOOK_RECORDS`` (which ``runbook run`` sets for the kernel to
the ``--records`` folder), else ``records/`` at the project root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import ActionError

logger = logging.getLogger(__name__)

RECORDS_VARIABLE = "RUNBOOK_RECORDS"
FOLDER = "before-images"
# Columns whose values stay out of records (plans, results, checks) even as rows
# of a before-image: password hashes, tokens, secrets. The file keeps them.
SENSITIVE_COLUMN = re.compile(r"password|token|secret|_hash$", re.IGNORECASE)
REDACTED = "[kept in the before-image file]"


def redact_rows(
    rows: Sequence[Mapping[str, Any]], mark: str = REDACTED
) -> list[dict[str, Any]]:
    """Rows with the values of sensitive columns replaced by ``mark``, for records."""
    return [
        {
            k: mark if v is not None and SENSITIVE_COLUMN.search(k) else v
            for k, v in row.items()
        }
        for row in rows
    ]


def redact_groups(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Groups of rows (``{"table", "rows", ...}``) with their rows redacted."""
    return [{**g, "rows": redact_rows(g.get("rows") or [])} for g in groups]


def image_digest(image: Mapping[str, Any]) -> str:
    """Return the SHA-256 (hex) of a before-image's canonical JSON form."""
    return hashlib.sha256(_canonical(image)).hexdigest()


def records_archive(*, environ: Mapping[str, str] | None = None) -> Path:
    """Return the records archive of this run: ``$RUNBOOK_RECORDS``, else the default.

    ``runbook run`` sets the variable for the kernel to its ``--records`` folder;
    elsewhere (plain papermill, JupyterLab) it is ``records/`` at the project root.
    """
    environ = os.environ if environ is None else environ
    if environ.get(RECORDS_VARIABLE):
        return Path(environ[RECORDS_VARIABLE])
    from ._notebook import find_project_root

    return find_project_root() / "records"


def store_folder(*, environ: Mapping[str, str] | None = None) -> Path:
    """Return the folder before-images are kept in (see the module docstring)."""
    return records_archive(environ=environ) / FOLDER


def save_before_image(image: Mapping[str, Any], *, folder: Path | None = None) -> Path:
    """Write a before-image once, named by its digest, readable by its owner only.

    Returns:
        The file's path. Saving the same image again is a no-op.
    """
    folder = folder or store_folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{image_digest(image)}.json"
    if path.exists():
        return path
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(_canonical(image))
    logger.info("before-image saved path=%s", path)
    return path


def load_before_image(digest: str, *, folder: Path | None = None) -> dict[str, Any]:
    """Read the before-image with this digest, and check that it is unaltered.

    Raises:
        ActionError: when the file is missing or its content no longer matches.
    """
    path = (folder or store_folder()) / f"{digest}.json"
    try:
        image: dict[str, Any] = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ActionError(
            f"before-image {digest[:12]}…: cannot read {str(path)!r} ({error}); "
            f"expected the file the write saved in {FOLDER}/ of the archive "
            f"(set {RECORDS_VARIABLE} or --records to that archive)",
            action="undo",
        ) from error
    if image_digest(image) != digest:
        raise ActionError(
            f"before-image {digest[:12]}…: {str(path)!r} was altered (its content "
            "no longer has the recorded digest); nothing can be restored from it",
            action="undo",
        )
    return image


def _canonical(image: Mapping[str, Any]) -> bytes:
    return json.dumps(
        image, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
