"""Client for the platform's own HTTP API (the main Worker).

The platform has no health route: ``GET /manuscripts`` answering 401 without a
session is the de-facto health check (CI smoke test, uptime monitor). Probes send
no cookie and no credentials and are never retried, so what they record is what a
user would have seen at that moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._config import Environment
from ._errors import UnreachableError
from ._http import HttpClient

logger = logging.getLogger(__name__)

# What a healthy platform answers to an anonymous request, by path.
EXPECTED_STATUS = {"/manuscripts": 401, "/auth/me": 401, "/payments/subscription": 401}
USER_AGENT = "opslib-runbook-probe/1"
# Answer headers a probe keeps: what the deploy smoke test looks for.
KEPT_HEADERS = ("strict-transport-security", "access-control-allow-origin")


@dataclass(frozen=True)
class Probe:
    """One anonymous request to the platform and what came back.

    Attributes:
        path: the path requested.
        status_code: the HTTP status, or None when nothing answered.
        elapsed_ms: time to the answer.
        expected: the status a healthy platform gives (None: any non-5xx).
        body: the first 200 characters of the answer, or the reason for no answer.
        headers: the answer's security headers named in ``KEPT_HEADERS``
            (lower-case names), for smoke checks.
    """

    path: str
    status_code: int | None
    elapsed_ms: float
    expected: int | None
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_ok(self) -> bool:
        """True when the answer is what a healthy platform gives."""
        if self.status_code is None:
            return False
        if self.expected is not None:
            return self.status_code == self.expected
        return self.status_code < 500

    @property
    def is_server_error(self) -> bool:
        """True for a 5xx answer."""
        return self.status_code is not None and self.status_code >= 500


def platform_http(
    environment: Environment, *, timeout: float | None = None
) -> HttpClient:
    """The HTTP client every platform caller uses: never retried, no credentials.

    Requests to the platform are observations of what a user sees at that moment,
    so none is replayed; cookies, when a caller needs one, are set per request.
    """
    return HttpClient(
        "platform",
        environment.platform_url,
        headers={"User-Agent": USER_AGENT},
        timeout=environment.timeout(timeout, 10.0),
        retries=0,
    )


class PlatformClient:
    """Anonymous probes against the platform API of one environment."""

    def __init__(
        self, environment: Environment, *, timeout: float | None = None
    ) -> None:
        self._http = platform_http(environment, timeout=timeout)

    def probe(
        self, path: str, *, method: str = "GET", origin: str | None = None
    ) -> Probe:
        """Request ``path`` once and record status, latency and a bit of the body.

        An unreachable platform gives a probe with ``status_code=None`` rather than
        an exception: for a probe, no answer is the answer. With ``origin``, the
        request carries that ``Origin`` header, as a browser's would.
        """
        expected = EXPECTED_STATUS.get(path)
        headers = {"Origin": origin} if origin else None
        started = time.monotonic()
        try:
            response = self._http.request(
                method, path, idempotent=False, headers=headers
            )
        except UnreachableError as error:
            elapsed = (time.monotonic() - started) * 1000
            return Probe(path, None, elapsed, expected, str(error))
        elapsed = (time.monotonic() - started) * 1000
        kept = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
        return Probe(
            path, response.status_code, elapsed, expected, response.text[:200], kept
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
