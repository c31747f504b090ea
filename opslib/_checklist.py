"""The runbook's monitoring checklists (daily, weekly, monthly) as checks.

Each line of the runbook's checklist is answered by one or more findings: an
opslib check where a system can say, or a manual item (status ``manual``) where
only a person can, never a pass made up. Where the runbook asks for a tool the
platform never had (UptimeRobot, Sentry, email alerts) the item says so and
checks the fact behind it instead (PLATFORM.md section 8).

The verdict of a checklist is the worst status among its checked items; manual
items are listed in it but do not change it, so a scheduler running
``runbook run checklist-daily --fail-on-verdict`` hears only of what failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._finding import Finding, Status
from ._verdict import Verdict


@dataclass(frozen=True)
class ChecklistItem:
    """One line of the runbook's checklist and the checks that answer it.

    Attributes:
        line: the runbook's words.
        checks: names of the findings that answer it.
        note: where the runbook is wrong per the platform's facts, what is done.
    """

    line: str
    checks: tuple[str, ...]
    note: str = ""


CHECKLISTS: Mapping[str, tuple[ChecklistItem, ...]] = {
    "daily": (
        ChecklistItem(
            "Check UptimeRobot - all green?",
            ("probe", "cloudflare-status"),
            "UptimeRobot was planned, never confirmed set up: the probe asks what its "
            "API monitor would (/manuscripts answers 401), plus Cloudflare's status",
        ),
        ChecklistItem(
            "Review Cloudflare Analytics - error rate < 1%?",
            ("error-rate",),
            "analytics counts only uncaught exceptions, which the global handler "
            "turns into 500s: the 5xx share comes from Workers Logs",
        ),
        ChecklistItem(
            "Check Sentry - any new critical errors?",
            ("sentry",),
            "Sentry is imported nowhere in the platform: nothing reaches it",
        ),
        ChecklistItem(
            "Review email alerts - any warnings?",
            ("backup-log", "email-alerts"),
            "the platform sends no alerts (the backup failure mail is a TODO): "
            "the backup log is checked here",
        ),
    ),
    "weekly": (
        ChecklistItem("Database size - growing normally?", ("d1-size",)),
        ChecklistItem("R2 storage - within budget?", ("r2-storage",)),
        ChecklistItem(
            "Queue depth - processing smoothly?",
            ("queue-backlog", "queue-consumers", "dead-letters"),
            "depth alone hides a queue nothing consumes: consumers and DLQs too",
        ),
        ChecklistItem("Cost tracking - Anthropic/Cloudflare bills", ("costs",)),
        ChecklistItem("User growth - registrations increasing?", ("registrations",)),
        ChecklistItem(
            "(not in the runbook) backups outside maintenance windows",
            ("maintenance",),
            "both backup crons (02:00, 03:00 UTC) run the backup",
        ),
    ),
    "monthly": (
        ChecklistItem("Security audit - any vulnerabilities?", ("security-audit",)),
        ChecklistItem("Dependency updates - npm audit", ("npm-audit",)),
        ChecklistItem("Performance review - response times acceptable?", ("latency",)),
        ChecklistItem("Cost analysis - optimize spending", ("cost-analysis",)),
        ChecklistItem(
            "Backup verification - test restore",
            ("backup-log", "backup-bucket", "restore", "integrity"),
            "the runbook's integrity SQL reads manuscripts.author_id, which does not "
            "exist: the restored copy is checked along every foreign key",
        ),
    ),
}


def manual_item(name: str, what: str) -> Finding:
    """A checklist item a person must do; listed with status ``manual``.

    Args:
        name: the item's check name, as in ``CHECKLISTS``.
        what: what the person should do, and where to look.
    """
    return Finding(name, Status.MANUAL, what, (), {"manual": True})


def checklist_table(checklist: str, findings: Sequence[Finding]) -> Any:
    """The status table: one row per finding, under the runbook line it answers.

    Returns:
        A pandas DataFrame with columns item, check, status, summary.
    """
    import pandas as pd  # type: ignore[import-untyped]

    return pd.DataFrame(_table_rows(checklist, findings))


def _table_rows(checklist: str, findings: Sequence[Finding]) -> list[dict[str, str]]:
    lines = {name: item.line for item in _items(checklist) for name in item.checks}
    return [
        {
            "item": lines.get(f.name, "(extra)"),
            "check": f.name,
            "status": f.status.value,
            "summary": f.summary,
        }
        for f in findings
    ]


def _items(checklist: str) -> tuple[ChecklistItem, ...]:
    if checklist not in CHECKLISTS:
        raise ValueError(
            f"checklist: got {checklist!r}, expected one of {sorted(CHECKLISTS)}"
        )
    return CHECKLISTS[checklist]


# Worst first: the verdict takes the first status any checked item has.
_ORDER = (
    (Status.FAIL, "items-failing"),
    (Status.UNKNOWN, "items-unknown"),
    (Status.WARN, "items-warning"),
)


def conclude_checklist(checklist: str, findings: Sequence[Finding]) -> Verdict:
    """The checklist's verdict: the worst checked status; manual items listed.

    Args:
        checklist: daily, weekly or monthly.
        findings: every item's finding, manual ones included.
    """
    items = _items(checklist)
    manual = [f for f in findings if f.status is Status.MANUAL]
    checked = [f for f in findings if f.status is not Status.MANUAL]
    status, cause = next(
        ((s, c) for s, c in _ORDER if any(f.status is s for f in checked)),
        (Status.OK, "healthy"),
    )
    counts = {s.value: sum(f.status is s for f in findings) for s in Status}
    summary = (
        f"{len(checked)} checked items: {counts['ok']} ok, {counts['warn']} warn, "
        f"{counts['fail']} fail, {counts['unknown']} unknown; "
        f"{len(manual)} manual item(s) for a person"
    )
    missing = [name for item in items for name in item.checks]
    missing = [n for n in dict.fromkeys(missing) if n not in {f.name for f in findings}]
    if missing:
        status, cause = Status.UNKNOWN, "inconclusive"
        summary += f"; not run: {', '.join(missing)}"
    evidence = [str(f) for f in findings if f.status is not Status.OK]
    return Verdict(
        f"checklist-{checklist}",
        status,
        cause,
        summary,
        evidence,
        _next_action(status, manual),
        None,
        tuple(findings),
    )


def _next_action(status: Status, manual: Sequence[Finding]) -> str:
    steps = []
    if status is not Status.OK:
        steps.append("open the incident runbook for each failing or unknown item")
    if manual:
        steps.append(f"do the manual items: {', '.join(f.name for f in manual)}")
    return "; ".join(steps) or "-"
