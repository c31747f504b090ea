"""One HTTP layer for every outside system: timeouts, bounded retries, error types.

Each client (platform, Cloudflare, status page) owns an :class:`HttpClient`. Reads
are retried on 429 and 5xx with exponential backoff, honouring ``Retry-After`` up
to a cap; writes are never replayed unless the caller says the call is idempotent,
because a repeated deployment or UPDATE during a repair is worse than an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ._errors import UnreachableError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_RETRIES = 2
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
RETRY_AFTER_CAP_S = 30.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class HttpClient:
    """A thin wrapper over ``httpx.Client`` shared by opslib's clients.

    Args:
        system: short system name used in errors and log lines.
        base_url: URL every path is joined to.
        headers: headers sent on every request (credentials included; never logged).
        timeout: httpx timeout.
        retries: how many times a retryable answer is retried.
        transport: an httpx transport, for callers that need a custom one.
    """

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.system = system
        self.retries = retries
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request, retrying retryable answers when the call is idempotent.

        Args:
            method: HTTP method.
            path: path relative to the base URL.
            idempotent: whether replaying the call is safe; defaults to True for
                GET, HEAD and OPTIONS only.
            **kwargs: passed to ``httpx.Client.request`` (json, params, content...).

        Returns:
            The last response, whatever its status.

        Raises:
            UnreachableError: when no answer arrived (refused, DNS, timeout).
        """
        if idempotent is None:
            idempotent = method.upper() in IDEMPOTENT_METHODS
        attempts = 1 + (self.retries if idempotent else 0)

        for attempt in range(1, attempts + 1):
            response = self._send(method, path, **kwargs)
            if response.status_code not in RETRY_STATUSES or attempt == attempts:
                return response
            delay = _retry_delay(response, attempt)
            logger.info(
                "retrying system=%s status=%s attempt=%s delay_s=%.1f",
                self.system,
                response.status_code,
                attempt,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable: the loop always returns")

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = (
            self._client.base_url.join(path.lstrip("/"))
            if path
            else self._client.base_url
        )
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as error:
            raise UnreachableError(
                f"{self.system}: no answer from {_safe_url(url)} within the timeout",
                system=self.system,
                url=_safe_url(url),
            ) from error
        except httpx.TransportError as error:
            raise UnreachableError(
                f"{self.system}: cannot reach {_safe_url(url)} ({type(error).__name__}: "
                f"{error})",
                system=self.system,
                url=_safe_url(url),
            ) from error
        logger.info(
            "request system=%s method=%s url=%s status=%s elapsed_ms=%d",
            self.system,
            method,
            _safe_url(url),
            response.status_code,
            response.elapsed.total_seconds() * 1000,
        )
        return response


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    """Wait as the server asks (capped), else back off exponentially."""
    header = response.headers.get("retry-after", "")
    if header.isdigit():
        return min(float(header), RETRY_AFTER_CAP_S)
    return float(min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_CAP_S))


def _safe_url(url: httpx.URL | str) -> str:
    """The URL without its query string, which may carry tokens."""
    return str(httpx.URL(str(url)).copy_with(query=None))
