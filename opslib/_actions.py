"""Gated actions: anything that changes a system goes through a plan and a gate.

An action first builds an :class:`ActionPlan`: what changes, from what to what, a
before-image of what it touches, how to undo it, and the exact confirm phrase that
authorises it. :func:`apply_action` changes nothing unless ``apply`` is True and
the confirm phrase matches the plan word for word; it re-reads the live state and
refuses a plan that has gone stale. Plans and results are shown in the notebook
and carried into the record under their own MIME type.
"""

from __future__ import annotations

import getpass
import html
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._apidown import rollback_phrase
from ._cloudflare import CloudflareClient
from ._config import NAMED_ENVIRONMENT_VARIABLE, Environment
from ._errors import ServiceError
from ._finding import Finding
from ._time import utcnow
from ._verdict import Verdict

logger = logging.getLogger(__name__)

ACTION_MIME = "application/vnd.opslib.action+json"


@dataclass(frozen=True)
class ActionPlan:
    """What a gated action would change, recorded before anything changes.

    Attributes:
        action: "rollback", or "none" when the verdict calls for no action.
        environment: environment name.
        target: what is changed (the Worker's name for a rollback).
        summary: one line for a person.
        changes: rows of what changes, from what, to what.
        before: the before-image of what the action touches.
        undo: how to undo the action once applied.
        confirm_phrase: the phrase that authorises it ("" for no action).
        created_at: when the plan was made (ISO 8601, UTC).
        private: what the applier needs but no record may hold (such as rows with
            password hashes); never shown, never in ``to_dict``.
    """

    action: str
    environment: str
    target: str
    summary: str
    changes: tuple[Mapping[str, Any], ...] = ()
    before: Mapping[str, Any] = field(default_factory=dict)
    undo: str = ""
    confirm_phrase: str = ""
    created_at: str = field(default_factory=lambda: utcnow().isoformat())
    private: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_noop(self) -> bool:
        """True when there is nothing to apply."""
        return self.action == "none"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form stored in records."""
        return {
            "kind": "plan",
            "action": self.action,
            "environment": self.environment,
            "target": self.target,
            "summary": self.summary,
            "changes": [dict(c) for c in self.changes],
            "before": dict(self.before),
            "undo": self.undo,
            "confirm_phrase": self.confirm_phrase,
            "created_at": self.created_at,
        }

    def __str__(self) -> str:
        lines = [f"PLAN {self.action} ({self.environment}): {self.summary}"]
        lines += [
            f"  change {c.get('what')}: {c.get('from')} -> {c.get('to')}"
            for c in self.changes
        ]
        lines += [f"  runs: {c['sql']}" for c in self.changes if c.get("sql")]
        if self.undo:
            lines.append(f"  undo: {self.undo}")
        if self.confirm_phrase:
            lines.append(
                f"  to apply, set apply=True and confirm={self.confirm_phrase!r}"
            )
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "text/plain": str(self),
            "text/html": _pre(str(self)),
            ACTION_MIME: self.to_dict(),
        }


@dataclass(frozen=True)
class ActionResult:
    """What happened at the gate.

    Attributes:
        plan: the plan the gate judged.
        outcome: "dry-run", "not-needed", "refused", "applied" or "failed".
        detail: one line on why.
        operator: who confirmed (for applied or refused actions).
        at: when the gate was passed (ISO 8601, UTC).
        response: what the system answered, for an applied action.
        after: the verification finding taken after applying, if any.
    """

    plan: ActionPlan
    outcome: str
    detail: str
    operator: str = ""
    at: str = field(default_factory=lambda: utcnow().isoformat())
    response: Mapping[str, Any] = field(default_factory=dict)
    after: Finding | None = None

    @property
    def changed_something(self) -> bool:
        """True when the action was applied."""
        return self.outcome == "applied"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form stored in records."""
        return {
            "kind": "result",
            "action": self.plan.action,
            "outcome": self.outcome,
            "detail": self.detail,
            "operator": self.operator,
            "at": self.at,
            "plan": self.plan.to_dict(),
            "response": dict(self.response),
            "after": self.after.to_dict() if self.after else None,
            "undo": self.plan.undo,
        }

    def __str__(self) -> str:
        text = f"ACTION {self.plan.action}: {self.outcome.upper()} — {self.detail}"
        if self.after is not None:
            text += f"\n  after: {self.after}"
        return text

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "text/plain": str(self),
            "text/html": _pre(str(self)),
            ACTION_MIME: self.to_dict(),
        }


def plan_rollback(environment: Environment, verdict: Verdict) -> ActionPlan:
    """Plan the rollback a bad-deployment verdict recommends (or no action).

    Args:
        environment: where the Worker runs.
        verdict: the api-down verdict; only cause "bad-deployment" with a last good
            version yields a rollback.
    """
    step = verdict.gated_step or {}
    if step.get("action") != "rollback":
        return ActionPlan(
            "none",
            environment.name,
            environment.worker_name,
            f"no rollback: the verdict's cause is {verdict.cause!r}",
        )
    bad, good = step["from_version"], step["to_version"]
    return ActionPlan(
        action="rollback",
        environment=environment.name,
        target=environment.worker_name,
        summary=f"deploy version {good} of {environment.worker_name} at 100 %",
        changes=({"what": "live version", "from": bad, "to": good},),
        before={"live_version": bad, "percentage": 100},
        undo=f"deploy version {bad} at 100 % again (the same action with the versions swapped)",
        confirm_phrase=rollback_phrase(environment, good),
    )


def apply_action(
    plan: ActionPlan,
    *,
    environment: Environment,
    apply: bool = False,
    confirm: str = "",
    verify: Callable[[], Finding] | None = None,
    operator: str | None = None,
) -> ActionResult:
    """Pass a plan through the gate, and apply it only when authorised.

    Args:
        plan: the plan to apply.
        environment: the environment the plan was made for.
        apply: must be True for anything to change.
        confirm: must equal ``plan.confirm_phrase`` exactly.
        verify: a check to run after applying (such as a new probe).
        operator: who confirms; defaults to $RUNBOOK_OPERATOR or user@host.

    Returns:
        The result; nothing changed unless its outcome is "applied".
    """
    who = operator or os.environ.get("RUNBOOK_OPERATOR") or _user_at_host()
    if plan.is_noop:
        return ActionResult(plan, "not-needed", plan.summary)
    if plan.environment != environment.name:
        return ActionResult(
            plan,
            "refused",
            f"plan is for {plan.environment!r}, not {environment.name!r}",
            who,
        )
    if not apply:
        return ActionResult(
            plan,
            "dry-run",
            f"apply is False; to apply, confirm with {plan.confirm_phrase!r}",
        )
    problem = gate_problem(plan, environment)
    if problem:
        logger.warning("gate refused action=%s reason=%s", plan.action, problem)
        return ActionResult(plan, "refused", f"{problem}; nothing changed", who)
    # Exactly, character for character: str.strip() would also drop the Unicode
    # spaces (such as U+00A0) that a near-miss phrase can carry.
    if confirm != plan.confirm_phrase:
        logger.warning("gate refused action=%s reason=confirm-mismatch", plan.action)
        return ActionResult(
            plan,
            "refused",
            f"confirm phrase {confirm!r} does not match "
            f"{plan.confirm_phrase!r}; nothing changed",
            who,
        )

    applier = _applier(plan.action)
    if applier is None:
        logger.warning("gate refused action=%s reason=no-applier", plan.action)
        return ActionResult(
            plan,
            "refused",
            f"no applier is registered for action {plan.action!r}; nothing changed",
            who,
        )
    try:
        result = applier(plan, environment, who)
    except ServiceError as error:
        logger.error("action failed action=%s error=%s", plan.action, error)
        return ActionResult(
            plan, "failed", f"{error}; nothing is known to have changed", who
        )
    if result.outcome == "applied" and verify is not None:
        result = ActionResult(
            plan,
            result.outcome,
            result.detail,
            who,
            result.at,
            result.response,
            verify(),
        )
    return result


def gate_problem(
    plan: ActionPlan,
    environment: Environment,
    *,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Say why the gate must refuse a plan whatever the confirm phrase, or "".

    The phrase must name the environment (every phrase ends ``in <environment>``).
    In production the environment must also have been named explicitly where the
    run started: ``runbook run ... --env production`` sets
    ``RUNBOOK_NAMED_ENVIRONMENT`` for the kernel; an interactive session is
    started with ``RUNBOOK_NAMED_ENVIRONMENT=production jupyter lab``.
    """
    environ = os.environ if environ is None else environ
    if not plan.confirm_phrase.endswith(f" in {environment.name}"):
        return (
            f"the plan's confirm phrase {plan.confirm_phrase!r} does not name the "
            f"environment ({environment.name!r})"
        )
    named = environ.get(NAMED_ENVIRONMENT_VARIABLE, "")
    if environment.is_production and named != environment.name:
        return (
            "production is changed only when named on the command line: run "
            "`runbook run NOTEBOOK --env production ...` (interactively, start "
            f"Jupyter with {NAMED_ENVIRONMENT_VARIABLE}=production); got "
            f"{named or 'no environment'} named"
        )
    return ""


def _apply_rollback(
    plan: ActionPlan, environment: Environment, operator: str
) -> ActionResult:
    change = plan.changes[0]
    client = CloudflareClient(environment)
    try:
        live = client.list_deployments()
        live_versions = [
            v["version_id"] for v in (live[0].get("versions") or [] if live else [])
        ]
        if live_versions != [change["from"]]:
            return ActionResult(
                plan,
                "refused",
                f"the live version is now {live_versions}, not "
                f"{change['from']!r}: the plan is stale, re-run the runbook",
                operator,
            )
        logger.info(
            "applying action=rollback worker=%s to=%s", plan.target, change["to"]
        )
        deployment = client.create_deployment(
            change["to"], f"Rollback by {operator} via runbook"
        )
    finally:
        client.close()
    response = {
        "deployment_id": deployment.get("id"),
        "created_on": deployment.get("created_on"),
    }
    return ActionResult(
        plan, "applied", f"version {change['to']} is live", operator, response=response
    )


Applier = Callable[[ActionPlan, Environment, str], ActionResult]
_APPLIERS: dict[str, Applier] = {"rollback": _apply_rollback}


def _applier(action: str) -> Applier | None:
    """The applier of an action; its module may not be imported yet.

    ``import opslib`` imports each module on first use, and a module registers
    its appliers when imported; a plan built elsewhere (read back from a record,
    say) may reach the gate before its module did, so every module is imported
    before an action counts as unknown.
    """
    if action not in _APPLIERS:
        import opslib

        opslib._import_all()
    return _APPLIERS.get(action)


def register_applier(action: str, applier: Applier) -> None:
    """Make ``apply_action`` able to apply plans whose action is ``action``.

    The applier gets the plan, the environment and the operator, must re-read the
    live state and refuse a stale plan, and returns the result; it may raise a
    ``ServiceError``, which the gate records as a failed action.

    Raises:
        ValueError: when the action already has an applier.
    """
    if action in _APPLIERS:
        raise ValueError(f"action: {action!r} already has an applier")
    _APPLIERS[action] = applier


def _user_at_host() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except OSError:
        return "unknown"


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
