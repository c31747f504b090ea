"""One HTTP layer for every outside system: timeouts, bounded retries, error types.

Each client (platform, Cloudflare, status page, MailChannels) owns an
:class:`HttpClient`. Reads are retried a bounded number of times on 429, on 5xx
and on a refused connection, with exponential backoff or the wait ``Retry-After``
asks for; every wait comes out of one budget per call (``RETRY_BUDGET_S``), and a
server that asks for more than is left gets no retry: its answer is returned at
once. A read that timed out is not repeated (the system is already slow, and a
second wait would double the check's time). Writes are never replayed unless the
caller says the call is idempotent, because a repeated deployment or UPDATE
during a repair is worse than an error. :func:`json_body` turns an answer whose
body is cut short or not JSON into an error naming the system.
"""

from __future__ import annotations

import email.utils
import math
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ._errors import APIError, UnreachableError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_RETRIES = 2
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
RETRY_BUDGET_S = 30.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class HttpClient:
    """A thin wrapper over ``httpx.Client`` shared by opslib's clients.

    Args:
        system: short system name used in errors and log lines.
        base_url: URL every path is joined to.
        headers: headers sent on every request (credentials included; never logged).
        timeout: httpx timeout.
        retries: how many times a retryable answer or refused connection is
            retried (idempotent calls only).
        transport: an httpx transport, for callers that need a custom one.
        retry_budget_s: seconds of waiting between attempts one call may spend;
            None for ``RETRY_BUDGET_S``.
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
        retry_budget_s: float | None = None,
    ) -> None:
        self.system = system
        self.retries = retries
        self.retry_budget_s = retry_budget_s
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
            UnreachableError: when no answer arrived (refused, DNS, timeout),
                after the retries a refused idempotent call gets.
        """
        if idempotent is None:
            idempotent = method.upper() in IDEMPOTENT_METHODS
        attempts = 1 + (self.retries if idempotent else 0)
        budget = RETRY_BUDGET_S if self.retry_budget_s is None else self.retry_budget_s

        for attempt in range(1, attempts + 1):
            failure: UnreachableError | None = None
            try:
                response = self._send(method, path, **kwargs)
            except UnreachableError as error:
                if not error.refused or attempt == attempts:
                    raise
                failure, delay, outcome = error, _backoff(attempt), "refused"
            else:
                if response.status_code not in RETRY_STATUSES or attempt == attempts:
                    return response
                delay = _retry_delay(response, attempt)
                outcome = f"HTTP {response.status_code}"
                if delay > budget:
                    logger.info(
                        "not retrying system=%s status=%s asked_wait_s=%.1f "
                        "budget_left_s=%.1f",
                        self.system,
                        response.status_code,
                        delay,
                        budget,
                    )
                    return response
            if failure is not None and delay > budget:
                raise failure
            budget -= delay
            logger.info(
                "retrying system=%s outcome=%s attempt=%s delay_s=%.1f",
                self.system,
                outcome,
                attempt,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable: the loop always returns or raises")

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
            unreachable = UnreachableError(
                f"{self.system}: cannot reach {_safe_url(url)} ({type(error).__name__}: "
                f"{error})",
                system=self.system,
                url=_safe_url(url),
            )
            # Nothing was sent on a connection that never opened: safe to repeat.
            unreachable.refused = isinstance(error, httpx.ConnectError)
            raise unreachable from error
        logger.info(
            "request system=%s method=%s url=%s status=%s elapsed_ms=%d",
            self.system,
            method,
            _safe_url(url),
            response.status_code,
            response.elapsed.total_seconds() * 1000,
        )
        return response


def json_body(response: httpx.Response, system: str) -> Any:
    """The answer's JSON, or an error naming the system when the body is not JSON.

    A body cut short in transit, an HTML error page or an empty 200 all end here,
    so a check reports the system as unreadable instead of reading half an answer.

    Raises:
        APIError: naming the system, the status and the first bytes of the body.
    """
    try:
        return response.json()
    except ValueError as error:
        raise APIError(
            f"{system}: HTTP {response.status_code} with a body that is not JSON "
            f"({len(response.content)} bytes, {error}); cut short in transit, or an "
            "error page in front of the API?",
            system=system,
            url=_safe_url(response.request.url),
            status_code=response.status_code,
        ) from error


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    """Wait as the server asks (seconds or an HTTP date), else back off."""
    asked = retry_after_s(response)
    return _backoff(attempt) if asked is None else asked


def retry_after_s(response: httpx.Response) -> float | None:
    """The wait an answer's ``Retry-After`` asks for, in seconds from now.

    Both forms are read: whole seconds, and an HTTP date (converted against
    this host's clock; a date already past asks for 0).

    Returns:
        None when the header is absent or in neither form.
    """
    return retry_after_header_s(response.headers.get("retry-after", ""))


def retry_after_header_s(header: str) -> float | None:
    """The wait a ``Retry-After`` header's value asks for, as :func:`retry_after_s`.

    For clients that see the header without an httpx answer (the Stripe SDK's
    errors, botocore's).
    """
    header = header.strip()
    if header.isdigit():
        return float(header)
    if not header:
        return None
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def rate_limit_wait(service: str, header: str, otherwise: str) -> str:
    """How long to hold off after a 429, worded for a finding.

    Args:
        service: who answered, for the text ("Cloudflare").
        header: the answer's ``Retry-After`` value, empty when it had none.
        otherwise: what to do when the header is absent or unreadable (the
            service's documented window, say).
    """
    header = header.strip()
    wait = retry_after_header_s(header)
    if wait is not None:
        form = "" if header.isdigit() else f", converted from {header!r}"
        return (
            f"{service}'s Retry-After asks to wait {math.ceil(wait)} s{form} "
            "before retrying"
        )
    given = f"Retry-After {header[:40]!r} is unreadable" if header else "no Retry-After"
    return f"{given}: {otherwise}"


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_CAP_S))


def _safe_url(url: httpx.URL | str) -> str:
    """The URL without its query string, which may carry tokens."""
    return str(httpx.URL(str(url)).copy_with(query=None))
