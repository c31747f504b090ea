"""An archive of records in object storage: ``--records s3://bucket/prefix``.

The layout is the local archive's, under the prefix::

    s3://bucket/prefix/2026/12/<id>.ipynb    the executed notebook, scrubbed
    s3://bucket/prefix/2026/12/<id>.json     its sidecar

The notebook goes through papermill's own S3 I/O (``papermill.iorw``'s handler
for ``s3://``, which uses boto3), other reads and writes use the boto3 session
papermill keeps, and the check before a run a client made the same way, so the
endpoint and the credentials come from the standard AWS environment only: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``
(required here, so a record never goes to a default host by accident),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``. papermill builds that session
once per process, from the environment it finds then.

There is no index object: a shared object would have to be read, changed and
written back, which loses rows when two runs finish together, and it could not
be write-once. The sidecars are the index. Listing names the sidecar keys
(1,000 per request) and reads sidecars newest first until enough match, so a
filter that matches few records in a large archive reads many sidecars.

Records stay write-once: both keys are looked up before anything is written,
and the sidecar, written last, is a conditional put (``If-None-Match: *``) that
the storage refuses when the key exists. papermill's own write has no such
condition, so two runs writing the very same notebook key at the same moment
could still race; record ids carry the second and four random hex digits.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import RunError

logger = logging.getLogger(__name__)

SCHEME = "s3://"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"[A-Za-z0-9._=+-]+")
_SIDECAR = re.compile(r"(\d{4})/(\d{2})/([^/.][^/]*)\.json")
_EXPECTED = (
    "expected s3://BUCKET/PREFIX: a bucket name of 3-63 lower-case letters, "
    "digits, dots and dashes, then folders of letters, digits and ._=+-"
)


def is_object_archive(records_dir: object) -> bool:
    """True when the archive is given as an ``s3://`` URL."""
    return str(records_dir).startswith(SCHEME)


@dataclass(frozen=True)
class ObjectArchive:
    """A records archive in a bucket.

    Attributes:
        bucket: the bucket's name.
        prefix: the folder inside it, without slashes at either end ("" for
            the bucket's top).
    """

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        """The archive as given: ``s3://bucket/prefix``."""
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        """The object key of a path relative to the archive (``2026/12/x.json``)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def url_of(self, relative: str) -> str:
        """The ``s3://`` URL of a path relative to the archive."""
        return f"{SCHEME}{self.bucket}/{self.key(relative)}"


def parse_archive(text: str) -> ObjectArchive:
    """Read ``s3://bucket/prefix`` into an archive; nothing is contacted.

    Raises:
        RunError: naming ``--records`` and the form expected.
    """
    if not is_object_archive(text):
        raise RunError(f"--records: got {text!r}, {_EXPECTED}, or a local folder")
    bucket, _, prefix = text.removeprefix(SCHEME).partition("/")
    segments = [segment for segment in prefix.split("/") if segment]
    bad = [s for s in segments if s in (".", "..") or not _SEGMENT.fullmatch(s)]
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or bad:
        raise RunError(f"--records: got {text!r}, {_EXPECTED}")
    return ObjectArchive(bucket, "/".join(segments))


def _client() -> Any:
    """papermill's boto3 client, made once per process."""
    from papermill.s3 import S3  # type: ignore[import-untyped]

    return S3().client


def _checking_client() -> Any:
    """A client of its own, made as papermill makes its session's.

    The check may run in a process that forks workers afterwards (a batch);
    papermill's session, with its open connections, is made by whichever
    process reads or writes records, never handed down to forked children.
    """
    import boto3  # type: ignore[import-untyped]

    return boto3.session.Session().client("s3")


def _endpoint_shown(url: str | None) -> str:
    """The endpoint without any user or password part, for messages."""
    parts = urllib.parse.urlsplit(url or "")
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or '?'}://{host}{port}"


def check_archive(archive: ObjectArchive) -> None:
    """Make sure the bucket is reachable and exists, before any kernel starts.

    Raises:
        RunError: naming ``--records``, what went wrong and what is expected:
            no endpoint configured, the endpoint unreachable, the bucket
            missing, or the credentials refused.
    """
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        NoCredentialsError,
    )

    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        raise RunError(
            f"--records: got {archive.url!r}, but neither "
            f"{' nor '.join(ENDPOINT_VARIABLES)} is set; expected the S3 endpoint "
            "of the storage holding the bucket in one of them, with the "
            "credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    client = _checking_client()
    endpoint = client.meta.endpoint_url
    if os.environ.get("BOTO3_ENDPOINT_URL", endpoint) != endpoint:
        raise RunError(
            f"--records: got {archive.url!r}, but BOTO3_ENDPOINT_URL names another "
            f"endpoint than {_endpoint_shown(endpoint)}; expected one endpoint, "
            f"set in {' or '.join(ENDPOINT_VARIABLES)} only"
        )
    where = f"at {_endpoint_shown(endpoint)}"
    try:
        client.head_bucket(Bucket=archive.bucket)
    except NoCredentialsError as error:
        raise RunError(
            f"--records: got {archive.url!r}, but no credentials were found; "
            "expected AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from error
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code"))
        what = {
            "404": f"no bucket {archive.bucket!r} {where}",
            "NoSuchBucket": f"no bucket {archive.bucket!r} {where}",
            "403": f"the credentials may not read bucket {archive.bucket!r} {where}",
        }.get(code, f"bucket {archive.bucket!r} {where} answered {code}")
        raise RunError(
            f"--records: got {archive.url!r}, but {what}; expected an existing "
            "bucket the credentials in AWS_ACCESS_KEY_ID may write to"
        ) from error
    except BotoCoreError as error:
        raise RunError(
            f"--records: got {archive.url!r}, but the storage {where} could not be "
            f"reached ({type(error).__name__}); expected an S3 endpoint answering "
            f"at the URL in {' or '.join(ENDPOINT_VARIABLES)}"
        ) from error


def _exists(archive: ObjectArchive, relative: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        _client().head_object(Bucket=archive.bucket, Key=archive.key(relative))
    except ClientError as error:
        if str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
            return False
        raise
    return True


def write_record(
    archive: ObjectArchive, notebook: tuple[str, str], sidecar: tuple[str, str]
) -> None:
    """Write a record's notebook, then its sidecar, each once.

    Args:
        archive: the bucket and prefix.
        notebook: the notebook's path relative to the archive, and its text.
        sidecar: the sidecar's path relative to the archive, and its text.

    Raises:
        RunError: when either object exists already or a write fails.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from papermill.iorw import papermill_io  # type: ignore[import-untyped]

    try:
        for relative, _ in (notebook, sidecar):
            if _exists(archive, relative):
                raise RunError(
                    f"record object {archive.url_of(relative)!r} exists already; "
                    "records are never rewritten"
                )
        papermill_io.write(notebook[1], archive.url_of(notebook[0]))
        _client().put_object(
            Bucket=archive.bucket,
            Key=archive.key(sidecar[0]),
            Body=sidecar[1].encode("utf-8"),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code"))
        if code in ("412", "PreconditionFailed"):
            raise RunError(
                f"record object {archive.url_of(sidecar[0])!r} exists already; "
                "records are never rewritten"
            ) from error
        raise RunError(
            f"could not write the record to {archive.url!r} ({code}); check that "
            "the credentials may write to the bucket"
        ) from error
    except BotoCoreError as error:
        raise RunError(
            f"could not write the record to {archive.url!r} "
            f"({type(error).__name__}); check that the storage is reachable"
        ) from error


def sidecar_keys(archive: ObjectArchive, id_prefix: str = "") -> dict[str, str]:
    """The archive's sidecars: record id to path relative to the archive.

    An id prefix that starts with a whole month (``202612``) lists that month's
    folder only.

    Raises:
        RunError: when the bucket cannot be listed.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    start = archive.key("")
    if re.match(r"\d{6}", id_prefix):
        start = archive.key(f"{id_prefix[:4]}/{id_prefix[4:6]}/{id_prefix}")
    found: dict[str, str] = {}
    try:
        pages = _client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=archive.bucket, Prefix=start):
            for item in page.get("Contents") or []:
                relative = str(item["Key"])[len(archive.key("")) :]
                match = _SIDECAR.fullmatch(relative)
                if match:
                    found[match.group(3)] = relative
    except (BotoCoreError, ClientError) as error:
        raise RunError(
            f"--records: could not list {archive.url!r} ({_reason(error)}); "
            "expected a reachable bucket the credentials may read"
        ) from error
    return found


def read_sidecar(archive: ObjectArchive, relative: str) -> dict[str, Any]:
    """Read one sidecar.

    Raises:
        RunError: when it cannot be read or holds no JSON object.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    url = archive.url_of(relative)
    try:
        answer = _client().get_object(Bucket=archive.bucket, Key=archive.key(relative))
        data = json.loads(answer["Body"].read().decode("utf-8"))
    except (BotoCoreError, ClientError, ValueError) as error:
        raise RunError(f"could not read {url!r} ({_reason(error)})") from error
    if not isinstance(data, dict):
        raise RunError(f"{url!r} does not hold a JSON object")
    return data


def iter_sidecars(archive: ObjectArchive) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each sidecar with its path relative to the archive, newest first (by id,
    which starts with the start time); an unreadable one is skipped."""
    keys = sidecar_keys(archive)
    for record_id in sorted(keys, reverse=True):
        try:
            yield keys[record_id], read_sidecar(archive, keys[record_id])
        except RunError as error:
            logger.warning("skipping unreadable sidecar %s", error)


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code"))
    return type(error).__name__
