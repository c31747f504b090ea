"""Verdicts and read-only queries of the procedure notebooks.

A procedure (database work, undo) does planned work rather than diagnose a
fault, so its verdict says what the run planned or did: the gated action, its
outcome at the gate, and the follow-up check. Its reads are SELECTs the SQL guard
allows, shown as small tables.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._actions import ActionPlan, ActionResult
from ._beforeimage import records_archive
from ._cloudflare import CloudflareClient
from ._command import incident_parameter, runbook_command
from ._config import Environment
from ._dbread import as_read
from ._dbwrite import plan_d1_write, run_select
from ._errors import OpslibError, ParameterError, RunError
from ._finding import Finding, Status, check
from ._records import RecordQuery, list_records, load_record
from ._rollbackchoice import secrets_changed_advice
from ._sqlguard import require_read
from ._undo import find_applied_action, undo_records_of
from ._verdict import CAUSES, Verdict, worst_status

USER_COUNT_SQL = (
    "SELECT COUNT(*) AS total, SUM(CASE WHEN role = 'admin' THEN 1 ELSE 0 END) "
    "AS admins, SUM(email_verified) AS verified FROM users"
)
RECENT_USERS_SQL = (
    "SELECT id, email, role, created_at, email_verified FROM users "
    "ORDER BY created_at DESC LIMIT 10"
)
TEST_ACCOUNT_PREFIX = "prodtest"
ONE_WRITE_PROBLEM = (
    "sql, cleanup_test_accounts: both given, expected one of them: a run plans "
    "one write"
)
# How many of the newest undo runs are read to tell whether a record was undone.
UNDO_LOOKBACK = 500

logger = logging.getLogger(__name__)


def test_accounts_condition(environment: Environment) -> str:
    """The WHERE that picks the test accounts, keeping the one runbooks log in as.

    Test accounts are ``prodtest<n>@<domain>``, the domain being that of the
    environment's ``test_account_email``.
    """
    email = environment.test_account_email or f"{TEST_ACCOUNT_PREFIX}1@example.com"
    domain = email.rsplit("@", 1)[-1]
    return f"email LIKE '{TEST_ACCOUNT_PREFIX}%@{domain}' AND email <> '{email}'"


def test_accounts_sql(environment: Environment) -> str:
    """The SELECT listing the test accounts the clean-up would delete."""
    return (
        "SELECT id, email, role, created_at, last_login FROM users WHERE "
        + test_accounts_condition(environment)
        + " ORDER BY created_at"
    )


@check("query")
def query_d1(environment: Environment, sql: str, *, name: str = "query") -> Finding:
    """Run one read-only query; its rows are the evidence (``.table()`` shows ten).

    Raises:
        SQLRefusedError: when ``sql`` is not a read.
    """
    require_read(sql)
    client = CloudflareClient(environment)
    try:
        rows = run_select(client, sql, [])
    finally:
        client.close()
    return Finding(name, Status.OK, _rows_summary(rows), rows, {"rows": len(rows)})


def _rows_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """One row reads as its values (a count); more as their number."""
    if len(rows) == 1 and len(rows[0]) <= 6:
        return ", ".join(f"{k} {v}" for k, v in rows[0].items())
    return f"{len(rows)} rows"


def plan_database_write(
    environment: Environment,
    *,
    sql: str = "",
    cleanup_test_accounts: bool = False,
    max_rows: int = 100,
) -> ActionPlan:
    """Plan the run's one write: the ad-hoc ``sql`` or the test-account clean-up.

    A ``sql`` that is one read is no write (``read_d1`` runs it); anything else
    given as ``sql`` is planned, or refused, as a write.

    Raises:
        ParameterError: both asked for (a run plans one write).
    """
    if sql and cleanup_test_accounts:
        raise ParameterError([ONE_WRITE_PROBLEM])
    if sql and as_read(sql):
        return ActionPlan(
            "none", environment.name, "D1", "sql is a read: it ran read-only, no write"
        )
    if sql:
        return plan_d1_write(environment, sql, max_rows=max_rows, reason="ad-hoc write")
    if cleanup_test_accounts:
        statement = "DELETE FROM users WHERE " + test_accounts_condition(environment)
        return plan_d1_write(
            environment, statement, max_rows=max_rows, reason="test-account clean-up"
        )
    return ActionPlan("none", environment.name, "D1", "no write asked for")


def conclude_procedure(
    runbook: str,
    plan: ActionPlan,
    result: ActionResult,
    findings: Sequence[Finding] = (),
    *,
    parameters: Mapping[str, object] | None = None,
    apply: bool = False,
) -> Verdict:
    """The verdict of a procedure: what was planned, what the gate did, the check.

    The verdict is never ``ok`` beside a finding that failed, and a finding that
    warns makes it at least ``warn`` (after an applied change with a check after
    it, that check stands for the state; the reads before it are why). When
    ``apply`` was asked and nothing was applied (no plan could be made, a guard
    refused it, the gate refused it or applying failed), the verdict is not
    ``ok`` either and says so, so that ``runbook run`` exits with the gate's code.

    Args:
        runbook: the procedure's name (``database``, ``undo``).
        plan: the run's gated plan.
        result: what the gate did with it.
        findings: the reads and follow-up checks of the run.
        parameters: the parameters that plan the same change again, repeated as
            ``-p`` options (shell-quoted) in the printed command.
        apply: whether the run was asked to apply its plan.
    """
    planned, nothing, inconclusive = CAUSES[runbook][:3]
    found = [*findings, *([result.after] if result.after else [])]
    unknown = [f for f in found if f.status is Status.UNKNOWN]
    if plan.is_noop:
        cause = inconclusive if unknown or "cannot" in plan.summary else nothing
        status = Status.UNKNOWN if cause == inconclusive else Status.OK
        summary, next_action = plan.summary, "-"
        if apply:
            # The operator asked for a change and none was made: never ok.
            status = Status.FAIL if cause == nothing else status
            summary = f"apply was asked but nothing was applied: {plan.summary}"
            next_action = (
                "nothing changed: the summary says why no change was planned; "
                "a dry run (without apply) shows the plan once there is one"
            )
        return Verdict(
            runbook,
            worst_status([status, *(f.status for f in found)]),
            cause,
            summary,
            _lines(found),
            next_action,
            None,
            tuple(found),
        )
    status = {
        "applied": Status.OK if not result.after or result.after.is_ok else Status.FAIL,
        "dry-run": Status.WARN,
    }.get(result.outcome, Status.FAIL)
    # Once a change is applied and checked, the check after it tells the state;
    # the reads before it showed what the change was for.
    judged = [result.after] if result.outcome == "applied" and result.after else found
    step = _step(runbook, plan, parameters)
    summary = f"{plan.summary}: {result.outcome}"
    next_action = (
        f"to undo: {plan.undo.replace('RECORD_ID', '<this record id>')}"
        if result.outcome == "applied"
        else secrets_changed_advice(result.detail) or f"to apply: {step['command']}"
    )
    return Verdict(
        runbook,
        worst_status([status, *(f.status for f in judged)]),
        planned,
        summary,
        _lines(found),
        next_action,
        step,
        tuple(found),
    )


def _step(
    runbook: str, plan: ActionPlan, parameters: Mapping[str, object] | None
) -> dict[str, Any]:
    command = runbook_command(
        runbook, plan.environment, parameters, confirm=plan.confirm_phrase
    )
    return {"action": plan.action, "confirm": plan.confirm_phrase, "command": command}


def _lines(findings: Sequence[Finding]) -> list[str]:
    return [str(f) for f in findings]


def write_parameters(params: Mapping[str, Any]) -> dict[str, object]:
    """The parameters that plan the same write again (for the printed command)."""
    parts = incident_parameter(params)
    if params.get("sql"):
        parts["sql"] = str(params["sql"])
    elif params.get("cleanup_test_accounts"):
        parts["cleanup_test_accounts"] = True
    if "max_rows" in params:
        parts["max_rows"] = params["max_rows"]
    return parts


def find_record(record_id: str) -> dict[str, Any]:
    """Read a record's sidecar from this run's archive.

    Returns:
        The sidecar, with ``undone_by`` naming the newest record that applied an
        undo of it, if the archive holds one; or ``{"id": record_id, "missing":
        reason}`` when no single record matches, so the plan can say so instead
        of the run failing.
    """
    archive = records_archive()
    try:
        sidecar = load_record(archive, record_id)
    except RunError as error:
        return {"id": record_id, "missing": str(error)}
    undone = undo_records_of(_undo_sidecars(archive), str(sidecar.get("id")))
    return {**sidecar, "undone_by": undone[0]} if undone else sidecar


def _undo_sidecars(archive: Path) -> list[dict[str, Any]]:
    """The undo runs the archive holds that applied something, newest first."""
    try:
        rows = list_records(archive, RecordQuery(runbook="undo"), limit=UNDO_LOOKBACK)
        return [
            load_record(archive, str(row["id"]))
            for row in rows
            if "applied" in str(row.get("gate"))
        ]
    except OpslibError as error:
        logger.warning("undo records unreadable error=%s", error)
        return []


def describe_record(sidecar: Mapping[str, Any]) -> Finding:
    """Show what a record applied: its runbook, environment and applied action."""
    if sidecar.get("missing"):
        return Finding("record", Status.UNKNOWN, str(sidecar["missing"]))
    applied = find_applied_action(sidecar)
    rows = [
        {
            "record": sidecar.get("id"),
            "runbook": sidecar.get("runbook"),
            "environment": sidecar.get("environment"),
            "action": applied.get("action") if applied else None,
            "applied_at": applied.get("at") if applied else None,
            "by": applied.get("operator") if applied else None,
        }
    ]
    what = (
        f"applied {applied.get('action')} (by {applied.get('operator') or 'unknown'})"
        if applied
        else "applied nothing"
    )
    return Finding("record", Status.OK, f"{sidecar.get('id')} {what}", rows)
