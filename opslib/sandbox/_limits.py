"""The platform's global rate-limit middleware (PLATFORM.md section 4).

Three fixed-window checks run in order on every request except ``/webhooks/*`` and
``/assets/*``: per IP and path, per user and path (only with a valid session; the
tier comes from D1, and a D1 failure there is swallowed), and per IP and endpoint.
Counters are JSON ``{count, resetAt}`` in the SESSIONS namespace, written with the
window as TTL; the request that would exceed a limit is refused with 429.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ._auth import validate_session
from ._call import Call, WorkerError, json_response
from ._envelope import http_date
from ._http import Response

logger = logging.getLogger(__name__)

DAY = 86_400
# Per-day limits by tier: uploads, analyses, any other path. None = unlimited.
_USER_LIMITS: dict[str, tuple[int | None, int | None, int | None]] = {
    "FREE": (1, 1, 10),
    "PRO": (10, 10, 1000),
    "ENTERPRISE": (None, None, 10_000),
    "ADMIN": (None, None, None),
}


def check_limits(call: Call) -> Response | None:
    """Run the three checks; return a 429 answer or None to go on.

    The X-RateLimit headers of the last check are added to ``call.headers``.
    """
    path = call.path
    if path.startswith(("/webhooks/", "/assets/")):
        return None
    limit, window = _ip_rule(path)
    refused = _hit(
        call, f"rate_limit:ip:{call.ip}:{path.replace('/', '_')}", limit, window, "IP"
    )
    if refused is None:
        refused = _check_user(call)
    if refused is None:
        limit, window = _endpoint_rule(path)
        refused = _hit(
            call, f"rate_limit:endpoint:{call.ip}:{path}", limit, window, "Endpoint"
        )
    return refused


def _ip_rule(path: str) -> tuple[int, int]:
    if path == "/auth/login":
        return 5, 900
    if path == "/auth/register":
        return 3, 3600
    if "password-reset" in path:
        return 3, 3600
    if "/upload" in path:
        return 10, 3600
    return 100, 60


def _endpoint_rule(path: str) -> tuple[int, int]:
    if path == "/auth/login":
        return 5, 900
    if path in ("/auth/register", "/auth/password-reset-request"):
        return 3, 3600
    if path.startswith("/admin/"):
        return 1000, 60
    return 100, 60


def _check_user(call: Call) -> Response | None:
    session = validate_session(call)
    if session is None:
        return None
    try:
        with call.d1() as db:
            row = db.execute(
                "SELECT role, subscription_tier FROM users WHERE id = ?",
                (session["userId"],),
            ).fetchone()
    except WorkerError as error:
        logger.debug("rate limiter skipped user check error=%s", error)
        return None
    if row is None:
        return None
    tier = "ADMIN" if row["role"] == "admin" else str(row["subscription_tier"]).upper()
    uploads, analyses, other = _USER_LIMITS.get(tier, _USER_LIMITS["FREE"])
    limit = (
        uploads
        if "/upload" in call.path
        else (analyses if "/analyze" in call.path else other)
    )
    if limit is None:
        return None
    return _hit(
        call, f"rate_limit:user:{session['userId']}:{call.path}", limit, DAY, "User"
    )


def _hit(call: Call, key: str, limit: int, window: int, kind: str) -> Response | None:
    record = call.kv_json(call.sessions, key)
    if not isinstance(record, dict) or record.get("resetAt", 0) <= call.now * 1000:
        record = {"count": 0, "resetAt": int((call.now + window) * 1000)}
    reset = record["resetAt"] / 1000
    if record["count"] >= limit:
        return _refuse(call, kind, limit, reset)
    record["count"] += 1
    call.kv_put_json(call.sessions, key, record, max(1.0, reset - call.now))
    call.headers[:] = _headers(limit, limit - record["count"], reset)
    return None


def _refuse(call: Call, kind: str, limit: int, reset: float) -> Response:
    retry_after = max(1, int(reset - call.now + 0.999))
    reset_iso = datetime.fromtimestamp(reset, tz=UTC).isoformat()
    logger.info("rate limit hit kind=%s path=%s", kind, call.path)
    payload = {
        "error": "Rate limit exceeded",
        "message": f"{kind} rate limit exceeded. Try again in {retry_after} seconds.",
        "limit": limit,
        "remaining": 0,
        "resetAt": reset_iso.replace("+00:00", "Z"),
        "retryAfter": retry_after,
    }
    headers = [*_headers(limit, 0, reset), ("Retry-After", str(retry_after))]
    return json_response(429, payload, headers)


def _headers(limit: int, remaining: int, reset: float) -> list[tuple[str, str]]:
    return [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(max(0, remaining))),
        ("X-RateLimit-Reset", http_date(reset)),
    ]
