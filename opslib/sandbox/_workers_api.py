"""Workers endpoints of the Cloudflare stand-in (CLOUDFLARE.md section 3).

Scripts, settings (bindings of the live version), secrets (names only), deployments
(newest first; creating one switches the platform stand-in at once) and versions
(page-style listing, newest first). Handlers run under the world lock.

Deployment validation errors other than 10220 have no documented code; the stand-in
answers them with HTTP 400 and code 10021 ("validation error" in the reference).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from ._envelope import ApiError, body_json, iso, ok, paginate
from ._http import Request, Response
from ._state import Deployment, Script, Version, World, iter_bindings
from ._webhooks import SECRET_NAME as WEBHOOK_SECRET

logger = logging.getLogger(__name__)

DEPLOYABLE_VERSIONS = 100
MESSAGE_BYTES = 1000
_AUTHOR_ID = "3f1c9a7e5b2d4c6a8e0f1a2b3c4d5e6f"


def list_scripts(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET /accounts/{a}/workers/scripts."""
    return ok([_script_json(s) for s in world.scenario.scripts.values()])


def script_settings(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../scripts/{s}/settings: bindings and runtime of the live version."""
    script = _script(world, params)
    version = script.live_version()
    return ok(
        {
            "bindings": list(iter_bindings(version)),
            "compatibility_date": script.compatibility_date,
            "compatibility_flags": script.compatibility_flags,
            "limits": {"cpu_ms": 30_000},
            "placement": {},
            "usage_model": "standard",
            "logpush": False,
            "observability": {"enabled": script.handlers == ["queue"]},
            "tags": [],
            "tail_consumers": [],
        }
    )


def list_secrets(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../scripts/{s}/secrets: names and types, never values."""
    version = _script(world, params).live_version()
    return ok([{"name": n, "type": "secret_text"} for n in sorted(version.secrets)])


def put_secret(world: World, request: Request, params: dict[str, str]) -> Response:
    """PUT .../scripts/{s}/secrets: a secret edit is a new version deployed at 100 %.

    Refused with 10215 when the newest version is not the one fully deployed.
    """
    script = _script(world, params)
    body = body_json(request)
    if not isinstance(body, dict) or not body.get("name") or "text" not in body:
        raise ApiError(400, 10021, "secret needs name, text and type")
    newest = script.versions[-1]
    if script.live.versions != [(newest.id, 100)]:
        raise ApiError(
            400,
            10215,
            "Secret edit refused: the newest version of this "
            "Worker is not the one deployed at 100 %; deploy it first.",
        )
    secrets = dict(newest.secrets)
    name = str(body["name"])
    # Values stay placeholders, except the webhook secret the platform stand-in
    # verifies signatures with.
    keep = name == WEBHOOK_SECRET and str(body["text"]).startswith("whsec_")
    secrets[name] = str(body["text"]) if keep else uuid.uuid4().hex[:16]
    add_version(script, newest, secrets, "secret", "", time.time())
    logger.info("secret put script=%s name=%s", script.name, body["name"])
    return ok({"name": body["name"], "type": body.get("type", "secret_text")})


def list_deployments(
    world: World, request: Request, params: dict[str, str]
) -> Response:
    """GET .../scripts/{s}/deployments: ``result.deployments``, newest (live) first."""
    script = _script(world, params)
    return ok(
        {"deployments": [_deployment_json(d) for d in reversed(script.deployments)]}
    )


def get_deployment(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../scripts/{s}/deployments/{id}."""
    script = _script(world, params)
    for deployment in script.deployments:
        if deployment.id == params["deployment"]:
            return ok(_deployment_json(deployment))
    raise _not_found(request)


def create_deployment(
    world: World, request: Request, params: dict[str, str]
) -> Response:
    """POST .../scripts/{s}/deployments[?force=true]: switch traffic to versions."""
    script = _script(world, params)
    body = body_json(request)
    targets = _validate_deployment(script, body)
    if request.arg("force", "false") != "true":
        _refuse_changed_secrets(script, targets)

    live = script.live_version()
    message = str(((body.get("annotations") or {}).get("workers/message")) or "")
    older = len(targets) == 1 and targets[0][0].number < live.number
    deployment = Deployment(
        id=str(uuid.uuid4()),
        created_on=time.time(),
        message=message.encode()[:MESSAGE_BYTES].decode("utf-8", "ignore"),
        triggered_by="rollback" if older else "deployment",
        versions=[(v.id, pct) for v, pct in targets],
        source="api",
    )
    script.deployments.append(deployment)
    logger.info(
        "deployment created script=%s versions=%s", script.name, deployment.versions
    )
    return ok(_deployment_json(deployment))


def list_versions(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../scripts/{s}/versions: page-style, newest first.

    ``deployable=true`` returns the deployable versions on one page, ignoring
    ``page`` and ``per_page`` as the real endpoint does.
    """
    script = _script(world, params)
    newest_first = [_version_item(v) for v in reversed(script.versions)]
    if request.arg("deployable") == "true":
        items = newest_first[:DEPLOYABLE_VERSIONS]
        info = {
            "page": 1,
            "per_page": len(items),
            "count": len(items),
            "total_count": len(items),
            "total_pages": 1,
        }
        return ok({"items": items}, result_info=info)
    chunk, info = paginate(newest_first, request, default=10, maximum=100)
    return ok({"items": chunk}, result_info=info)


def get_version(world: World, request: Request, params: dict[str, str]) -> Response:
    """GET .../scripts/{s}/versions/{id}: metadata, annotations and resources."""
    script = _script(world, params)
    version = script.version(params["version"])
    if version is None:
        raise _not_found(request)
    result = _version_item(version)
    result["resources"] = {
        "bindings": list(iter_bindings(version)),
        "script": {
            "etag": version.etag,
            "handlers": script.handlers,
            "last_deployed_from": version.source,
        },
        "script_runtime": {
            "compatibility_date": script.compatibility_date,
            "compatibility_flags": script.compatibility_flags,
            "usage_model": "standard",
            "limits": {"cpu_ms": 30_000},
        },
    }
    result["startup_time_ms"] = round(version.startup_ms)
    return ok(result)


def add_version(
    script: Script,
    base: Version,
    secrets: dict[str, str],
    triggered_by: str,
    message: str,
    when: float,
) -> Version:
    """Append a version copied from ``base`` and deploy it at 100 %.

    Returns:
        The new version.
    """
    version = Version(
        id=str(uuid.uuid4()),
        number=script.versions[-1].number + 1,
        created_on=when,
        message=message,
        triggered_by=triggered_by,
        secrets=secrets,
        bindings=list(base.bindings),
        etag=base.etag,
        broken=base.broken,
    )
    script.versions.append(version)
    script.deployments.append(
        Deployment(str(uuid.uuid4()), when, message, triggered_by, [(version.id, 100)])
    )
    return version


def _validate_deployment(script: Script, body: Any) -> list[tuple[Version, float]]:
    if not isinstance(body, dict) or body.get("strategy") != "percentage":
        raise ApiError(400, 10021, 'strategy must be "percentage"')
    entries = body.get("versions")
    if not isinstance(entries, list) or not 1 <= len(entries) <= 2:
        raise ApiError(400, 10021, "a deployment holds one or two versions")
    recent = {v.id for v in script.versions[-DEPLOYABLE_VERSIONS:]}
    targets: list[tuple[Version, float]] = []
    for entry in entries:
        version = script.version(str((entry or {}).get("version_id")))
        percentage = (entry or {}).get("percentage")
        if version is None:
            raise ApiError(400, 10021, f"version {entry!r} does not exist")
        if version.id not in recent:
            raise ApiError(
                400,
                10021,
                f"version {version.id} is not among the "
                f"{DEPLOYABLE_VERSIONS} most recent versions",
            )
        if not isinstance(percentage, (int, float)) or not 0 < percentage <= 100:
            raise ApiError(400, 10021, "percentage must be a number in (0, 100]")
        targets.append(
            (version, int(percentage) if percentage == int(percentage) else percentage)
        )
    if abs(sum(p for _, p in targets) - 100) > 1e-9:
        raise ApiError(400, 10021, "version percentages must add up to 100")
    return targets


def _refuse_changed_secrets(
    script: Script, targets: list[tuple[Version, float]]
) -> None:
    current = script.live_version().secrets
    changed: set[str] = set()
    for version, _ in targets:
        names = set(current) | set(version.secrets)
        changed |= {n for n in names if current.get(n) != version.secrets.get(n)}
    if changed:
        raise ApiError(
            400,
            10220,
            "Deploying this version would change the Worker's "
            "secrets; retry with ?force=true to deploy it anyway. The "
            "following secrets have changed: " + ", ".join(sorted(changed)),
        )


def _script(world: World, params: dict[str, str]) -> Script:
    script = world.scenario.scripts.get(params["script"])
    if script is None:
        raise ApiError(404, 10007, "This Worker does not exist on your account.")
    return script


def _not_found(request: Request) -> ApiError:
    return ApiError(
        404,
        7003,
        f"Could not route to {request.raw_path}, perhaps your "
        "object identifier is invalid?",
    )


def _script_json(script: Script) -> dict[str, Any]:
    live = script.live_version()
    return {
        "id": script.name,
        "etag": live.etag,
        "created_on": iso(script.created_on),
        "modified_on": iso(script.live.created_on),
        "handlers": script.handlers,
        "compatibility_date": script.compatibility_date,
        "compatibility_flags": script.compatibility_flags,
        "usage_model": "standard",
        "last_deployed_from": live.source,
        "has_assets": "fetch" in script.handlers,
        "has_modules": True,
        "logpush": False,
        "tags": [],
        "placement_mode": None,
    }


def _deployment_json(deployment: Deployment) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "created_on": iso(deployment.created_on),
        "source": deployment.source,
        "strategy": "percentage",
        "author_email": deployment.author_email,
        "annotations": {
            "workers/message": deployment.message,
            "workers/triggered_by": deployment.triggered_by,
        },
        "versions": [
            {"version_id": v, "percentage": p} for v, p in deployment.versions
        ],
    }


def _version_item(version: Version) -> dict[str, Any]:
    return {
        "id": version.id,
        "number": version.number,
        "metadata": {
            "created_on": iso(version.created_on),
            "modified_on": iso(version.created_on),
            "source": version.source,
            "author_id": _AUTHOR_ID,
            "author_email": version.author_email,
            "hasPreview": False,
        },
        "annotations": {
            "workers/message": version.message,
            "workers/tag": version.tag,
            "workers/triggered_by": version.triggered_by,
        },
    }
