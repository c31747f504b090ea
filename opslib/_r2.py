"""A thin R2 client over its S3-compatible API (boto3).

R2 speaks SigV4 with region ``auto`` at ``https://<account>.r2.cloudflarestorage.com``
(the environment's ``r2_endpoint_url``), with an access key pair derived from an R2
API token: ``R2_ACCESS_KEY_ID`` and ``R2_SECRET_ACCESS_KEY``, never the Bearer
token. boto3 1.36 and later add CRC32 checksum trailers that R2 refuses, so both
checksum settings are "when_required" (CLOUDFLARE.md section 6). R2 keeps no
object versions: what this client reads is the only copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config import MISSING_FILE_HINT, Environment
from ._errors import (
    APIError,
    AuthError,
    ConfigError,
    RateLimitError,
    ServiceError,
    UnreachableError,
)
from ._http import rate_limit_wait

logger = logging.getLogger(__name__)

KEY_VARIABLE = "R2_ACCESS_KEY_ID"
SECRET_VARIABLE = "R2_SECRET_ACCESS_KEY"
_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Unauthorized"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_THROTTLE_CODES = frozenset({"SlowDown", "TooManyRequests"})


class R2Client:
    """Object reads in one environment's R2 buckets.

    Args:
        environment: names the endpoint and holds the key pair.
        timeout: seconds to connect and to read.

    Raises:
        ConfigError: when the environment has no usable endpoint or key pair.
    """

    def __init__(
        self, environment: Environment, *, timeout: float | None = None
    ) -> None:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        endpoint = environment.r2_endpoint_url
        if not endpoint or "<" in endpoint:
            raise ConfigError(
                f"r2_endpoint_url: got {endpoint!r} in environment "
                f"{environment.name!r}; expected https://<account>.r2."
                "cloudflarestorage.com with the real account id"
            )
        key, secret = (
            environment.secret(KEY_VARIABLE),
            environment.secret(SECRET_VARIABLE),
        )
        if not key or not secret:
            hint = f" in {environment.secrets_file} ({MISSING_FILE_HINT})"
            raise ConfigError(
                f"R2 credentials: {KEY_VARIABLE} and {SECRET_VARIABLE} must both be "
                "set" + (hint if environment.secrets_file else "")
            )
        self.environment = environment
        self.endpoint = endpoint
        timeout = environment.timeout(timeout, 15.0)
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        )
        self._s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="auto",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=config,
        )

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        """Return an object's bytes, or None when there is no such key.

        Raises:
            ServiceError: when R2 cannot be reached or refuses the call.
        """
        try:
            answer = self._s3.get_object(Bucket=bucket, Key=key)
            data: bytes = answer["Body"].read()
        except Exception as error:
            if _code(error) in _MISSING_CODES:
                return None
            raise self._error(error, bucket, key) from error
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if not _etag_agrees(md5, str(answer.get("ETag") or "")):
            raise _cut_short(self.endpoint, bucket, key, len(data))
        logger.debug("r2 get bucket=%s key=%s bytes=%s", bucket, key, len(data))
        return data

    def get_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        """Return an object parsed as a JSON object, or None when absent.

        An object that is not a JSON object reads as ``{"unreadable": <text>}``
        (its first 80 characters), so a caller can show it instead of failing.
        """
        data = self.get_bytes(bucket, key)
        if data is None:
            return None
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        return {"unreadable": data[:80].decode("utf-8", "replace")}

    def list_keys(
        self, bucket: str, *, prefix: str = "", limit: int = 1000
    ) -> list[str]:
        """List up to ``limit`` keys under ``prefix`` (ListObjectsV2, paged)."""
        return [o["key"] for o in self.list_objects(bucket, prefix=prefix, limit=limit)]

    def list_objects(
        self, bucket: str, *, prefix: str = "", limit: int = 1000
    ) -> list[dict[str, Any]]:
        """List up to ``limit`` objects: ``{key, size, uploaded}`` (uploaded aware, UTC).

        Raises:
            ServiceError: when R2 cannot be reached or refuses the call.
        """
        found: list[dict[str, Any]] = []
        token = ""
        while len(found) < limit:
            args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                args["ContinuationToken"] = token
            try:
                page = self._s3.list_objects_v2(**args)
            except Exception as error:
                raise self._error(error, bucket, prefix) from error
            found += [
                {"key": o["Key"], "size": o["Size"], "uploaded": o["LastModified"]}
                for o in page.get("Contents") or []
            ]
            token = page.get("NextContinuationToken") or ""
            if not page.get("IsTruncated") or not token:
                break
        return found[:limit]

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """Return an object's size, content type and custom metadata, or None.

        Metadata names come back lower-cased, as S3 sends them.
        """
        try:
            answer = self._s3.head_object(Bucket=bucket, Key=key)
        except Exception as error:
            if _code(error) in _MISSING_CODES:
                return None
            raise self._error(error, bucket, key) from error
        return {
            "size": answer.get("ContentLength"),
            "content_type": answer.get("ContentType"),
            "uploaded": answer.get("LastModified"),
            "metadata": {
                k.lower(): v for k, v in (answer.get("Metadata") or {}).items()
            },
        }

    def download(self, bucket: str, key: str, path: str | Path) -> int:
        """Stream an object into a file and return its size in bytes.

        Raises:
            ServiceError: when R2 cannot be reached, refuses the call or has no
                such key.
        """
        size = 0
        digest = hashlib.md5(usedforsecurity=False)
        try:
            answer = self._s3.get_object(Bucket=bucket, Key=key)
            with open(path, "wb") as out:
                for chunk in answer["Body"].iter_chunks(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        except Exception as error:
            raise self._error(error, bucket, key) from error
        if not _etag_agrees(digest.hexdigest(), str(answer.get("ETag") or "")):
            raise _cut_short(self.endpoint, bucket, key, size)
        logger.info("r2 download bucket=%s key=%s bytes=%s", bucket, key, size)
        return size

    def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        """Write an object (never retried by the caller's gate).

        Raises:
            ServiceError: when R2 cannot be reached or refuses the call.
        """
        try:
            self._s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=dict(metadata),
            )
        except Exception as error:
            raise self._error(error, bucket, key) from error
        logger.info("r2 put bucket=%s key=%s bytes=%s", bucket, key, len(data))

    def close(self) -> None:
        """Close the connection pool."""
        self._s3.close()

    def _error(self, error: Exception, bucket: str, key: str) -> ServiceError:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        url = f"{self.endpoint}/{bucket}/{key}"
        if isinstance(error, ClientError):
            code = _code(error)
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            kind: type[ServiceError] = APIError
            if code in _AUTH_CODES:
                kind = AuthError
            elif status == 429 or code in _THROTTLE_CODES:
                kind = RateLimitError
            detail = code
            if not code or code.isdigit():  # no S3 error code: the body was unreadable
                detail = "without an S3 error code: the answer could not be read"
            wait = ""
            if kind is RateLimitError:
                headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders")
                wait = "; " + rate_limit_wait(
                    "R2",
                    str((headers or {}).get("retry-after", "")),
                    "back off and retry in a minute",
                )
            return kind(
                f"r2: HTTP {status} {detail} on {bucket}/{key}{wait}",
                system="r2",
                url=url,
                status_code=status,
            )
        if isinstance(error, BotoCoreError):
            return UnreachableError(
                f"r2: {type(error).__name__}: {error}", system="r2", url=url
            )
        raise error


def _etag_agrees(md5: str, etag: str) -> bool:
    """False when the object's single-part ETag (its MD5) is not the bytes' MD5.

    A multipart ETag (``<hex>-<parts>``) or none at all cannot be checked: True.
    """
    digest = etag.strip('"').lower()
    if len(digest) != 32 or not all(c in "0123456789abcdef" for c in digest):
        return True
    return md5 == digest


def _cut_short(endpoint: str, bucket: str, key: str, size: int) -> APIError:
    return APIError(
        f"r2: {bucket}/{key} came back as {size} bytes whose MD5 is not the "
        "object's ETag: cut short or changed in transit",
        system="r2",
        url=f"{endpoint}/{bucket}/{key}",
        status_code=200,
    )


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")
