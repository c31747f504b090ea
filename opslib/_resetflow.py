"""The platform's password-reset and login routes, called as a browser would.

Calls are never retried: each request of the reset flow counts against the
platform's limit of 3 per hour per IP on every path containing
``password-reset``, and a repeated request would spend the budget twice. Tokens
and passwords travel only in request bodies or the query string, which the HTTP
layer leaves out of its log lines. A success whose body cannot be read (cut
short in transit, say) raises an error naming the platform rather than reading
as an empty answer, since a reset or login is judged by what its body says too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from ._config import Environment
from ._http import json_body
from ._platform import platform_http

logger = logging.getLogger(__name__)

REQUEST_PATH = "/auth/password-reset-request"
PRECHECK_PATH = "/auth/verify-reset-token"
SESSION_COOKIE = "session_id"


@dataclass(frozen=True)
class Answer:
    """A platform answer: status and decoded JSON body (empty for an error status
    whose body is not JSON)."""

    status_code: int
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str:
        """The answer's ``error`` text, or ""."""
        return str(self.payload.get("error") or "")


class ResetFlowClient:
    """Reset request, token pre-check, login and logout against one platform.

    Args:
        environment: the environment whose platform to call.
        timeout: seconds per request.
    """

    def __init__(self, environment: Environment, *, timeout: float = 10.0) -> None:
        self._http = platform_http(environment, timeout=timeout)

    def request_reset(self, email: str) -> Answer:
        """POST /auth/password-reset-request for ``email``."""
        return self._call("POST", REQUEST_PATH, json={"email": email})

    def precheck(self, token: str) -> Answer:
        """GET /auth/verify-reset-token, as the reset page does on load."""
        return self._call("GET", PRECHECK_PATH, params={"token": token})

    def login(self, email: str, password: str) -> tuple[Answer, str]:
        """POST /auth/login; returns the answer and the session id ("" if none)."""
        response = self._http.request(
            "POST",
            "/auth/login",
            json={"email": email, "password": password},
            idempotent=False,
        )
        return _answer(response, self._http.system), _session_id(
            response.headers.get_list("set-cookie")
        )

    def logout(self, session_id: str) -> Answer:
        """POST /auth/logout with the session cookie; its body is not judged."""
        headers = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
        return self._call("POST", "/auth/logout", judged=False, headers=headers)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(
        self, method: str, path: str, *, judged: bool = True, **kwargs: Any
    ) -> Answer:
        response = self._http.request(method, path, idempotent=False, **kwargs)
        return _answer(response, self._http.system, judged=judged)


def _answer(response: httpx.Response, system: str, *, judged: bool = True) -> Answer:
    """The answer as status and body.

    Raises:
        APIError: for a judged 2xx answer whose body is not JSON, naming ``system``.
    """
    if judged and response.is_success:
        payload = json_body(response, system)
    else:
        try:
            payload = response.json()
        except ValueError:
            payload = {}
    return Answer(response.status_code, payload if isinstance(payload, dict) else {})


def _session_id(cookies: list[str]) -> str:
    for header in cookies:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        if SESSION_COOKIE in jar:
            return jar[SESSION_COOKIE].value
    return ""
