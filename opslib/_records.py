"""The archive of incident records: writing them once, finding and reading them.

An archive is a local folder (``records/`` by default)::

    records/
      index.sqlite                     one row per run, rebuilt from the sidecars
      2026/12/<id>.ipynb               the executed notebook, scrubbed
      2026/12/<id>.json                its sidecar: verdict, error, timings

Each file is written to a temporary name and moved into place, and is never
written again: a record is evidence. The index (``_index.py``) is a convenience
for searching and listing; a record whose index row was lost is still found by
``load_record``, and ``runbook reindex`` puts the row back.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import itertools
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ._errors import RunError
from ._index import (
    INDEX_FIELDS as INDEX_FIELDS,
    INDEX_NAME as INDEX_NAME,
    IndexQuery,
    add_row,
    index_row,
    search,
    sidecar_paths,
)
from ._objectrecords import is_object_archive
from ._recordquery import RecordQuery as RecordQuery, build_query

_Where = TypeVar("_Where")

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RECORD_ID = re.compile(r"\d{8}T\d{6}Z-[A-Za-z0-9._-]{1,160}-[0-9a-f]{4}")
_SHOWN_CANDIDATES = 5


def archive_dir(records_dir: str | Path) -> Path:
    """Return the archive folder as an absolute local path.

    Raises:
        RunError: for a URL such as ``s3://bucket/records``: only running,
            listing and showing records work with an archive in object storage
            (``_objectrecords``); everything else reads a local folder.
    """
    text = str(records_dir)
    if "://" in text:
        raise RunError(
            f"records_dir: got {text!r}, expected a local folder here; an "
            "s3://BUCKET/PREFIX archive serves runbook run, records and show, "
            "and other uses need the records copied to a local folder"
        )
    return Path(text).expanduser().absolute()


def new_record_id(
    started: datetime.datetime, runbook: str, incident_id: str = ""
) -> str:
    """Make a record id: UTC start time, runbook, incident id and 4 random hex.

    Example: ``20261204T171501Z-api-down-INC-42-3fa9``. Characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``-``.
    """
    parts = [f"{started.astimezone(datetime.UTC):%Y%m%dT%H%M%SZ}", runbook]
    parts += [incident_id] if incident_id else []
    parts.append(secrets.token_hex(2))
    return _UNSAFE.sub("-", "-".join(parts))


def is_record_id(text: str) -> bool:
    """True for text shaped like an id ``new_record_id`` makes."""
    return bool(_RECORD_ID.fullmatch(text))


def record_folder(records_dir: str | Path, started: datetime.datetime) -> Path:
    """Return the folder a record started at this time goes to: ``YYYY/MM``."""
    return archive_dir(records_dir) / month_folder(started)


def month_folder(started: datetime.datetime) -> str:
    """The archive's subfolder for a record started at this time: ``YYYY/MM``."""
    return f"{started.astimezone(datetime.UTC):%Y/%m}"


def write_once(path: Path, text: str) -> None:
    """Write a file atomically, refusing to replace one that exists.

    Raises:
        RunError: when the file exists or cannot be written.
    """
    if path.exists():
        raise RunError(
            f"record file {str(path)!r} exists already; records are never rewritten"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, text)
    except OSError as error:
        raise RunError(
            f"could not write record file {str(path)!r} ({error}); check that the "
            "records folder is writable and has space"
        ) from error


def _write_atomically(path: Path, text: str) -> None:
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def append_index(records_dir: str | Path, row: Mapping[str, Any]) -> None:
    """Add one record's row to the archive's index.

    ``row`` is a sidecar, or a mapping with at least the keys of
    ``INDEX_FIELDS``; only those, the notebook and the findings are indexed.
    Runs finishing at the same time on one machine wait for each other's
    transaction, so no row is lost.

    Raises:
        RunError: when the index cannot be written.
    """
    add_row(archive_dir(records_dir), index_row(row))


def list_records(
    records_dir: str | Path,
    query: RecordQuery | None = None,
    *,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Return the index rows of the records matching every filter, newest first.

    Args:
        records_dir: the archive folder.
        query: the filters (``RecordQuery``); None finds every record.
        limit: the most rows to return.

    Returns:
        Rows with the keys of ``INDEX_FIELDS``; none when the archive is empty.

    Example: ``list_records(archive, RecordQuery(environment="staging"))``.
    An archive in object storage (``s3://``) has no index of its own: see
    ``search_records``.

    Raises:
        ParameterError: naming each wrong filter and the form expected.
        RunError: when an archive in object storage cannot be read.
    """
    return search_records(records_dir, limit, query or RecordQuery())


def search_records(
    records_dir: str | Path,
    limit: int,
    query: RecordQuery,
    labels: Mapping[str, str] | None = None,
    check_names: bool = False,
) -> list[dict[str, Any]]:
    """The rows ``list_records`` returns, for a person's query as well.

    An archive in object storage is searched through its sidecars: with no
    filter, the newest ``limit`` sidecars are read; with any, every sidecar is
    copied into a temporary folder and indexed there as ``runbook reindex``
    would, then searched the same way as a local archive.

    Args:
        records_dir: the archive: a local folder or ``s3://bucket/prefix``.
        limit: the most rows to return.
        query: the filters.
        labels: how to name each filter in messages (the command's options).
        check_names: refuse names neither the archive nor the project knows
            (``build_query``), for names a person typed.
    """

    def checked(root: Path) -> IndexQuery:
        return build_query(root, query, labels=labels, check_names=check_names)

    if is_object_archive(records_dir):
        return _object_rows(str(records_dir), limit, query.is_empty(), checked)
    root = archive_dir(records_dir)
    return search(root, checked(root), limit)


def _object_rows(
    url: str,
    limit: int,
    everything: bool,
    checked: Callable[[Path], IndexQuery],
) -> list[dict[str, Any]]:
    from ._index import rebuild
    from ._objectrecords import iter_sidecars, parse_archive

    sidecars = iter_sidecars(parse_archive(url))
    if everything:
        return [index_row(sidecar) for _, sidecar in itertools.islice(sidecars, limit)]
    with tempfile.TemporaryDirectory(prefix="opslib-object-index-") as folder:
        root = Path(folder)
        for relative, sidecar in sidecars:
            write_once(root / relative, json.dumps(sidecar))
        rebuild(root)
        return search(root, checked(root), limit)


def load_record(records_dir: str | Path, record_id: str) -> dict[str, Any]:
    """Read a record's sidecar.

    Args:
        records_dir: the archive folder.
        record_id: the full id, or a prefix matching exactly one record.

    Raises:
        RunError: when no record or several records match, or the sidecar is not
            valid JSON.
    """
    if is_object_archive(records_dir):
        return _load_object_record(str(records_dir), record_id)
    sidecars = {path.stem: path for path in sidecar_paths(archive_dir(records_dir))}
    path = sidecars.get(record_id) or _unique_prefix(sidecars, record_id, records_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunError(
            f"record {record_id!r}: could not read {str(path)!r} ({error})"
        ) from error
    if not isinstance(data, dict):
        raise RunError(
            f"record {record_id!r}: {str(path)!r} does not hold a JSON object"
        )
    return data


def _load_object_record(url: str, record_id: str) -> dict[str, Any]:
    from ._objectrecords import parse_archive, read_sidecar, sidecar_keys

    archive = parse_archive(url)
    sidecars = sidecar_keys(archive, record_id)
    if not any(name.startswith(record_id) for name in sidecars):
        sidecars = sidecar_keys(archive)  # to name the most recent ones
    relative = sidecars.get(record_id) or _unique_prefix(sidecars, record_id, url)
    return read_sidecar(archive, relative)


def _unique_prefix(
    sidecars: Mapping[str, _Where], record_id: str, records_dir: str | Path
) -> _Where:
    matches = sorted(
        name for name in sidecars if record_id and name.startswith(record_id)
    )
    if len(matches) == 1:
        return sidecars[matches[0]]
    if matches:
        raise RunError(
            f"record_id: got {record_id!r}, which matches {len(matches)} records: "
            f"{', '.join(matches[:_SHOWN_CANDIDATES])}; give more of the id"
        )
    recent = sorted(sidecars, reverse=True)[:_SHOWN_CANDIDATES]
    raise RunError(
        f"record_id: got {record_id!r}, expected the id or a unique prefix of a "
        f"record in {str(records_dir)!r}; most recent: {', '.join(recent) or 'none'}"
    )


def format_verdict(sidecar: Mapping[str, Any]) -> str:
    """Render a record's outcome as a few plain lines for the terminal."""
    verdict = sidecar.get("verdict") or {}
    get = sidecar.get
    lines = [
        f"record:      {get('id')}",
        f"runbook:     {get('runbook')}  (environment {get('environment')})",
        f"run:         {get('status')} in {_seconds(get('duration_s'))}",
    ]
    lines += _error_lines(sidecar.get("error"))
    if not verdict:
        why = "a gate passed in JupyterLab" if get("source") else "the notebook"
        lines.append(f"verdict:     none ({why} did not reach one)")
        return "\n".join(lines + _gate_lines(sidecar.get("actions") or []))

    lines += [
        f"verdict:     {verdict.get('status')} — cause: {verdict.get('cause')}",
        f"summary:     {verdict.get('summary')}",
    ]
    evidence = verdict.get("evidence") or []
    if evidence:
        lines += ["evidence:", *(f"  - {_one_line(item)}" for item in evidence)]
    actions = sidecar.get("actions") or []
    lines += hidden_value_note(
        [
            f"next action: {_next_action(verdict, actions)}",
            f"gated step:  {_gated_step(verdict.get('gated_step'), actions)}",
        ],
        "note:        ",
    )
    lines += _gate_lines(actions)
    return "\n".join(lines)


def hidden_value_note(lines: Sequence[str], lead: str) -> list[str]:
    """The lines, with a warning above the first that holds a value records hide.

    A command printed from a record carries the scrubber's tokens (such as
    ``<email:1f3a9c2e>``) where the run saw real values; pasted as it is, it
    would write or look for the token itself.
    """
    from ._scrub import scrub_tokens

    out = list(lines)
    for at, line in enumerate(out):
        tokens = sorted(set(scrub_tokens(line)))
        if tokens:
            note = (
                f"{lead}what follows holds {', '.join(tokens)}: values the records "
                "hide; put the real values in before running the command"
            )
            out.insert(at, note)
            break
    return out


_GATE_WORDS = {
    "dry-run": "DRY RUN, nothing changed",
    "not-needed": "nothing to apply",
    "refused": "REFUSED, nothing changed",
    "applied": "APPLIED",
    "failed": "FAILED",
}


def _gate_lines(actions: Sequence[Any]) -> list[str]:
    """One line per gate passed: what happened to each planned action, and after."""
    lines = []
    for action in actions:
        if not isinstance(action, Mapping) or action.get("kind") != "result":
            continue
        word = _GATE_WORDS.get(str(action.get("outcome")), str(action.get("outcome")))
        detail = str(action.get("detail"))
        if detail.endswith("nothing changed"):
            word = word.removesuffix(", nothing changed")
        lines.append(f"gate:        {action.get('action')}: {word}: {detail}")
        after = action.get("after")
        if isinstance(after, Mapping):
            lines.append(
                f"after:       [{str(after.get('status')).upper()}] "
                f"{after.get('name')}: {after.get('summary')}"
            )
    return lines


def _error_lines(error: object) -> list[str]:
    if not isinstance(error, Mapping):
        return []
    where = (
        f" in cell {error['cell_index']}" if error.get("cell_index") is not None else ""
    )
    what = f"{error.get('ename')}: {error.get('evalue')}"
    return [f"error:       {error.get('kind')}{where}: {what}"]


def _applied(actions: Sequence[Any]) -> list[Mapping[str, Any]]:
    return [
        a
        for a in actions
        if isinstance(a, Mapping)
        and a.get("kind") == "result"
        and a.get("outcome") == "applied"
    ]


def _next_action(verdict: Mapping[str, Any], actions: Sequence[Any]) -> str:
    """The verdict's next action, unless it is the gated step this run applied.

    A verdict reached before its gate still advises the step; once the step was
    applied in the same run, repeating its command would be wrong.
    """
    text = str(verdict.get("next_action") or "-")
    step = verdict.get("gated_step")
    command = step.get("command") if isinstance(step, Mapping) else None
    if command and command in text and _applied(actions):
        return (
            "the advised step was applied in this run (see the gate line below); "
            f"run {verdict.get('runbook') or 'the runbook'} again to check what is "
            "live now"
        )
    return text


def _gated_step(step: object, actions: Sequence[Any] = ()) -> str:
    if not step:
        return "-"
    if _applied(actions):
        return "applied in this run (see the gate line below); not to be run again"
    if isinstance(step, Mapping) and step.get("command"):
        return str(step["command"])
    return _one_line(step)


def _one_line(item: object) -> str:
    if isinstance(item, Mapping):
        return ", ".join(f"{key}={value}" for key, value in item.items())
    return " ".join(str(item).split())


def _seconds(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "?"
