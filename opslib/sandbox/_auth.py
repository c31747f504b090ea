"""Cookie sessions in KV and the /auth routes (PLATFORM.md section 4).

Sessions live only in the SESSIONS namespace as ``session:<uuid4>`` with a JSON
value ``{userId, createdAt, expiresAt, rememberMe}`` (milliseconds) and a sliding
TTL: every validation re-writes the key. The cookie is set only at login, for
``.example.com``, Secure and SameSite=None, so a client on loopback has to send it
back explicitly. Failed logins count per IP in ``rate_limit:login:<ip>``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from typing import Any

from ._call import Call, WorkerError, json_response
from ._http import Response
from ._passwords import verify_password

logger = logging.getLogger(__name__)

SESSION_TTL = 1800
REMEMBER_TTL = 2_592_000
LOGIN_FAILURES = 5
LOGIN_WINDOW = 300
COOKIE_NAME = "session_id"


def validate_session(call: Call) -> dict[str, Any] | None:
    """Return the caller's live session (refreshing its TTL), or None."""
    session_id = call.cookie(COOKIE_NAME)
    if not session_id:
        return None
    key = f"session:{session_id}"
    session = call.kv_json(call.sessions, key)
    if not isinstance(session, dict) or session.get("expiresAt", 0) < call.now * 1000:
        call.sessions.delete(key)
        return None
    ttl = REMEMBER_TTL if session.get("rememberMe") else SESSION_TTL
    session["expiresAt"] = int((call.now + ttl) * 1000)
    call.kv_put_json(call.sessions, key, session, ttl)
    return {**session, "id": session_id}


def login(call: Call) -> Response:
    """POST /auth/login."""
    body = call.body()
    email = str(body.get("email") or "").strip().lower()
    password = body.get("password")
    if not email or not isinstance(password, str) or not password:
        return json_response(400, {"error": "Email and password are required"})
    limiter_key = f"rate_limit:login:{call.ip}"
    failures = call.kv_json(call.sessions, limiter_key) or {}
    if failures.get("count", 0) >= LOGIN_FAILURES:
        return json_response(
            429, {"error": "Too many login attempts. Try again in 5 minutes."}
        )

    with call.d1() as db:
        user = db.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        if user is None or not verify_password(password, user["password_hash"]):
            _count_failure(call, limiter_key, failures)
            audit(db, call, user["id"] if user else "anonymous", "login_failed", email)
            return json_response(400, {"error": "Invalid credentials"})
        if not user["email_verified"]:
            return json_response(
                403, {"error": "Please verify your email address before logging in"}
            )
        call.sessions.delete(limiter_key)
        db.execute(
            "UPDATE users SET last_login = ? WHERE id = ?", (int(call.now), user["id"])
        )
        audit(db, call, user["id"], "login", email)
    return _start_session(call, user, bool(body.get("rememberMe")))


def logout(call: Call) -> Response:
    """POST /auth/logout: delete the KV session and expire the cookie."""
    session = validate_session(call)
    if session is None:
        return json_response(401, {"error": "Not authenticated"})
    call.sessions.delete(f"session:{session['id']}")
    with call.d1() as db:
        audit(db, call, session["userId"], "logout", "")
    return json_response(
        200,
        {"success": True, "message": "Logged out successfully"},
        [("Set-Cookie", _cookie("", 0))],
    )


def me(call: Call) -> Response:
    """GET /auth/me: profile cached in CACHE_KV for an hour.

    The cached query leaves out ``email_verified``, so ``emailVerified`` is always
    false, as on the platform.
    """
    session = validate_session(call)
    if session is None:
        return json_response(401, {"error": "Not authenticated"})
    user_id = session["userId"]
    profile = call.kv_json(call.cache, f"user:{user_id}")
    if not isinstance(profile, dict):
        with call.d1() as db:
            row = db.execute(
                "SELECT id, email, role, subscription_tier, created_at, last_login "
                "FROM users WHERE id = ?",
                (user_id,),
            ).fetchone()
        if row is None:
            raise WorkerError("User not found")
        profile = dict(row)
        call.kv_put_json(call.cache, f"user:{user_id}", profile, 3600)
    return json_response(
        200,
        {
            "userId": profile.get("id"),
            "email": profile.get("email"),
            "role": profile.get("role"),
            "subscriptionTier": profile.get("subscription_tier"),
            "createdAt": profile.get("created_at"),
            "lastLogin": profile.get("last_login"),
            "emailVerified": False,
        },
    )


def _start_session(call: Call, user: sqlite3.Row, remember: bool) -> Response:
    session_id = str(uuid.uuid4())
    ttl = REMEMBER_TTL if remember else SESSION_TTL
    session = {
        "userId": user["id"],
        "createdAt": int(call.now * 1000),
        "expiresAt": int((call.now + ttl) * 1000),
        "rememberMe": remember,
    }
    call.kv_put_json(call.sessions, f"session:{session_id}", session, ttl)
    logger.info("sandbox login user=%s", user["id"])
    payload = {
        "success": True,
        "message": "Login successful",
        "user": {
            "id": user["id"],
            "email": user["email"],
            "role": user["role"],
            "subscriptionTier": user["subscription_tier"],
        },
    }
    return json_response(200, payload, [("Set-Cookie", _cookie(session_id, ttl))])


def _cookie(value: str, max_age: int) -> str:
    return (
        f"{COOKIE_NAME}={value}; Path=/; Domain=.example.com; HttpOnly; Secure; "
        f"SameSite=None; Max-Age={max_age}"
    )


def _count_failure(call: Call, key: str, failures: dict[str, Any]) -> None:
    reset_at = failures.get("resetAt") or int((call.now + LOGIN_WINDOW) * 1000)
    remaining = max(1.0, reset_at / 1000 - call.now)
    record = {"count": failures.get("count", 0) + 1, "resetAt": reset_at}
    call.kv_put_json(call.sessions, key, record, remaining)


def audit(
    db: sqlite3.Connection, call: Call, user_id: str, action: str, email: str = ""
) -> None:
    """Write an audit row; a failed insert is only logged, as on the platform.

    Failed logins for unknown emails use user id 'anonymous', which breaks the
    foreign key, so those attempts are never audited.
    """
    try:
        db.execute(
            "INSERT INTO audit_log (id, user_id, action, resource_type, resource_id, "
            "timestamp, ip_address, user_agent, metadata) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                str(uuid.uuid4()),
                user_id,
                action,
                "auth",
                user_id,
                int(call.now),
                call.ip,
                call.request.headers.get("User-Agent"),
                json.dumps({"email": email} if email else {}),
            ),
        )
    except sqlite3.Error as error:
        logger.debug("audit insert failed action=%s error=%s", action, error)
