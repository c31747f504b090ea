"""Requests a browser would make to log in: preflight, login, session use, logout.

The platform's sessions are cookies (PLATFORM.md section 4): ``POST /auth/login``
answers 200 with ``Set-Cookie: session_id=<uuid>; Path=/; Domain=.example.com;
HttpOnly; Secure; SameSite=None; Max-Age=1800``. Because of ``Secure`` and the
domain, an HTTP client on another host never sends the cookie back by itself, so
this module sends it explicitly, once, to ``/auth/me`` and ``/auth/logout``, and
keeps only its attributes: the value never leaves this module, is never logged
and is dropped when the probe ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from ._config import Environment
from ._errors import APIError, UnreachableError
from ._http import json_body
from ._platform import platform_http

logger = logging.getLogger(__name__)

COOKIE_NAME = "session_id"
LOGIN_PATH = "/auth/login"


@dataclass(frozen=True)
class LoginProbe:
    """What one login as the test account showed (never the cookie's value).

    Attributes:
        status_code: the login answer's status, or None when nothing answered.
        error: the answer's ``error`` text (or the reason for no answer).
        elapsed_ms: time to the login answer.
        cookie: the session cookie's attributes, lower-cased names; empty when no
            session cookie was set.
        me_status: status of ``GET /auth/me`` with the new session (None if skipped).
        logout_status: status of ``POST /auth/logout`` (None if skipped).
        rate_limit: the X-RateLimit headers of the login answer.
        readable: False when a 2xx answer (the login's or /auth/me's) came with a
            body that is not JSON, cut short in transit say; ``error`` then names
            the platform and the answer, never the body.
    """

    status_code: int | None
    error: str
    elapsed_ms: float
    cookie: Mapping[str, str] = field(default_factory=dict)
    me_status: int | None = None
    logout_status: int | None = None
    rate_limit: Mapping[str, str] = field(default_factory=dict)
    readable: bool = True


@dataclass(frozen=True)
class Preflight:
    """A CORS preflight for one origin and the CORS headers that came back."""

    origin: str
    status_code: int | None
    allow_origin: str | None
    allow_credentials: str | None
    allow_methods: str | None


class AuthProbeClient:
    """Browser-like requests against the platform of one environment.

    Args:
        environment: the environment whose platform to call.
        timeout: seconds per request.
    """

    def __init__(self, environment: Environment, *, timeout: float = 10.0) -> None:
        self._http = platform_http(environment, timeout=timeout)

    def login(self, email: str, password: str) -> LoginProbe:
        """Log in once, use the session once, and log out again.

        Args:
            email: the dedicated test account.
            password: its password (from the environment, never a parameter).

        Returns:
            What the platform answered; an unreachable platform gives a probe
            whose ``status_code`` is None.
        """
        body = {"email": email, "password": password, "rememberMe": False}
        started = time.monotonic()
        try:
            response = self._http.request("POST", LOGIN_PATH, json=body)
        except UnreachableError as error:
            return LoginProbe(None, str(error), _ms_since(started))
        elapsed = _ms_since(started)
        value, attributes = _session_cookie(response)
        unreadable = self._unreadable(response)
        me_status = logout_status = None
        if value:
            headers = {"Cookie": f"{COOKIE_NAME}={value}"}
            me_status, me_unreadable = self._status("GET", "/auth/me", headers)
            unreadable = unreadable or me_unreadable
            logout_status, _ = self._status("POST", "/auth/logout", headers)
        return LoginProbe(
            response.status_code,
            unreadable or _error_text(response),
            elapsed,
            attributes,
            me_status,
            logout_status,
            _rate_limit_headers(response),
            readable=not unreadable,
        )

    def preflight(self, origin: str, path: str = LOGIN_PATH) -> Preflight:
        """Send the preflight a browser on ``origin`` sends before a login POST."""
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        try:
            response = self._http.request("OPTIONS", path, headers=headers)
        except UnreachableError:
            return Preflight(origin, None, None, None, None)
        return Preflight(
            origin,
            response.status_code,
            response.headers.get("Access-Control-Allow-Origin"),
            response.headers.get("Access-Control-Allow-Credentials"),
            response.headers.get("Access-Control-Allow-Methods"),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _status(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int | None, str]:
        """The answer's status and why its body is unreadable ("" when it is not)."""
        try:
            response = self._http.request(method, path, headers=headers)
        except UnreachableError:
            return None, ""
        return response.status_code, self._unreadable(response)

    def _unreadable(self, response: httpx.Response) -> str:
        """Why a 2xx answer's body cannot be read, or "" when it can (or is an error).

        A success is judged by what its body says too, so one cut short in
        transit leaves the login unjudged; an error status is a finding by itself,
        whatever page came with it.
        """
        if not response.is_success:
            return ""
        try:
            json_body(response, self._http.system)
        except APIError as error:
            return str(error)
        return ""


def _session_cookie(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """The session cookie's value and its attributes (names lower-cased)."""
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            logger.warning("unreadable Set-Cookie header on the login answer")
            continue
        morsel = jar.get(COOKIE_NAME)
        if morsel is None:
            continue
        flags = {part.strip().lower() for part in header.split(";")[1:]}
        attributes = {k: str(v) for k, v in morsel.items() if v and v is not True}
        attributes.update({k: "true" for k in ("httponly", "secure") if k in flags})
        return morsel.value, attributes
    return "", {}


def _error_text(response: httpx.Response) -> str:
    try:
        payload: Any = response.json()
    except ValueError:
        return response.text[:120]
    if isinstance(payload, dict):
        return str(payload.get("error") or payload.get("message") or "")[:120]
    return ""


def _rate_limit_headers(response: httpx.Response) -> dict[str, str]:
    names = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After")
    return {n: response.headers[n] for n in names if n in response.headers}


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000
