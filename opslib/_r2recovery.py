"""Recovering manuscript files lost from R2, which keeps no object versions.

The old runbook's recovery (``--include-versions``, ``--version-id``) cannot
work: R2 implements no versioning, so an overwrite or a delete is final. What
can come back comes from elsewhere, and every candidate must hash to the row's
``manuscripts.file_hash`` (SHA-256 of the upload) before it is used:

1. the same key in another of the environment's buckets;
2. another upload of the same file (a ``manuscripts`` row with the same
   ``file_hash`` whose own file is still in ``manuscripts-raw``);
3. a file in a local folder (``recovery_dir``) holding what the uploaders sent
   back.

The gated re-upload puts each recovered file at the row's ``r2_key`` with the
row's MIME type. Its before-image is the absence of each key; at the gate every
key is checked again (one that exists now refuses the plan) and every source is
read and hashed again. What has no verified copy is listed, for the authors to
upload again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check
from ._procedure import conclude_procedure
from ._r2 import R2Client
from ._verdict import Verdict

logger = logging.getLogger(__name__)

ACTION = "r2-reupload"
RUNBOOK = "r2-recovery"
RAW_BINDING = "MANUSCRIPTS_RAW"
RAW_BUCKET = "manuscripts-raw"
MAX_ROWS = 20_000
MAX_FILE_BYTES = 50 * 1024 * 1024
_ROWS_SQL = (
    "SELECT id, user_id, r2_key, file_hash, file_type, status, uploaded_at "
    "FROM manuscripts ORDER BY uploaded_at DESC LIMIT ?"
)


def raw_bucket(environment: Environment) -> str:
    """The bucket uploads go to (binding ``MANUSCRIPTS_RAW``)."""
    return environment.r2_buckets.get(RAW_BINDING, RAW_BUCKET)


@check("missing-objects")
def check_missing_objects(environment: Environment) -> Finding:
    """Manuscripts rows whose file is no longer at its ``r2_key``.

    The bucket is listed once (ListObjectsV2, paged) and compared with the rows;
    only a key the listing lacks is looked up on its own (HEAD) before it counts
    as missing.
    """
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(_ROWS_SQL, [MAX_ROWS])[0]["results"]
    finally:
        client.close()
    bucket = raw_bucket(environment)
    r2 = R2Client(environment)
    try:
        keys = set(r2.list_keys(bucket, limit=4 * MAX_ROWS))
        # A key the listing did not reach (a bucket past the limit) is looked up.
        missing = [
            dict(r)
            for r in rows
            if r["r2_key"] not in keys and r2.head(bucket, r["r2_key"]) is None
        ]
    finally:
        r2.close()
    status = Status.FAIL if missing else Status.OK
    summary = f"{len(missing)} of {len(rows)} manuscripts have no file in R2"
    return Finding("missing-objects", status, summary, missing, {"missing": missing})


@check("recovery-sources")
def find_recovery_sources(
    environment: Environment, missing: Finding, recovery_dir: str = ""
) -> Finding:
    """Look for a verified copy of every missing file; list those with none.

    Args:
        environment: where D1 and R2 are.
        missing: the ``missing-objects`` finding.
        recovery_dir: a local folder of files the uploaders sent back, or "".
    """
    rows = list(missing.facts.get("missing") or [])
    if not rows:
        return Finding("recovery-sources", Status.OK, "nothing is missing")
    local = hash_folder(recovery_dir)
    r2 = R2Client(environment)
    try:
        found = [_source_of(environment, r2, row, local) for row in rows]
    finally:
        r2.close()
    table = [
        {
            "manuscript": row["id"],
            "r2_key": row["r2_key"],
            "source": _describe(source),
        }
        for row, source in zip(rows, found, strict=True)
    ]
    recoverable = [
        {**_slim(row), "source": source}
        for row, source in zip(rows, found, strict=True)
        if source
    ]
    lost = [_slim(row) for row, source in zip(rows, found, strict=True) if not source]
    status = Status.WARN if lost else Status.OK
    summary = f"{len(recoverable)} of {len(rows)} can be recovered, {len(lost)} cannot"
    facts = {"recoverable": recoverable, "lost": lost}
    return Finding("recovery-sources", status, summary, table, facts)


def hash_folder(folder: str) -> dict[str, str]:
    """SHA-256 of every file directly in ``folder`` (hash to path); {} for ""."""
    if not folder:
        return {}
    found: dict[str, str] = {}
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
            found.setdefault(_sha256(path.read_bytes()), str(path))
    return found


def _source_of(
    environment: Environment,
    r2: R2Client,
    row: Mapping[str, Any],
    local: Mapping[str, str],
) -> dict[str, str] | None:
    wanted = str(row["file_hash"]).lower()
    raw = raw_bucket(environment)
    for bucket in environment.r2_buckets.values():
        if bucket != raw and _r2_hash(r2, bucket, row["r2_key"]) == wanted:
            return {"kind": "bucket", "bucket": bucket, "key": row["r2_key"]}
    for key in _same_file_keys(environment, row):
        if _r2_hash(r2, raw, key) == wanted:
            return {"kind": "bucket", "bucket": raw, "key": key}
    if wanted in local:
        return {"kind": "file", "path": local[wanted]}
    return None


def _same_file_keys(environment: Environment, row: Mapping[str, Any]) -> list[str]:
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(
            "SELECT r2_key FROM manuscripts WHERE file_hash = ? AND id <> ?",
            [row["file_hash"], row["id"]],
        )[0]["results"]
    finally:
        client.close()
    return [str(r["r2_key"]) for r in rows]


def _r2_hash(r2: R2Client, bucket: str, key: str) -> str:
    data = r2.get_bytes(bucket, key)
    return _sha256(data) if data is not None else ""


def read_source(r2: R2Client, source: Mapping[str, str]) -> bytes | None:
    """The bytes of a recovery source (an R2 object or a local file), or None."""
    if source["kind"] == "file":
        path = Path(source["path"])
        return path.read_bytes() if path.is_file() else None
    return r2.get_bytes(source["bucket"], source["key"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe(source: Mapping[str, str] | None) -> str:
    if source is None:
        return "none: ask the author to upload it again"
    if source["kind"] == "file":
        return f"local file {Path(source['path']).name}"
    return f"{source['bucket']}/{source['key']}"


def _slim(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "user_id", "r2_key", "file_hash", "file_type")
    return {k: row[k] for k in keys}


def reupload_phrase(environment: Environment, count: int) -> str:
    """The confirm phrase that authorises re-uploading ``count`` files."""
    return f"re-upload {count} files to {raw_bucket(environment)} in {environment.name}"


def plan_reupload(environment: Environment, sources: Finding) -> ActionPlan:
    """Plan putting every verified copy back at its row's ``r2_key`` (or nothing).

    The before-image is each key's absence; the files that cannot be recovered
    are listed in it too, so the record says what is still lost.
    """
    recoverable = list(sources.facts.get("recoverable") or [])
    lost = list(sources.facts.get("lost") or [])
    bucket = raw_bucket(environment)
    if not recoverable:
        why = (
            f"{len(lost)} files cannot be recovered from any copy"
            if lost
            else "nothing to re-upload"
        )
        return ActionPlan("none", environment.name, bucket, why, before={"lost": lost})
    changes = tuple(
        {
            "what": f"{bucket}/{r['r2_key']}",
            "from": "absent",
            "to": _describe(r["source"]),
        }
        for r in recoverable
    )
    return ActionPlan(
        action=ACTION,
        environment=environment.name,
        target=bucket,
        summary=(
            f"re-upload {len(recoverable)} files to {bucket}; {len(lost)} cannot be "
            "recovered (the authors must upload them again)"
        ),
        changes=changes,
        before={"bucket": bucket, "absent": recoverable, "lost": lost},
        undo=(
            "the keys were absent before; to take a file out again, delete its key "
            "by hand (runbook undo does not delete manuscripts)"
        ),
        confirm_phrase=reupload_phrase(environment, len(recoverable)),
    )


def _apply_reupload(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    bucket = str(plan.before["bucket"])
    rows: list[dict[str, Any]] = list(plan.before["absent"])
    r2 = R2Client(environment)
    try:
        refusal = _reupload_refusal(r2, bucket, rows)
        if refusal:
            return ActionResult(plan, "refused", refusal, operator)
        logger.info("applying action=%s bucket=%s files=%s", ACTION, bucket, len(rows))
        for row in rows:
            data = read_source(r2, row["source"]) or b""
            r2.put_bytes(
                bucket,
                row["r2_key"],
                data,
                content_type=str(row.get("file_type") or "application/octet-stream"),
                metadata={"recovered-by": "runbook r2-recovery"},
            )
        after = verify_reupload(r2, bucket, rows)
    finally:
        r2.close()
    detail = f"{len(rows)} files put back in {bucket}"
    response = {"keys": [r["r2_key"] for r in rows]}
    return ActionResult(
        plan, "applied", detail, operator, response=response, after=after
    )


def _reupload_refusal(
    r2: R2Client, bucket: str, rows: Sequence[Mapping[str, Any]]
) -> str:
    present = [r["r2_key"] for r in rows if r2.head(bucket, r["r2_key"]) is not None]
    if present:
        return (
            f"{len(present)} key(s) exist again (such as {present[0]!r}): the plan "
            "is stale, re-run the procedure; nothing was written"
        )
    changed = [
        r["id"]
        for r in rows
        if _sha256(read_source(r2, r["source"]) or b"") != str(r["file_hash"]).lower()
    ]
    if changed:
        return (
            f"the copies of {', '.join(changed)} no longer match their file_hash: "
            "re-run the procedure; nothing was written"
        )
    return ""


def verify_reupload(
    r2: R2Client, bucket: str, rows: Sequence[Mapping[str, Any]]
) -> Finding:
    """Follow-up: read every re-uploaded file and compare its SHA-256 with D1's."""
    bad = [
        r["r2_key"]
        for r in rows
        if _r2_hash(r2, bucket, r["r2_key"]) != str(r["file_hash"]).lower()
    ]
    if bad:
        return Finding(
            "reupload-after", Status.FAIL, f"{len(bad)} files differ from file_hash"
        )
    text = f"all {len(rows)} files are back and match their file_hash"
    return Finding("reupload-after", Status.OK, text)


def conclude_r2_recovery(
    plan: ActionPlan,
    result: ActionResult,
    findings: Sequence[Finding],
    *,
    recovery_dir: str = "",
) -> Verdict:
    """The verdict: re-upload planned or done, nothing missing, or files lost for good.

    Files with no verified copy keep the verdict from reading as all clear: with
    nothing to re-upload the cause is ``unrecoverable``; after a re-upload the
    next action names how many are still lost.
    """
    parameters = {"recovery_dir": recovery_dir} if recovery_dir else {}
    verdict = conclude_procedure(RUNBOOK, plan, result, findings, parameters=parameters)
    lost = list(plan.before.get("lost") or [])
    if not lost:
        return verdict
    ask = (
        f"{len(lost)} files cannot be recovered: ask their authors to upload them "
        "again (manuscript ids in the recovery-sources step); a recovery_dir "
        "with the files they send back recovers them in a next run"
    )
    unknown = any(f.status is Status.UNKNOWN for f in findings)
    if plan.is_noop and not unknown:
        return dataclasses.replace(
            verdict, status=Status.FAIL, cause="unrecoverable", next_action=ask
        )
    return dataclasses.replace(verdict, next_action=f"{verdict.next_action}; {ask}")


register_applier(ACTION, _apply_reupload)
