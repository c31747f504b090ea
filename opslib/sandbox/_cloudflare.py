"""The Cloudflare API stand-in: authentication, routing, injected faults.

Everything lives under ``/client/v4`` and answers in the v4 envelope. Checks run in
this order: injected faults, the ``Authorization`` header, the route, the account
id, then the handler (``_workers_api`` and ``_storage_api``) under the world lock.

Authentication answers (CLOUDFLARE.md section 0):

* no ``Authorization`` header: HTTP 401 with code 1001. The reference gives 1001
  with "4xx"; 401 is chosen so that clients treat it as a credentials problem.
* a header that is not ``Bearer <token>`` with token characters: HTTP 400, code
  6003 with ``error_chain`` 6111, as public reports of the real API show.
* a well-formed but unknown token: HTTP 401, code 1000 "Invalid API Token".
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from urllib.parse import unquote

from . import _queues, _storage_api, _workers_api
from ._envelope import ApiError, http_date, ok
from ._http import Request, Response
from ._state import World

logger = logging.getLogger(__name__)

PREFIX = "/client/v4"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,}$")
Handler = Callable[[World, Request, dict[str, str]], Response]
_SCRIPT = r"/accounts/(?P<account>[^/]+)/workers/scripts/(?P<script>[^/]+)"
_D1 = r"/accounts/(?P<account>[^/]+)/d1/database"
_KV = r"/accounts/(?P<account>[^/]+)/storage/kv/namespaces"


def _verify_token(world: World, request: Request, params: dict[str, str]) -> Response:
    token_id = hashlib.sha256(world.token.encode()).hexdigest()[:32]
    return ok(
        {"id": token_id, "status": "active"},
        messages=[
            {
                "code": 10000,
                "message": "This API Token is valid and active",
                "type": None,
            }
        ],
    )


_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(f"^{pattern}/?$"), handler)
    for method, pattern, handler in (
        ("GET", r"/user/tokens/verify", _verify_token),
        ("GET", r"/accounts/(?P<account>[^/]+)/tokens/verify", _verify_token),
        (
            "GET",
            r"/accounts/(?P<account>[^/]+)/workers/scripts",
            _workers_api.list_scripts,
        ),
        ("GET", _SCRIPT + r"/settings", _workers_api.script_settings),
        ("GET", _SCRIPT + r"/secrets", _workers_api.list_secrets),
        ("PUT", _SCRIPT + r"/secrets", _workers_api.put_secret),
        ("GET", _SCRIPT + r"/deployments", _workers_api.list_deployments),
        ("POST", _SCRIPT + r"/deployments", _workers_api.create_deployment),
        (
            "GET",
            _SCRIPT + r"/deployments/(?P<deployment>[^/]+)",
            _workers_api.get_deployment,
        ),
        ("GET", _SCRIPT + r"/versions", _workers_api.list_versions),
        ("GET", _SCRIPT + r"/versions/(?P<version>[^/]+)", _workers_api.get_version),
        ("GET", _D1, _storage_api.list_databases),
        ("GET", _D1 + r"/(?P<database>[^/]+)", _storage_api.get_database),
        ("POST", _D1 + r"/(?P<database>[^/]+)/query", _storage_api.query_database),
        ("POST", _D1 + r"/(?P<database>[^/]+)/raw", _storage_api.raw_query_database),
        ("GET", _KV, _storage_api.list_namespaces),
        ("GET", _KV + r"/(?P<namespace>[^/]+)/keys", _storage_api.list_keys),
        (
            "GET",
            _KV + r"/(?P<namespace>[^/]+)/values/(?P<key>.+)",
            _storage_api.get_value,
        ),
        (
            "PUT",
            _KV + r"/(?P<namespace>[^/]+)/values/(?P<key>.+)",
            _storage_api.put_value,
        ),
        (
            "DELETE",
            _KV + r"/(?P<namespace>[^/]+)/values/(?P<key>.+)",
            _storage_api.delete_value,
        ),
        ("POST", _KV + r"/(?P<namespace>[^/]+)/bulk/delete", _storage_api.bulk_delete),
    )
]
_ROUTES += _queues.ROUTES  # Queues and the backlog GraphQL query


class CloudflareApp:
    """Request handler of the Cloudflare API stand-in.

    Args:
        world: the shared sandbox state.
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, request: Request) -> Response:
        """Answer one API call."""
        self.world.delay("cloudflare_delay_ms")
        try:
            return self._answer(request)
        except ApiError as error:
            logger.debug("cloudflare error path=%s code=%s", request.path, error.code)
            return error.response()

    def _answer(self, request: Request) -> Response:
        self._check_faults()
        if not request.raw_path.startswith(PREFIX + "/"):
            raise ApiError(404, 7000, "No route for that URI")
        self._authenticate(request)
        handler, params = _match(request.method, request.raw_path[len(PREFIX) :])
        if (
            "account" in params
            and params["account"] != self.world.environment.account_id
        ):
            raise ApiError(
                404,
                7003,
                f"Could not route to {request.raw_path}, perhaps "
                "your object identifier is invalid?",
            )
        with self.world.lock:
            return handler(self.world, request, params)

    def _check_faults(self) -> None:
        if self.world.take_fault("cloudflare_429"):
            # 971 with Retry-After and x-ratelimit headers (CLOUDFLARE.md section 1).
            reset = http_date(time.time() + 1)
            raise ApiError(
                429,
                971,
                "Please wait and consider throttling your request speed",
                headers=[
                    ("Retry-After", "1"),
                    ("X-RateLimit-Limit", "1200"),
                    ("X-RateLimit-Remaining", "0"),
                    ("X-RateLimit-Reset", reset),
                ],
            )
        if self.world.take_fault("cloudflare_500"):
            # The reference names no code for internal errors; 10002 is the stand-in's.
            raise ApiError(500, 10002, "An internal error occurred; please retry")

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization")
        if header is None:
            raise ApiError(401, 1001, 'Missing "Authorization" header')
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not _TOKEN_SHAPE.match(token.strip()):
            raise ApiError(
                400,
                6003,
                "Invalid request headers",
                chain=((6111, "Invalid format for Authorization header"),),
            )
        if not hmac.compare_digest(token.strip().encode(), self.world.token.encode()):
            raise ApiError(401, 1000, "Invalid API Token")


def _match(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    for route_method, pattern, handler in _ROUTES:
        found = pattern.match(path)
        if found and route_method == method:
            return handler, {k: unquote(v) for k, v in found.groupdict().items()}
    raise ApiError(404, 7000, "No route for that URI")
