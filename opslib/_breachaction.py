"""The gated steps of the security-breach procedure: rotate a secret, purge sessions.

Rotating a secret puts a new value for one Worker secret per run. The value is
read at the gate, never before: from ``RUNBOOK_NEW_SECRET`` (scrubbed from
records like every secret variable) or, interactively, from a prompt that does
not echo. It is never a parameter, never in a plan, a result, a log line or an
output; the plan names the secret and the Worker's live version only. A secret
edit is a deployment (a new version at 100 %), so the gate refuses when the
live version changed since the plan. The old value is not kept anywhere, so
``runbook undo`` cannot bring it back.

Purging sessions deletes every ``session:`` key of SESSIONS: everyone is logged
out, the attacker's sessions with them. A session key's name is the cookie's
value, so the before-image keeps what is safe: the count, and the SHA-256 of
the sorted key list (to show later which set was planned), never a name and
never a value (user ids and times). Rate-limit counters stay. Sessions made
after the plan are deleted too, which is the point of a purge; the gate refuses
only when SESSIONS is not the namespace planned. Sessions cannot be restored
(the contents are not kept, and restoring an attacker's session would undo the
purge).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from ._actions import ActionPlan, ActionResult, register_applier
from ._breach import list_session_keys
from ._cloudflare import CloudflareClient
from ._command import incident_parameter
from ._config import Environment
from ._counters import SESSIONS
from ._errors import ParameterError
from ._finding import Finding, Status
from ._resetaction import read_hidden_value

logger = logging.getLogger(__name__)

ROTATE_ACTION = "rotate-secret"
PURGE_ACTION = "purge-sessions"
VALUE_VARIABLE = "RUNBOOK_NEW_SECRET"
MIN_SECRET_LENGTH = 16
BULK_LIMIT = 10_000


def rotate_phrase(environment: Environment, name: str) -> str:
    """The confirm phrase that authorises rotating one Worker secret."""
    return f"rotate {name} of {environment.worker_name} in {environment.name}"


def purge_phrase(environment: Environment) -> str:
    """The confirm phrase that authorises deleting every session.

    It names no count: users log in and out between the dry run and the apply,
    and the purge takes whatever sessions exist then.
    """
    return f"purge all sessions in {environment.name}"


def require_breach_target(params: Any) -> None:
    """Check that rotating names its secret, before anything runs.

    Raises:
        ParameterError: ``step`` rotate-secret without ``secret_name``.
    """
    if params.get("step") == ROTATE_ACTION and not params.get("secret_name"):
        raise ParameterError(
            [
                (
                    "secret_name: '' is empty, but step 'rotate-secret' needs one; "
                    "expected a Worker secret name such as JWT_SECRET"
                )
            ]
        )


def plan_breach_step(
    environment: Environment, *, step: str = "", secret_name: str = ""
) -> ActionPlan:
    """Plan the run's one gated step: rotate ``secret_name`` or purge sessions."""
    if step == ROTATE_ACTION:
        return plan_secret_rotation(environment, secret_name)
    if step == PURGE_ACTION:
        return plan_session_purge(environment)
    return ActionPlan("none", environment.name, "", "no change asked for")


def plan_secret_rotation(environment: Environment, name: str) -> ActionPlan:
    """Plan putting a new value for one Worker secret (read at the gate only)."""
    client = CloudflareClient(environment)
    try:
        live = {s["name"] for s in client.list_secrets()}
        version = _live_version(client)
    finally:
        client.close()
    if name not in live:
        why = f"cannot rotate {name}: the Worker has no such secret ({sorted(live)})"
        return ActionPlan("none", environment.name, name, why)
    return ActionPlan(
        action=ROTATE_ACTION,
        environment=environment.name,
        target=name,
        summary=(
            f"put a new value for {name} on {environment.worker_name} (from "
            f"{VALUE_VARIABLE} or a hidden prompt; a new version goes live)"
        ),
        changes=(
            {"what": f"secret {name}", "from": "current value", "to": "new value"},
        ),
        before={"secret_name": name, "live_version": version},
        undo=(
            "the old value is not kept anywhere: to go back, put it again from your "
            f"secret store (wrangler secret put {name})"
        ),
        confirm_phrase=rotate_phrase(environment, name),
    )


def _live_version(client: CloudflareClient) -> str:
    live = client.list_deployments()
    versions = live[0].get("versions") or [] if live else []
    return str(versions[0]["version_id"]) if versions else ""


def _apply_rotation(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    name = str(plan.before["secret_name"])
    value = read_hidden_value(environment, VALUE_VARIABLE, f"New value of {name}: ")
    if len(value) < MIN_SECRET_LENGTH:
        detail = (
            f"no new value of at least {MIN_SECRET_LENGTH} characters: set "
            f"{VALUE_VARIABLE} (or answer the prompt); nothing changed"
        )
        return ActionResult(plan, "refused", detail, operator)
    client = CloudflareClient(environment)
    try:
        version = _live_version(client)
        if version != plan.before["live_version"]:
            detail = (
                f"the live version is now {version}, not "
                f"{plan.before['live_version']}: re-run the procedure; nothing changed"
            )
            return ActionResult(plan, "refused", detail, operator)
        logger.info("applying action=%s secret=%s", ROTATE_ACTION, name)
        client.put_secret(name, value)
        after = _rotation_check(client, name, version)
    finally:
        client.close()
    return ActionResult(
        plan, "applied", f"{name} has a new value", operator, after=after
    )


def _rotation_check(client: CloudflareClient, name: str, before: str) -> Finding:
    live = {s["name"] for s in client.list_secrets()}
    version = _live_version(client)
    ok = name in live and version != before
    text = f"{name} is set; live version {version} (was {before})"
    return Finding("rotation-after", Status.OK if ok else Status.FAIL, text)


def plan_session_purge(environment: Environment) -> ActionPlan:
    """Plan deleting every session in SESSIONS; the before-image holds no name."""
    keys = list_session_keys(environment)
    namespace = environment.kv_namespaces[SESSIONS]
    if not keys:
        return ActionPlan("none", environment.name, namespace, "no sessions to purge")
    return ActionPlan(
        action=PURGE_ACTION,
        environment=environment.name,
        target=namespace,
        summary=f"delete all {len(keys)} sessions: every user is logged out",
        changes=({"what": "session: keys", "from": len(keys), "to": 0},),
        before={
            "namespace": namespace,
            "count": len(keys),
            "keys_sha256": keys_digest(keys),
        },
        undo=(
            "sessions cannot be restored: their contents are not kept, and an "
            "attacker's session must stay gone; users log in again"
        ),
        confirm_phrase=purge_phrase(environment),
    )


def keys_digest(keys: list[str]) -> str:
    """SHA-256 of the sorted key names, one per line: names a set without showing it."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def _apply_purge(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    namespace = environment.kv_namespaces[SESSIONS]
    if namespace != plan.before["namespace"]:
        detail = (
            f"SESSIONS is now namespace {namespace}, not {plan.before['namespace']}: "
            "re-run the procedure; nothing changed"
        )
        return ActionResult(plan, "refused", detail, operator)
    keys = list_session_keys(environment)
    logger.info("applying action=%s sessions=%s", PURGE_ACTION, len(keys))
    client = CloudflareClient(environment)
    try:
        deleted = sum(
            client.kv_bulk_delete(namespace, keys[i : i + BULK_LIMIT])
            for i in range(0, len(keys), BULK_LIMIT)
        )
    finally:
        client.close()
    after = check_purged(environment)
    response = {
        "planned": plan.before["count"],
        "deleted": deleted,
        "deleted_keys_sha256": keys_digest(keys),
    }
    detail = f"{deleted} sessions deleted ({plan.before['count']} planned)"
    return ActionResult(
        plan, "applied", detail, operator, response=response, after=after
    )


def check_purged(environment: Environment) -> Finding:
    """Follow-up: the sessions left (only logins made since the purge)."""
    left = len(list_session_keys(environment))
    status = Status.OK if left == 0 else Status.WARN
    text = f"{left} sessions in SESSIONS after the purge"
    if left:
        text += " (logins since the purge, or a purge KV has not shown yet)"
    return Finding("purge-after", status, text, facts={"left": left})


def breach_parameters(params: Any) -> dict[str, object]:
    """The parameters that plan the same step again (for the printed command)."""
    step = params.get("step")
    parts = incident_parameter(params)
    if step:
        parts["step"] = step
    if step == ROTATE_ACTION:
        parts["secret_name"] = params["secret_name"]
    return parts


register_applier(ROTATE_ACTION, _apply_rotation)
register_applier(PURGE_ACTION, _apply_purge)
