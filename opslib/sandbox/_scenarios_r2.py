"""The scenario of the r2-recovery procedure: manuscript files deleted from R2.

``r2-objects-deleted`` (a state): the files of eight uploads are gone from
``manuscripts-raw`` while their D1 rows remain. R2 keeps no versions, so what
can come back comes from elsewhere:

- two have a copy under the same key in ``manuscripts-processed`` (left there by
  an earlier migration script);
- two were uploaded again by their authors (a second ``manuscripts`` row with
  the same ``file_hash``, whose file is still in ``manuscripts-raw``);
- one was sent back by its author and sits in the folder ``uploader-copies`` of
  the sandbox's state folder (what an operator would pass as ``recovery_dir``);
- three have no copy anywhere: the authors must upload them again. One of them
  has a decoy in ``manuscripts-processed`` under its key, with other bytes: its
  SHA-256 does not match the row's ``file_hash``, so it must not be restored.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from typing import Any

from ._r2 import DELETED_SWITCH, EXTRA_SWITCH
from ._scenarios import Scenario, register_scenario
from ._seedrows import manuscript_text
from ._state import World

RUNBOOK = "r2-recovery"
PROCESSED_BUCKET = "manuscripts-processed"
RAW_BUCKET = "manuscripts-raw"
COPIES_FOLDER = "uploader-copies"
_COLUMNS = (
    "id",
    "user_id",
    "title",
    "r2_key",
    "file_hash",
    "status",
    "genre",
    "word_count",
    "file_type",
    "metadata",
    "uploaded_at",
    "updated_at",
)
_ROWS_SQL = (
    f"SELECT {', '.join(_COLUMNS)} FROM manuscripts WHERE status = 'complete' "
    "ORDER BY id"
)
_INSERT_SQL = (
    f"INSERT INTO manuscripts ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))})"
)


def _deleted(world: World, now: float) -> None:
    rows = _pick(world, 8)
    extra = [[PROCESSED_BUCKET, row["r2_key"], _text(row)] for row in rows[:2]]
    extra += [_reupload(world, row, now) for row in rows[2:4]]
    extra.append([PROCESSED_BUCKET, rows[5]["r2_key"], "not the manuscript\n"])
    copies = world.state_dir / COPIES_FOLDER
    copies.mkdir(exist_ok=True)
    for old in copies.iterdir():
        old.unlink()
    (copies / _file_name(rows[4])).write_bytes(manuscript_text(rows[4]["id"]))
    world.scenario.switches[DELETED_SWITCH] = [row["r2_key"] for row in rows]
    world.scenario.switches[EXTRA_SWITCH] = extra
    world.scenario.details = {
        "deleted": [row["id"] for row in rows],
        "recoverable": [row["id"] for row in rows[:5]],
        "unrecoverable": [row["id"] for row in rows[5:]],
        "recovery_dir": str(copies),
    }


def _pick(world: World, count: int) -> list[dict[str, Any]]:
    connection = sqlite3.connect(world.database)
    connection.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in connection.execute(_ROWS_SQL).fetchall()]
    finally:
        connection.close()
    return random.Random(RUNBOOK).sample(rows, count)


def _text(row: dict[str, Any]) -> str:
    return manuscript_text(row["id"]).decode()


def _file_name(row: dict[str, Any]) -> str:
    return str(row["r2_key"]).rsplit("_", 1)[-1]


def _reupload(world: World, row: dict[str, Any], now: float) -> list[str]:
    """Insert the author's second upload of the same file: new id and key, same hash.

    Returns:
        The R2 object to add: the first upload's bytes under the new key.
    """
    new_id = str(uuid.UUID(int=random.Random(row["id"]).getrandbits(128), version=4))
    uploaded = int(now) - 3600
    key = f"{row['user_id']}/{new_id}/{uploaded}_{_file_name(row)}"
    values = {**row, "id": new_id, "r2_key": key, "uploaded_at": uploaded}
    connection = sqlite3.connect(world.database)
    try:
        with connection:
            connection.execute(_INSERT_SQL, [values[c] for c in _COLUMNS])
    finally:
        connection.close()
    return [RAW_BUCKET, key, _text(row)]


register_scenario(
    Scenario(
        "r2-objects-deleted",
        RUNBOOK,
        "reupload-planned",
        "8 manuscript files gone from R2; 5 have a copy elsewhere, 3 have none.",
    ),
    after_reset=_deleted,
)
