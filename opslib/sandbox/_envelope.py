"""The Cloudflare v4 JSON envelope, errors and pagination (CLOUDFLARE.md section 0)."""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime
from typing import Any

from ._http import Request, Response


class ApiError(Exception):
    """An error answer of the Cloudflare API stand-in.

    Attributes:
        status: HTTP status.
        code: Cloudflare error code.
        chain: optional ``error_chain`` entries as (code, message) pairs.
        headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        chain: tuple[tuple[int, str], ...] = (),
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.chain = chain
        self.headers = headers or []

    def response(self) -> Response:
        """Render the error in the v4 envelope."""
        error: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.chain:
            error["error_chain"] = [{"code": c, "message": m} for c, m in self.chain]
        payload = {"success": False, "errors": [error], "messages": [], "result": None}
        return Response.json(self.status, payload, [*_ray(), *self.headers])


def ok(
    result: Any,
    *,
    result_info: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> Response:
    """Render a successful answer in the v4 envelope."""
    payload: dict[str, Any] = {
        "success": True,
        "errors": [],
        "messages": messages or [],
        "result": result,
    }
    if result_info is not None:
        payload["result_info"] = result_info
    return Response.json(200, payload, _ray())


def paginate(
    items: list[Any], request: Request, *, default: int, maximum: int
) -> tuple[list[Any], dict[str, int]]:
    """Cut one page out of ``items`` with page-style ``result_info``.

    ``page`` and ``per_page`` are honoured; a page past the end is empty, which is
    what the SDK's page iterator needs to stop. Out-of-range values are clamped.
    """
    page = max(1, _int_arg(request, "page", 1))
    per_page = min(maximum, max(1, _int_arg(request, "per_page", default)))
    chunk = items[(page - 1) * per_page : page * per_page]
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": math.ceil(len(items) / per_page),
    }
    return chunk, info


def iso(timestamp: float) -> str:
    """Format epoch seconds the way the API does: UTC with microseconds and Z."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def http_date(timestamp: float) -> str:
    """Format epoch seconds as an RFC 1123 date."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def body_json(request: Request) -> Any:
    """Decode a JSON request body.

    Raises:
        ApiError: 400 with code 10001 when the body is not JSON; the reference
            names no code for this, the stand-in picks one.
    """
    try:
        return request.json()
    except ValueError as error:
        raise ApiError(400, 10001, f"Could not parse request body: {error}") from error


def _int_arg(request: Request, name: str, default: int) -> int:
    value = request.arg(name)
    if value in (None, ""):
        return default
    try:
        return int(str(value))
    except ValueError as error:
        raise ApiError(
            400, 1004, f"{name} must be an integer, got {value!r}"
        ) from error


def _ray() -> list[tuple[str, str]]:
    return [("cf-ray", secrets.token_hex(8) + "-EWR")]
