"""The password-reset routes of the platform stand-in (PLATFORM.md sections 3, 4, 9).

- ``POST /auth/password-reset-request {email}``: always 200 with one generic message
  (no enumeration); 400 for a malformed address. For a known user it stores a
  token in ``verification_tokens`` in clear (32 random bytes as 64 hex, +1 h) and
  the Worker posts the email to MailChannels without an API key; a refused send is
  only logged, the answer stays 200.
- ``GET /auth/verify-reset-token?token=``: 200 ``{valid}``. As committed, it runs
  the same validation as the submit and so marks the token used; the scenario
  switch ``reset_precheck_consumes`` plays that code, and without it the route
  only looks (the fixed behaviour the healthy scenario has).
- ``POST /auth/password-reset {token, newPassword}``: 200, or 400 "Invalid or
  expired reset token"; writes the new PBKDF2 hash and sends a confirmation email
  whose result nobody checks.

The email is built from the serving version's plain_text bindings. Without
``FRONTEND_URL`` the link starts with ``undefined``, as a JavaScript template
string would write it; the sender falls back to a hard-coded address.
"""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
from typing import Any

from ._auth import audit
from ._call import Call, json_response
from ._http import Response
from ._mailchannels import deliver
from ._passwords import hash_password

logger = logging.getLogger(__name__)

CONSUME_SWITCH = "reset_precheck_consumes"
TOKEN_LIFETIME = 3600
GENERIC_MESSAGE = (
    "If an account exists with that email, a password reset link has been sent."
)
INVALID_TOKEN = "Invalid or expired reset token"
FALLBACK_FROM = "noreply@example.com"
FALLBACK_NAME = "ManuscriptHub"
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
_POLICY = (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")


def route(call: Call) -> Response | None:
    """Answer a password-reset route, or None when the path is not one of them."""
    method, path = call.request.method, call.path
    if (method, path) == ("POST", "/auth/password-reset-request"):
        return request_reset(call)
    if (method, path) == ("GET", "/auth/verify-reset-token"):
        return verify_token(call)
    if (method, path) == ("POST", "/auth/password-reset"):
        return reset_password(call)
    return None


def request_reset(call: Call) -> Response:
    """POST /auth/password-reset-request."""
    email = str(call.body().get("email") or "").strip().lower()
    if not _EMAIL.match(email):
        return json_response(400, {"error": "Valid email is required"})
    token = secrets.token_hex(32)
    with call.d1() as db:
        user = db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
        if user is not None:
            db.execute(
                "INSERT INTO verification_tokens (token, user_id, token_type, "
                "created_at, expires_at, used) VALUES (?, ?, 'password_reset', ?, ?, 0)",
                (token, user["id"], int(call.now), int(call.now) + TOKEN_LIFETIME),
            )
            audit(db, call, user["id"], "password_reset_requested")
    if user is not None:
        _send(call, email, *_reset_email(call, email, token))
    return json_response(200, {"success": True, "message": GENERIC_MESSAGE})


def verify_token(call: Call) -> Response:
    """GET /auth/verify-reset-token: consumes the token only as committed."""
    token = call.request.arg("token") or ""
    consume = bool(call.world.scenario.switches.get(CONSUME_SWITCH))
    with call.d1() as db:
        user_id = _validate(db, call, token, consume=consume)
    return json_response(200, {"valid": user_id is not None})


def reset_password(call: Call) -> Response:
    """POST /auth/password-reset."""
    body = call.body()
    token, password = str(body.get("token") or ""), body.get("newPassword")
    if not token or not isinstance(password, str):
        return json_response(400, {"error": "Token and new password are required"})
    if len(password) < 8 or not all(re.search(p, password) for p in _POLICY):
        return json_response(
            400,
            {
                "error": "Password must be at least 8 characters with upper and "
                "lower case letters, a number and a special character"
            },
        )
    with call.d1() as db:
        user_id = _validate(db, call, token, consume=True)
        if user_id is None:
            return json_response(400, {"error": INVALID_TOKEN})
        db.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?",
            (hash_password(password), user_id),
        )
        audit(db, call, user_id, "password_reset")
        row = db.execute("SELECT email FROM users WHERE id = ?", (user_id,)).fetchone()
    _send(call, row["email"], *_confirmation_email(call))
    return json_response(200, {"success": True, "message": "Password reset successful"})


def _validate(
    db: sqlite3.Connection, call: Call, token: str, *, consume: bool
) -> str | None:
    """Return the user id of a live, unused reset token; mark it used if asked."""
    row = db.execute(
        "SELECT user_id FROM verification_tokens WHERE token = ? AND token_type = "
        "'password_reset' AND used = 0 AND expires_at > ?",
        (token, int(call.now)),
    ).fetchone()
    if row is None:
        return None
    if consume:
        db.execute("UPDATE verification_tokens SET used = 1 WHERE token = ?", (token,))
    return str(row["user_id"])


def _var(call: Call, name: str) -> str | None:
    for binding in call.version.bindings:
        if binding.get("name") == name and binding.get("type") == "plain_text":
            return str(binding.get("text"))
    return None


def _js(value: str | None) -> str:
    """A value as a JavaScript template string writes it: unset is "undefined"."""
    return "undefined" if value is None else value


def _reset_email(call: Call, email: str, token: str) -> tuple[str, str]:
    link = f"{_js(_var(call, 'FRONTEND_URL'))}/reset-password.html?token={token}"
    support = _js(_var(call, "EMAIL_ADMIN_ADDRESS"))
    brand = _var(call, "EMAIL_FROM_NAME") or FALLBACK_NAME
    text = (
        f"Hi {email.split('@')[0]},\n\nReset your password here: {link}\n"
        f"The link expires in 1 hour. Questions? Contact {support}.\n"
    )
    return f"Reset Your Password - {brand}", text


def _confirmation_email(call: Call) -> tuple[str, str]:
    brand = _var(call, "EMAIL_FROM_NAME") or FALLBACK_NAME
    text = (
        f"Your password was reset. Log in at {_js(_var(call, 'FRONTEND_URL'))}"
        "/login.html."
        "\nIf this was not you, contact support.\n"
    )
    return f"Password Reset Successful - {brand}", text


def _send(call: Call, to: str, subject: str, text: str) -> None:
    message: dict[str, Any] = {
        "personalizations": [{"to": [{"email": to}]}],
        "from": {
            "email": _var(call, "EMAIL_FROM_ADDRESS") or FALLBACK_FROM,
            "name": _var(call, "EMAIL_FROM_NAME") or FALLBACK_NAME,
        },
        "subject": subject,
        "content": [{"type": "text/plain", "value": text}],
    }
    reply_to = _var(call, "EMAIL_REPLY_TO_ADDRESS")
    if reply_to:
        message["reply_to"] = {"email": reply_to}
    answer = deliver(call.world, message)
    if answer.status >= 300:
        logger.info("Failed to send password reset email status=%s", answer.status)
