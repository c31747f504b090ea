"""A thin client for the Cloudflare v4 REST API, for the few calls opslib makes.

Why not the official SDK: for these calls it reads an empty list of deployments,
crashes on getting a version, reads only the first page of some lists and does not
raise on ``success: false``. So this client checks all three layers itself: the
HTTP status, the envelope's ``success``, and the nested success of each D1
statement.

Paths and shapes follow api.cloudflare.com/client/v4 (see the project's
CLOUDFLARE.md reference). Token: ``CLOUDFLARE_API_TOKEN``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ._config import MISSING_FILE_HINT, Environment
from ._errors import APIError, AuthError, RateLimitError, ServiceError
from ._http import HttpClient, rate_limit_wait

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "CLOUDFLARE_API_TOKEN"
AUTH_CODES = frozenset({1000, 1001, 6003, 9109, 10000})
PAGE_SIZE = 50
MAX_PAGES = 20
MAX_KV_PAGES = 100
# Over the rate limit, Cloudflare blocks every call for this long (CLOUDFLARE.md).
RATE_LIMIT_WINDOW_MIN = 5


class CloudflareClient:
    """Workers, D1, KV and Queues calls for one environment's account.

    Args:
        environment: the environment whose account, Worker and database to use.
        timeout: seconds per request.
    """

    def __init__(
        self, environment: Environment, *, timeout: float | None = None
    ) -> None:
        self.environment = environment
        token = environment.secret(TOKEN_VARIABLE)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._has_token = bool(token)
        self._http = HttpClient(
            "cloudflare",
            environment.cloudflare_api_url,
            headers=headers,
            timeout=environment.timeout(timeout, 15.0),
        )
        self._account = f"accounts/{environment.account_id}"
        self._script = (
            f"{self._account}/workers/scripts/{quote(environment.worker_name)}"
        )

    # Workers ------------------------------------------------------------------

    def list_deployments(self) -> list[dict[str, Any]]:
        """Return the Worker's deployments, newest (live) first."""
        result = self.get(f"{self._script}/deployments")
        deployments = result.get("deployments", []) if isinstance(result, dict) else []
        return sorted(deployments, key=lambda d: d.get("created_on", ""), reverse=True)

    def list_versions(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Return up to ``limit`` versions, newest first, following page numbers."""
        return self.get_pages(f"{self._script}/versions", limit=limit, key="items")

    def get_version(self, version_id: str) -> dict[str, Any]:
        """Return one version with its bindings and annotations."""
        result: dict[str, Any] = self.get(
            f"{self._script}/versions/{quote(version_id)}"
        )
        return result

    def list_secrets(self) -> list[dict[str, Any]]:
        """Return the live Worker's secret names and types (never values)."""
        result: list[dict[str, Any]] = self.get(f"{self._script}/secrets") or []
        return result

    def put_secret(self, name: str, text: str) -> dict[str, Any]:
        """Set a Worker secret (a write, and a deployment: a new version at 100 %).

        The value travels in the body only; it is never logged or returned.
        """
        response = self._http.request(
            "PUT",
            f"{self._script}/secrets",
            json={"name": name, "text": text, "type": "secret_text"},
            idempotent=False,
        )
        result: dict[str, Any] = self._unwrap(response) or {}
        return {"name": result.get("name"), "type": result.get("type")}

    def get_settings(self) -> dict[str, Any]:
        """Return the live Worker's bindings and runtime settings."""
        result: dict[str, Any] = self.get(f"{self._script}/settings") or {}
        return result

    def create_deployment(self, version_id: str, message: str) -> dict[str, Any]:
        """Deploy one version at 100 %: the rollback primitive. Never retried."""
        body = {
            "strategy": "percentage",
            "versions": [{"version_id": version_id, "percentage": 100}],
            "annotations": {"workers/message": message[:100]},
        }
        response = self._http.request(
            "POST", f"{self._script}/deployments", json=body, idempotent=False
        )
        result: dict[str, Any] = self._unwrap(response)
        return result

    # D1 -------------------------------------------------------------------------

    def d1_query(
        self, sql: str, params: Sequence[Any] = (), *, read_only: bool = True
    ) -> list[dict[str, Any]]:
        """Run SQL on the environment's D1 database.

        Args:
            sql: one or more statements separated by ``;``.
            params: positional bind values for ``?`` placeholders.
            read_only: when True the call may be retried on 429/5xx.

        Returns:
            One entry per statement: ``{results, success, meta}``.

        Raises:
            APIError: when the call or any statement failed.
        """
        body: dict[str, Any] = {"sql": sql}
        if params:
            body["params"] = list(params)
        return self._d1_post(body, idempotent=read_only)

    def d1_batch(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[dict[str, Any]]:
        """Run several statements, each with its own params, as one D1 batch.

        One ``/query`` call with a ``batch`` body is D1's unit of atomicity: if any
        statement fails, none of them is applied. Never retried.

        Raises:
            APIError: when the call or any statement failed.
        """
        body = {"batch": [{"sql": sql, "params": list(p)} for sql, p in statements]}
        return self._d1_post(body, idempotent=False)

    def _d1_post(
        self, body: dict[str, Any], *, idempotent: bool
    ) -> list[dict[str, Any]]:
        """POST to D1's query endpoint; check the nested success of each statement."""
        path = f"{self._account}/d1/database/{self.environment.d1_database_id}/query"
        response = self._http.request("POST", path, json=body, idempotent=idempotent)
        results: list[dict[str, Any]] = self._unwrap(response) or []
        failed = [s for s in results if not s.get("success", False)]
        if failed:
            raise APIError(
                f"cloudflare: D1 statement failed: {failed[0].get('error', failed[0])!r}",
                system="cloudflare",
                url=path,
                status_code=response.status_code,
            )
        return results

    # KV -------------------------------------------------------------------------

    def list_kv_namespaces(self) -> list[dict[str, Any]]:
        """Return every KV namespace of the account."""
        return self.get_pages(f"{self._account}/storage/kv/namespaces", limit=1000)

    def kv_get(self, namespace_id: str, key: str) -> bytes | None:
        """Return a KV value's raw bytes, or None when the key is absent.

        The value endpoint answers raw bytes, not an envelope; a 404 carrying an
        envelope whose codes do not name the namespace (10013) means "no such key".
        KV is eventually consistent: a key written a moment ago may still read as
        absent.
        """
        response = self._http.request("GET", self._kv_value_path(namespace_id, key))
        if response.is_success:
            return response.content
        if response.status_code == 404:
            error = self._error(response, _json_or_empty(response), None)
            if 10013 not in error.codes:
                return None
            raise error
        self._unwrap(response)
        raise AssertionError("unreachable: _unwrap raises on an error answer")

    def kv_put(
        self, namespace_id: str, key: str, value: bytes, *, ttl: int | None = None
    ) -> None:
        """Write a KV value as raw bytes, with an optional TTL (at least 60 s)."""
        params = {"expiration_ttl": ttl} if ttl is not None else None
        response = self._http.request(
            "PUT",
            self._kv_value_path(namespace_id, key),
            content=value,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
            idempotent=False,
        )
        self._unwrap(response)

    def kv_delete(self, namespace_id: str, key: str) -> None:
        """Delete a KV key; deleting an absent key succeeds."""
        response = self._http.request(
            "DELETE", self._kv_value_path(namespace_id, key), idempotent=True
        )
        if response.status_code == 204:
            return
        self._unwrap(response)

    def kv_bulk_delete(self, namespace_id: str, keys: Sequence[str]) -> int:
        """Delete up to 10,000 keys in one call; return how many KV reports deleted.

        Raises:
            APIError: when KV lists keys it could not delete (retry those).
        """
        path = (
            f"{self._account}/storage/kv/namespaces/{quote(namespace_id)}/bulk/delete"
        )
        response = self._http.request("POST", path, json=list(keys), idempotent=True)
        result = self._unwrap(response) or {}
        failed = list(result.get("unsuccessful_keys") or [])
        if failed:
            raise APIError(
                f"cloudflare: KV bulk delete left {len(failed)} keys undeleted; "
                "run the purge again",
                system="cloudflare",
                url=path,
            )
        return int(result.get("successful_key_count") or len(keys))

    def kv_list_keys(
        self, namespace_id: str, *, prefix: str = "", limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """List key names (with expiration and metadata) under ``prefix``.

        Follows the cursor while it is non-empty, even across empty pages, and
        resends the prefix on every page (CLOUDFLARE.md section 4).
        """
        path = f"{self._account}/storage/kv/namespaces/{quote(namespace_id)}/keys"
        keys: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(MAX_KV_PAGES):
            params: dict[str, Any] = {"limit": 1000, "prefix": prefix}
            if cursor:
                params["cursor"] = cursor
            response = self._http.request("GET", path, params=params)
            keys.extend(self._unwrap(response) or [])
            cursor = (response.json().get("result_info") or {}).get("cursor") or ""
            if not cursor or len(keys) >= limit:
                break
        return keys[:limit]

    def _kv_value_path(self, namespace_id: str, key: str) -> str:
        return (
            f"{self._account}/storage/kv/namespaces/{quote(namespace_id)}"
            f"/values/{quote(key, safe='')}"
        )

    # Queues ---------------------------------------------------------------------

    def find_queue(self, name: str) -> dict[str, Any] | None:
        """Return the queue named ``name`` (its id is ``queue_id``), or None."""
        path = f"{self._account}/queues"
        params = {"name": name, "page": 1, "per_page": PAGE_SIZE}
        found = self._unwrap(self._http.request("GET", path, params=params)) or []
        return next((q for q in found if q.get("queue_name") == name), None)

    def get_queue(self, queue_id: str) -> dict[str, Any]:
        """Return a queue with its producers, consumers and settings."""
        result: dict[str, Any] = self.get(f"{self._account}/queues/{quote(queue_id)}")
        return result

    def list_queue_consumers(self, queue_id: str) -> list[dict[str, Any]]:
        """Return a queue's consumers (a queue has at most one Worker consumer)."""
        path = f"{self._account}/queues/{quote(queue_id)}/consumers"
        result: list[dict[str, Any]] = self.get(path) or []
        return result

    def queue_metrics(self, queue_id: str) -> dict[str, Any]:
        """Return ``backlog_count``, ``backlog_bytes`` and the oldest message time."""
        path = f"{self._account}/queues/{quote(queue_id)}/metrics"
        result: dict[str, Any] = self.get(path) or {}
        return result

    def peek_messages(self, queue_id: str, *, batch_size: int) -> list[dict[str, Any]]:
        """Read up to ``batch_size`` messages without leasing them."""
        result = self._queue_post(queue_id, "messages/peek", {"batch_size": batch_size})
        return list((result or {}).get("messages") or [])

    def pull_messages(
        self, queue_id: str, *, batch_size: int, visibility_timeout_ms: int = 30_000
    ) -> list[dict[str, Any]]:
        """Lease up to ``batch_size`` messages; they return unless acked in time."""
        body = {
            "batch_size": batch_size,
            "visibility_timeout_ms": visibility_timeout_ms,
            "visibility_timeout": visibility_timeout_ms,
        }
        result = self._queue_post(queue_id, "messages/pull", body)
        return list((result or {}).get("messages") or [])

    def ack_messages(
        self, queue_id: str, *, acks: Sequence[str], retries: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Ack (delete) leased messages and release others, by lease id."""
        body = {
            "acks": [{"lease_id": lease} for lease in acks],
            "retries": [{"lease_id": lease} for lease in retries],
        }
        result: dict[str, Any] = self._queue_post(queue_id, "messages/ack", body) or {}
        return result

    def send_messages(self, queue_id: str, bodies: Sequence[Any]) -> None:
        """Send JSON messages in one batch (at most 100). Never retried."""
        messages = [{"body": body, "content_type": "json"} for body in bodies]
        self._queue_post(queue_id, "messages/batch", {"messages": messages})

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run a GraphQL Analytics query; return ``data`` or raise on ``errors``."""
        body = {"query": query, "variables": variables}
        response = self._http.request("POST", "graphql", json=body, idempotent=True)
        payload = _json_or_empty(response)
        if response.is_success and payload.get("data") and not payload.get("errors"):
            data: dict[str, Any] = payload["data"]
            return data
        if not response.is_success and "errors" not in payload:
            self._unwrap(response)
        texts = [str(e.get("message")) for e in payload.get("errors") or []]
        raise APIError(
            f"cloudflare: GraphQL HTTP {response.status_code}: "
            f"{'; '.join(texts) or 'no data'}",
            system="cloudflare",
            url="graphql",
            status_code=response.status_code,
        )

    def _queue_post(self, queue_id: str, tail: str, body: dict[str, Any]) -> Any:
        path = f"{self._account}/queues/{quote(queue_id)}/{tail}"
        return self._unwrap(
            self._http.request("POST", path, json=body, idempotent=False)
        )

    # Analytics and observability ------------------------------------------------

    def telemetry_events(
        self, start_ms: int, end_ms: int, *, limit: int = 5000, page_size: int = 1000
    ) -> list[dict[str, Any]]:
        """Return Workers Logs events of the Worker between two epoch-ms times.

        Uses the Workers Observability telemetry query (view ``events``), newest
        first, following ``offset`` (the last event's ``$metadata.id``) until a
        short page or ``limit``. Needs observability enabled on the Worker; with a
        head sampling rate below 1 only that share of requests is logged.
        """
        path = f"{self._account}/workers/observability/telemetry/query"
        service = {
            "key": "$metadata.service",
            "operation": "eq",
            "type": "string",
            "value": self.environment.worker_name,
        }
        events: list[dict[str, Any]] = []
        offset = ""
        while len(events) < limit:
            body: dict[str, Any] = {
                "queryId": "opslib-events",
                "timeframe": {"from": start_ms, "to": end_ms},
                "view": "events",
                "limit": page_size,
                "parameters": {"filters": [service]},
            }
            if offset:
                body["offset"] = offset
            response = self._http.request("POST", path, json=body, idempotent=True)
            result = self._unwrap(response) or {}
            batch = (result.get("events") or {}).get("events") or []
            events.extend(batch)
            if len(batch) < page_size:
                break
            offset = str(batch[-1].get("$metadata", {}).get("id") or "")
        return events[:limit]

    # Plumbing -------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        """GET a path and return the envelope's ``result``."""
        return self._unwrap(self._http.request("GET", path, params=params or None))

    def get_pages(
        self, path: str, *, limit: int, key: str | None = None
    ) -> list[dict[str, Any]]:
        """Follow page-style pagination until a short page, the total or ``limit``."""
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            response = self._http.request(
                "GET", path, params={"page": page, "per_page": PAGE_SIZE}
            )
            result = self._unwrap(response)
            batch = (result.get(key, []) if key else result) or []
            items.extend(batch)
            info = response.json().get("result_info") or {}
            total = info.get("total_count")
            if (
                len(batch) < PAGE_SIZE
                or len(items) >= limit
                or (total and len(items) >= total)
            ):
                break
        return items[:limit]

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _unwrap(self, response: httpx.Response) -> Any:
        """Check status and envelope; return ``result`` or raise the matching error."""
        ray = response.headers.get("cf-ray")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise APIError(
                f"cloudflare: HTTP {response.status_code} with a body that is not a "
                f"JSON object ({len(response.content)} bytes, "
                f"{response.headers.get('content-type', 'no content type')}); cut "
                "short in transit, a WAF challenge or an outage page?",
                system="cloudflare",
                url=str(response.url.copy_with(query=None)),
                status_code=response.status_code,
                request_id=ray,
            )
        if response.is_success and payload.get("success", False):
            return payload.get("result")
        raise self._error(response, payload, ray)

    def _error(
        self, response: httpx.Response, payload: dict[str, Any], ray: str | None
    ) -> ServiceError:
        errors = payload.get("errors") or []
        codes = tuple(int(e.get("code", 0)) for e in errors if isinstance(e, dict))
        text = "; ".join(
            f"{e.get('code')}: {e.get('message')}"
            for e in errors
            if isinstance(e, dict)
        )
        message = (
            f"cloudflare: HTTP {response.status_code} ({text or 'no error detail'})"
        )
        kind: type[ServiceError] = APIError
        if response.status_code == 429 or 971 in codes:
            kind, message = RateLimitError, f"{message}; {_rate_limit_wait(response)}"
        elif response.status_code in (401, 403) or AUTH_CODES.intersection(codes):
            kind = AuthError
            message += "" if self._has_token else f"; {TOKEN_VARIABLE} is not set"
            if not self._has_token and self.environment.secrets_file:
                message += f" in {self.environment.secrets_file} ({MISSING_FILE_HINT})"
        return kind(
            message,
            system="cloudflare",
            url=str(response.url.copy_with(query=None)),
            status_code=response.status_code,
            codes=codes,
            request_id=ray,
        )


def _rate_limit_wait(response: httpx.Response) -> str:
    """How long to hold off, and whether Cloudflare said so or the docs do.

    Cloudflare's ``retry-after`` wins; without a readable one, the documented
    rule stands: over the limit, every call is blocked for five minutes.
    """
    return rate_limit_wait(
        "Cloudflare",
        response.headers.get("retry-after", ""),
        f"wait the documented {RATE_LIMIT_WINDOW_MIN}-minute rate-limit window "
        "before retrying",
    )


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
