"""Named scenarios: a healthy platform and one fault per "API down" cause.

Every scenario is built around the moment it starts: versions, deployments and the
deleted KV namespace are dated relative to it. Version ids are drawn from seeded
generators, so the same scenario always has the same ids.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opslib._config import Environment

from ._backups import publish_backups
from ._state import Deployment, Namespace, ScenarioState, Script, Version, World

logger = logging.getLogger(__name__)

CONSUMER_SCRIPT = "manuscript-analysis-consumer"
DAY = 86_400.0
_MAIN_HISTORY = (
    (30, "Initial D1 release of the upload API"),
    (23, "Add Stripe checkout and webhook handlers"),
    (15, "Rate limiting for auth and upload routes"),
    (8, "Password reset flow and email service"),
    (3, "Cache manuscript lists in CACHE_KV"),
)
_PLAIN_VARS = (
    ("FRONTEND_URL", "https://example.com"),
    ("EMAIL_FROM_ADDRESS", "noreply@example.com"),
    ("EMAIL_FROM_NAME", "ManuscriptHub"),
    ("EMAIL_ADMIN_ADDRESS", "user@example.com"),
    ("EMAIL_REPLY_TO_ADDRESS", "support@example.com"),
    ("MAX_FILE_SIZE", "52428800"),
    ("SESSION_DURATION", "1800"),
)


@dataclass(frozen=True)
class Scenario:
    """A named state of the sandbox and what a correct runbook concludes from it.

    Attributes:
        name: scenario name, such as "bad-deployment".
        notebook: the runbook a drill runs against it.
        cause: the cause a correct runbook must name.
        description: one line for listings.
    """

    name: str
    notebook: str
    cause: str
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "api-down",
            "healthy",
            "Everything works; last deployment three days ago.",
        ),
        Scenario(
            "bad-deployment",
            "api-down",
            "bad-deployment",
            "Version 6, deployed 20 minutes ago at 100 %, fails every Worker route (static / still answers).",
        ),
        Scenario(
            "d1-unavailable",
            "api-down",
            "d1-unavailable",
            "D1 queries fail with a transient remote-node error.",
        ),
        Scenario(
            "missing-secret",
            "api-down",
            "missing-secret",
            "STRIPE_SECRET_KEY was deleted 40 minutes ago; payments fail.",
        ),
        Scenario(
            "kv-binding-broken",
            "api-down",
            "kv-binding",
            "The SESSIONS namespace was deleted 25 minutes ago; every Worker route answers 500.",
        ),
        Scenario(
            "cloudflare-outage",
            "api-down",
            "cloudflare-outage",
            "Workers is in a major outage; the edge answers 5xx.",
        ),
    )
}


# Hooks that change the world after the fresh D1 copy and KV are in place: rows,
# keys and switches of scenarios registered by other runbooks' scenario modules.
AfterReset = Callable[[World, float], None]
_AFTER_RESET: dict[str, AfterReset] = {}


def register_scenario(
    scenario: Scenario,
    *,
    fault: Callable[[_FaultContext], None] | None = None,
    after_reset: AfterReset | None = None,
) -> None:
    """Add a scenario, with the fault that builds its state and its D1/KV changes.

    Args:
        scenario: the scenario and its truth.
        fault: changes the scripts, namespaces and flags as they are built.
        after_reset: changes rows, keys and switches once the D1 copy and KV exist;
            called with the world locked; it may record ``details`` for the truth.

    Raises:
        ValueError: when the name is taken.
    """
    if scenario.name in SCENARIOS:
        raise ValueError(f"scenario: {scenario.name!r} is registered twice")
    SCENARIOS[scenario.name] = scenario
    if fault is not None:
        _FAULTS[scenario.name] = fault
    if after_reset is not None:
        _AFTER_RESET[scenario.name] = after_reset


def start_scenario(world: World, name: str, now: float | None = None) -> None:
    """Switch ``world`` to a fresh copy of scenario ``name``.

    Raises:
        KeyError: for an unknown scenario name.
    """
    now = time.time() if now is None else now
    state = build_state(SCENARIOS[name].name, world.environment, now)
    with world.lock:
        world.reset(state, now)
        _fill_kv(state, world, now)
        hook = _AFTER_RESET.get(name)
        if hook is not None:
            hook(world, now)
        publish_backups(world)


def truth(world: World) -> dict[str, Any]:
    """The running scenario's ground truth: scenario, notebook, cause, details."""
    with world.lock:
        scenario = SCENARIOS[world.scenario.name]
        details = dict(world.scenario.details)
    return {
        "scenario": scenario.name,
        "notebook": scenario.notebook,
        "cause": scenario.cause,
        "details": details,
    }


def build_state(name: str, environment: Environment, now: float) -> ScenarioState:
    """Build the scripts, namespaces and flags of a scenario."""
    rng = random.Random("sandbox-history")
    main = _main_script(environment, rng, now)
    consumer = _consumer_script(rng, now)
    namespaces = {
        ns_id: Namespace(ns_id, f"{environment.worker_name}-{binding}")
        for binding, ns_id in environment.kv_namespaces.items()
    }
    state = ScenarioState(name, {main.name: main, consumer.name: consumer}, namespaces)
    _apply_fault(state, main, environment, random.Random(name), now)
    return state


def _apply_fault(
    state: ScenarioState,
    main: Script,
    environment: Environment,
    rng: random.Random,
    now: float,
) -> None:
    fault = _FAULTS.get(state.name)
    if fault is not None:
        fault(_FaultContext(state, main, environment, rng, now))


@dataclass
class _FaultContext:
    state: ScenarioState
    main: Script
    environment: Environment
    rng: random.Random
    now: float


def _bad_deployment(ctx: _FaultContext) -> None:
    good = ctx.main.versions[-1]
    message = "Refactor router: move handlers to src/handlers"
    secrets = dict(good.secrets)
    bad = _new_version(ctx.main, ctx.rng, ctx.now - 20 * 60, "upload", secrets, message)
    bad.broken = True
    ctx.state.details = {"bad_version": bad.id, "good_version": good.id}


def _missing_secret(ctx: _FaultContext) -> None:
    good = ctx.main.versions[-1]
    secrets = {k: v for k, v in good.secrets.items() if k != "STRIPE_SECRET_KEY"}
    changed = _new_version(ctx.main, ctx.rng, ctx.now - 40 * 60, "secret", secrets, "")
    changed.etag = good.etag
    ctx.state.details = {
        "missing": ["STRIPE_SECRET_KEY"],
        "version": changed.id,
        "previous_version": good.id,
    }


def _d1_unavailable(ctx: _FaultContext) -> None:
    ctx.state.d1_available = False
    ctx.state.details = {"database_id": ctx.environment.d1_database_id}


def _kv_binding_broken(ctx: _FaultContext) -> None:
    namespace_id = ctx.environment.kv_namespaces["SESSIONS"]
    ctx.state.namespaces.pop(namespace_id, None)
    ctx.state.details = {
        "binding": "SESSIONS",
        "namespace_id": namespace_id,
        "deleted_at": ctx.now - 25 * 60,
    }


def _cloudflare_outage(ctx: _FaultContext) -> None:
    ctx.state.edge_outage = True
    ctx.state.details = {"component": "Workers", "started_at": ctx.now - 35 * 60}


_FAULTS: dict[str, Callable[[_FaultContext], None]] = {
    "bad-deployment": _bad_deployment,
    "missing-secret": _missing_secret,
    "d1-unavailable": _d1_unavailable,
    "kv-binding-broken": _kv_binding_broken,
    "cloudflare-outage": _cloudflare_outage,
}


def _new_version(
    script: Script,
    rng: random.Random,
    when: float,
    triggered_by: str,
    secrets: dict[str, str],
    message: str,
) -> Version:
    """Append a version and deploy it at 100 % at the same moment."""
    previous = script.versions[-1]
    version = Version(
        id=_uuid(rng),
        number=previous.number + 1,
        created_on=when,
        message=message,
        triggered_by=triggered_by,
        secrets=secrets,
        bindings=list(previous.bindings),
        etag=_hex(rng, 32),
    )
    script.versions.append(version)
    script.deployments.append(
        Deployment(
            id=_uuid(rng),
            created_on=when + 2,
            message=message,
            triggered_by=triggered_by,
            versions=[(version.id, 100)],
        )
    )
    return version


def _main_script(environment: Environment, rng: random.Random, now: float) -> Script:
    script = Script(
        environment.worker_name,
        now - 45 * DAY,
        ["fetch", "queue", "scheduled"],
        "2024-09-23",
        ["nodejs_compat"],
    )
    secrets = {name: _hex(rng, 8) for name in environment.required_secrets}
    bindings = _main_bindings(environment)
    for number, (days, message) in enumerate(_MAIN_HISTORY, start=1):
        when = now - days * DAY - rng.uniform(0, 6) * 3600
        version = Version(
            _uuid(rng),
            number,
            when,
            message,
            "upload",
            dict(secrets),
            bindings,
            _hex(rng, 32),
            tag=f"v1.{number}.0",
        )
        script.versions.append(version)
        script.deployments.append(
            Deployment(_uuid(rng), when + 3, message, "upload", [(version.id, 100)])
        )
    return script


def _consumer_script(rng: random.Random, now: float) -> Script:
    script = Script(
        CONSUMER_SCRIPT, now - 33 * DAY, ["queue"], "2024-01-01", ["nodejs_compat"]
    )
    bindings = [
        {
            "name": "MANUSCRIPTS_RAW",
            "type": "r2_bucket",
            "bucket_name": "manuscripts-raw",
        },
        {
            "name": "MANUSCRIPTS_PROCESSED",
            "type": "r2_bucket",
            "bucket_name": "manuscripts-processed",
        },
    ]
    for number, days in enumerate((33, 31), start=1):
        when = now - days * DAY
        version = Version(
            _uuid(rng),
            number,
            when,
            "Analysis queue consumer",
            "upload",
            {"ANTHROPIC_API_KEY": _hex(rng, 8)},
            bindings,
            _hex(rng, 32),
        )
        script.versions.append(version)
        script.deployments.append(
            Deployment(
                _uuid(rng), when + 3, version.message, "upload", [(version.id, 100)]
            )
        )
    return script


def _main_bindings(environment: Environment) -> list[dict[str, Any]]:
    bindings: list[dict[str, Any]] = [{"name": "ASSETS", "type": "assets"}]
    bindings.append(
        {"name": "DB", "type": "d1", "database_id": environment.d1_database_id}
    )
    bindings += [
        {"name": name, "type": "kv_namespace", "namespace_id": ns_id}
        for name, ns_id in environment.kv_namespaces.items()
    ]
    bindings += [
        {"name": name, "type": "r2_bucket", "bucket_name": bucket}
        for name, bucket in environment.r2_buckets.items()
    ]
    bindings += [
        {"name": name, "type": "queue", "queue_name": queue}
        for name, queue in environment.queues.items()
    ]
    bindings += [{"name": n, "type": "plain_text", "text": t} for n, t in _PLAIN_VARS]
    return bindings


def _fill_kv(state: ScenarioState, world: World, now: float) -> None:
    """Put a few live sessions and cache entries in the namespaces that exist."""
    rng = random.Random(f"kv:{state.name}")
    connection = sqlite3.connect(world.database)
    try:
        users = connection.execute(
            "SELECT id, email, role, subscription_tier FROM users "
            "WHERE email_verified = 1 AND email LIKE 'author%' ORDER BY email LIMIT 60"
        ).fetchall()
    finally:
        connection.close()
    sessions = state.namespaces.get(world.environment.kv_namespaces.get("SESSIONS", ""))
    cache = state.namespaces.get(world.environment.kv_namespaces.get("CACHE_KV", ""))
    for user_id, email, role, tier in rng.sample(users, 24):
        left = rng.uniform(120, 1700)
        session = {
            "userId": user_id,
            "createdAt": int((now - 1800 + left) * 1000),
            "expiresAt": int((now + left) * 1000),
            "rememberMe": False,
        }
        if sessions is not None:
            sessions.put(
                f"session:{_uuid(rng)}", json.dumps(session).encode(), ttl=left
            )
        profile = {
            "id": user_id,
            "email": email,
            "role": role,
            "subscription_tier": tier,
        }
        if cache is not None:
            cache.put(f"user:{user_id}", json.dumps(profile).encode(), ttl=3600)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, nbytes: int) -> str:
    return rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()


from . import _scenarios_auth  # noqa: E402,F401  registers scenarios
from . import _scenarios_reset  # noqa: E402,F401  registers scenarios
from . import _scenarios_payment  # noqa: E402,F401  registers scenarios
from . import _scenarios_errorrate  # noqa: E402,F401  registers scenarios
from . import _scenarios_queues  # noqa: E402,F401  registers scenarios
from . import _scenarios_latency  # noqa: E402,F401  registers scenarios
from . import _scenarios_webhooks  # noqa: E402,F401  registers scenarios
from . import _scenarios_backups  # noqa: E402,F401  registers scenarios
from . import _scenarios_r2  # noqa: E402,F401  registers scenarios
