"""The manual password reset, behind the gate: one user's new PBKDF2 hash.

The platform stores PBKDF2-HMAC-SHA256 (100,000 iterations, 16-byte random salt,
32-byte output) as 96 lowercase hex characters, salt then hash, no separator
(PLATFORM.md section 4). The user's row (old hash, ``email_verified``) is the
before-image: the record shows it with the hash redacted, the plan keeps it
privately, and the applier saves it whole to the before-images folder (see
``_beforeimage``) before it writes. The reset is not undone from the record; the
saved file lets an administrator put the old hash back by hand. The new password is never a
parameter: it comes from ``RUNBOOK_NEW_PASSWORD`` (scrubbed from records), or a
hidden prompt when someone walks the notebook in JupyterLab.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._beforeimage import REDACTED, image_digest, redact_rows, save_before_image
from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status
from ._resetflow import ResetFlowClient
from ._verdict import Verdict

logger = logging.getLogger(__name__)

ACTION = "set-password-hash"
PASSWORD_VARIABLE = "RUNBOOK_NEW_PASSWORD"
ITERATIONS = 100_000
SALT_BYTES = 16
KEY_BYTES = 32
_HASH_FORMAT = re.compile(r"[0-9a-f]{96}")
_POLICY = (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
_USER_SQL = "SELECT id, email, password_hash, email_verified FROM users WHERE id = ?"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password in the platform's 96-hex PBKDF2 format."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS, KEY_BYTES)
    return salt.hex() + key.hex()


def is_platform_hash(stored: str) -> bool:
    """True when ``stored`` has the platform's format: 96 lowercase hex."""
    return bool(_HASH_FORMAT.fullmatch(stored or ""))


def matches_password(password: str, stored: str) -> bool:
    """Check a password against a stored hash in constant time."""
    if not is_platform_hash(stored):
        return False
    candidate = hash_password(password, salt=bytes.fromhex(stored[: SALT_BYTES * 2]))
    return hmac.compare_digest(candidate, stored)


def is_strong(password: str) -> bool:
    """The platform's policy: 8+ characters with upper, lower, digit and special."""
    return len(password) >= 8 and all(re.search(p, password) for p in _POLICY)


def plan_password_reset(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan the manual reset a password-reset verdict offers (or no action).

    The user's row is read now; its hash and ``email_verified`` are the
    before-image, and an unverified user is verified too, since login refuses
    unverified accounts.
    """
    step = verdict.gated_step or {}
    if step.get("action") != ACTION:
        reason = f"no manual reset: the verdict's cause is {verdict.cause!r}"
        if verdict.cause != "healthy" and not step:
            reason += " and no user_email was given"
        return ActionPlan("none", environment.name, "", reason)
    user = _read_user(environment, str(step["user_id"]))
    if user is None:
        return ActionPlan("none", environment.name, "", "no such user any more")
    changes: list[Mapping[str, Any]] = [
        {
            "what": "users.password_hash",
            "from": REDACTED,
            "to": "new PBKDF2 hash (96 hex), computed at apply",
        },
    ]
    if not user["email_verified"]:
        changes.append({"what": "users.email_verified", "from": 0, "to": 1})
    image = {k: user[k] for k in ("id", "password_hash", "email_verified")}
    digest = image_digest(image)
    return ActionPlan(
        action=ACTION,
        environment=environment.name,
        target=str(user["id"]),
        summary=f"write a new password hash for user {user['id']}",
        changes=tuple(changes),
        before={**redact_rows([image])[0], "digest": digest},
        undo=(
            "not undone from the record; the old hash is saved at apply as "
            f"before-images/{digest}.json in the records archive, for an "
            "administrator to put back by hand"
        ),
        confirm_phrase=str(step["confirm"]),
        private={"image": image},
    )


def read_new_password(environment: Environment) -> str:
    """The new password: ``RUNBOOK_NEW_PASSWORD``, or a hidden prompt if interactive.

    Returns "" when neither is available (a headless run without the variable).
    """
    return read_hidden_value(
        environment, PASSWORD_VARIABLE, "New password for the user (not echoed): "
    )


def read_hidden_value(environment: Environment, variable: str, prompt: str) -> str:
    """A secret value from ``variable``, else a prompt that does not echo.

    The prompt is offered only when interactive (a terminal or a Jupyter
    kernel); a headless run without the variable gets "".
    """
    value = environment.secret(variable) or os.environ.get(variable)
    if value:
        return value
    if not _is_interactive():
        return ""
    try:
        return getpass.getpass(prompt)
    except (EOFError, NotImplementedError, OSError):
        return ""


def _is_interactive() -> bool:
    """True on a terminal, or in a Jupyter kernel (which may still refuse stdin)."""
    if sys.stdin is not None and sys.stdin.isatty():
        return True
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _apply_password_reset(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    password = read_new_password(environment)
    if not password:
        return ActionResult(
            plan, "refused", f"no new password: set {PASSWORD_VARIABLE}", operator
        )
    if not is_strong(password):
        return ActionResult(
            plan,
            "refused",
            "the new password breaks the policy (8+ characters with upper and lower "
            "case, a digit and a special character); nothing changed",
            operator,
        )
    image = plan.private.get("image")
    if not image:
        return ActionResult(
            plan,
            "refused",
            "the plan holds no before-image (it was not made in this run): re-run "
            "the runbook",
            operator,
        )
    user_id, old_hash = plan.target, str(image["password_hash"])
    client = CloudflareClient(environment)
    try:
        live = client.d1_query(_USER_SQL, [user_id])[0]["results"]
        if not live or live[0]["password_hash"] != old_hash:
            return ActionResult(
                plan,
                "refused",
                "the user's hash changed since the plan was made: the plan is stale, "
                "re-run the runbook",
                operator,
            )
        save_before_image(image)
        logger.info("applying action=%s user=%s", ACTION, user_id)
        written = client.d1_query(
            "UPDATE users SET password_hash = ?, email_verified = 1 WHERE id = ? "
            "AND password_hash = ?",
            [hash_password(password), user_id, old_hash],
            read_only=False,
        )[0]
    finally:
        client.close()
    changes = int((written.get("meta") or {}).get("changes") or 0)
    if changes != 1:
        return ActionResult(
            plan, "refused", "the row changed while applying; stale", operator
        )
    after = verify_new_password(environment, str(live[0]["email"]), user_id, password)
    detail = f"new password hash written for user {user_id}"
    return ActionResult(
        plan,
        "applied",
        detail,
        operator,
        response={"rows_written": changes},
        after=after,
    )


def verify_new_password(
    environment: Environment, email: str, user_id: str, password: str
) -> Finding:
    """Follow-up check: log in as the test account, else re-read and verify the hash."""
    if email == environment.test_account_email.lower():
        flow = ResetFlowClient(environment)
        try:
            answer, session = flow.login(email, password)
            if session:
                flow.logout(session)
        finally:
            flow.close()
        ok = answer.status_code == 200
        text = f"login with the new password answers {answer.status_code}"
        return Finding("password-verify", Status.OK if ok else Status.FAIL, text)
    user = _read_user(environment, user_id)
    stored = str((user or {}).get("password_hash") or "")
    ok = is_platform_hash(stored) and matches_password(password, stored)
    text = (
        "stored hash has the 96-hex format and matches the new password"
        if ok
        else "stored hash does not match the new password"
    )
    return Finding("password-verify", Status.OK if ok else Status.FAIL, text)


def _read_user(environment: Environment, user_id: str) -> dict[str, Any] | None:
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(_USER_SQL, [user_id])[0]["results"]
    finally:
        client.close()
    return dict(rows[0]) if rows else None


register_applier(ACTION, _apply_password_reset)
