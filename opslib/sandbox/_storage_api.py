"""D1 and Workers KV endpoints of the Cloudflare stand-in (CLOUDFLARE.md 2 and 4).

D1 queries run on the sandbox's real SQLite file. When the scenario makes D1
unavailable, ``/query`` and ``/raw`` answer code 7500 with a D1-side message and
HTTP 400 (the status the reference gives for 7500 since 2024-04-15), while listing
and describing the database still work. KV values are raw bytes; keys list with a
cursor that is ``""`` at the end.

Codes the reference does not give are the stand-in's own choice: 7404 for an
unknown database and 10009 for a missing key.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import json
import logging
from typing import Any

from . import _d1
from ._envelope import ApiError, body_json, iso, ok, paginate
from ._http import Request, Response
from ._state import Namespace, World

logger = logging.getLogger(__name__)

MIN_TTL = 60
MAX_KEYS = 1000
MIN_KEYS = 10


def list_databases(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET /accounts/{a}/d1/database (?name=&page=&per_page=)."""
    env = world.environment
    entry = {
        "uuid": env.d1_database_id,
        "name": env.d1_database_name,
        "created_at": _created_at(world),
        "version": "production",
        "jurisdiction": None,
    }
    info = _d1.database_info(
        world.database, env.d1_database_id, env.d1_database_name, _created_at(world)
    )
    entry.update(num_tables=info["num_tables"], file_size=info["file_size"])
    wanted = (request.arg("name") or "").lower()
    items = [entry] if wanted in env.d1_database_name.lower() else []
    chunk, page_info = paginate(items, request, default=1000, maximum=10_000)
    return ok(chunk, result_info=page_info)


def get_database(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../d1/database/{db}: answers even while queries fail."""
    env = world.environment
    _check_database(world, params)
    return ok(
        _d1.database_info(
            world.database, env.d1_database_id, env.d1_database_name, _created_at(world)
        )
    )


def query_database(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST .../d1/database/{db}/query: rows as objects."""
    return _run(world, request, params, raw=False)


def raw_query_database(
    world: World, request: Request, params: dict[str, str]
) -> Response:
    """POST .../d1/database/{db}/raw: rows as arrays with column names."""
    return _run(world, request, params, raw=True)


def list_namespaces(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../storage/kv/namespaces (page-style; ?order=id|title&direction=)."""
    items = [
        {"id": ns.id, "title": ns.title, "supports_url_encoding": True}
        for ns in world.scenario.namespaces.values()
    ]
    order = request.arg("order") or "id"
    if order not in ("id", "title"):
        order = "id"
    items.sort(
        key=lambda item: str(item[order]), reverse=request.arg("direction") == "desc"
    )
    chunk, info = paginate(items, request, default=20, maximum=100)
    return ok(chunk, result_info=info)


def list_keys(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../{ns}/keys (?prefix=&cursor=&limit=): cursor-style result_info."""
    namespace = _namespace(world, params)
    limit = _limit(request)
    after = _decode_cursor(request.arg("cursor") or "")
    names, more = namespace.list_keys(request.arg("prefix") or "", after, limit)
    result = [_key_json(namespace, name) for name in names]
    cursor = _encode_cursor(names[-1]) if more and names else ""
    return ok(result, result_info={"count": len(result), "cursor": cursor})


def get_value(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../{ns}/values/{key}: the raw bytes, not enveloped."""
    entry = _namespace(world, params).get(params["key"])
    if entry is None:
        raise ApiError(404, 10009, "get: 'key not found'")
    headers = [("Content-Type", "application/octet-stream")]
    if entry.expiration is not None:
        headers.append(("Expiration", str(int(entry.expiration))))
    return Response(200, entry.value, headers)


def put_value(world: World, request: Request, params: dict[str, str]) -> Response:
    """PUT .../{ns}/values/{key}?expiration_ttl=: raw body or multipart value."""
    namespace = _namespace(world, params)
    ttl = _ttl(request)
    value, metadata = _value_and_metadata(request)
    namespace.put(
        params["key"],
        value,
        ttl=ttl,
        expiration=_number_arg(request, "expiration"),
        metadata=metadata,
    )
    return ok({})


def delete_value(world: World, request: Request, params: dict[str, str]) -> Response:
    """DELETE .../{ns}/values/{key}."""
    _namespace(world, params).delete(params["key"])
    return ok({})


def bulk_delete(world: World, request: Request, params: dict[str, str]) -> Response:
    """POST .../{ns}/bulk/delete with a JSON array of key names."""
    namespace = _namespace(world, params)
    keys = body_json(request)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ApiError(400, 10001, "body must be a JSON array of key names")
    for key in keys:
        namespace.delete(key)
    return ok({"successful_key_count": len(keys), "unsuccessful_keys": []})


def _run(
    world: World, request: Request, params: dict[str, str], *, raw: bool
) -> Response:
    _check_database(world, params)
    body = body_json(request)
    if not world.scenario.d1_available:
        raise ApiError(400, 7500, _d1.UNAVAILABLE_MESSAGE)
    try:
        return ok(_d1.run(world.database, body, raw=raw))
    except _d1.D1Error as error:
        raise ApiError(error.status, error.code, str(error)) from error


def _check_database(world: World, params: dict[str, str]) -> None:
    if params["database"] != world.environment.d1_database_id:
        raise ApiError(
            404, 7404, f"The database {params['database']} could not be found"
        )


def _created_at(world: World) -> str:
    return iso(world.started_at - 45 * 86_400)


def _namespace(world: World, params: dict[str, str]) -> Namespace:
    namespace = world.namespace(params["namespace"])
    if namespace is None:
        raise ApiError(404, 10013, "namespace not found")
    return namespace


def _limit(request: Request) -> int:
    try:
        limit = int(request.arg("limit") or MAX_KEYS)
    except ValueError as error:
        raise ApiError(400, 10001, "limit must be an integer") from error
    return min(MAX_KEYS, max(MIN_KEYS, limit))


def _number_arg(request: Request, name: str) -> float | None:
    text = request.arg(name)
    if not text:
        return None
    try:
        return float(int(text))
    except ValueError as error:
        raise ApiError(
            400, 10001, f"{name} must be an integer, got {text!r}"
        ) from error


def _ttl(request: Request) -> float | None:
    ttl = _number_arg(request, "expiration_ttl")
    if ttl is None:
        return None
    if ttl < MIN_TTL:
        raise ApiError(
            400,
            10044,
            f"Invalid expiration_ttl of {ttl:g}. Expiration TTL "
            f"must be at least {MIN_TTL}.",
        )
    return ttl


def _value_and_metadata(request: Request) -> tuple[bytes, Any]:
    content_type = request.headers.get("Content-Type") or ""
    if not content_type.startswith("multipart/form-data"):
        return request.body, None
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        head + request.body
    )
    value, metadata = b"", None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        raw = part.get_payload(decode=True)
        payload = raw if isinstance(raw, bytes) else b""
        if name == "value":
            value = payload
        elif name == "metadata":
            metadata = json.loads(payload.decode("utf-8") or "null")
    return value, metadata


def _key_json(namespace: Namespace, name: str) -> dict[str, Any]:
    entry = namespace.entries[name]
    item: dict[str, Any] = {"name": name}
    if entry.expiration is not None:
        item["expiration"] = int(entry.expiration)
    if entry.metadata is not None:
        item["metadata"] = entry.metadata
    return item


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")


def _decode_cursor(cursor: str) -> str:
    if not cursor:
        return ""
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise ApiError(400, 10001, f"invalid cursor {cursor!r}") from error
