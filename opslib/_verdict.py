"""Verdicts: what a runbook concluded, out of its incident's fixed vocabulary.

Every runbook ends with one :class:`Verdict`. It is shown to the engineer, and its
JSON form travels in the executed notebook under a MIME type of its own, so the
runner can copy it into the record's metadata and sidecar without re-running
anything.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._finding import Finding, Status

VERDICT_MIME = "application/vnd.opslib.verdict+json"

# What a restored backup can show (the restore and its monthly test).
_RESTORE_CAUSES = (
    "backup-missing",
    "backup-unreadable",
    "backup-unsafe",
    "backup-empty",
    "counts-mismatch",
    "integrity-problems",
    "healthy",
    "inconclusive",
)

# The causes each runbook may name. "healthy" and "inconclusive" close every list.
CAUSES: Mapping[str, tuple[str, ...]] = {
    "api-down": (
        "bad-deployment",
        "d1-unavailable",
        "missing-secret",
        "kv-binding",
        "cloudflare-outage",
        "healthy",
        "inconclusive",
    ),
    "auth-broken": (
        "kv-sessions-unavailable",
        "login-rate-limited",
        "unverified-accounts",
        "cors-origin-missing",
        "jwt-secret-missing",
        "healthy",
        "inconclusive",
    ),
    "high-error-rate": (
        "endpoint-broken-after-deploy",
        "missing-table",
        "d1-timeouts",
        "r2-throttling",
        "free-tier-429s",
        "healthy",
        "inconclusive",
    ),
    "password-reset": (
        "reset-rate-limited",
        "email-vars-missing",
        "mail-provider-unauthorized",
        "reset-token-consumed-by-precheck",
        "healthy",
        "inconclusive",
    ),
    "queue-delays": (
        "consumer-missing",
        "status-drift",
        "ai-rate-limited",
        "jobs-failing-to-dlq",
        "high-volume-draining",
        "healthy",
        "inconclusive",
    ),
    "payment-without-subscription": (
        "metadata-missing-user",
        "subscription-insert-failed",
        "user-deleted",
        "events-out-of-order",
        "healthy",
        "inconclusive",
    ),
    "stripe-webhooks": (
        "wrong-webhook-secret",
        "endpoint-disabled",
        "signature-check-broken-in-handler",
        "api-version-mismatch",
        "handler-timeout",
        "healthy",
        "inconclusive",
    ),
    # Procedures: what the run planned or did, rather than a fault's cause.
    "database": ("write-planned", "read-only", "inconclusive"),
    "undo": ("undo-planned", "nothing-to-undo", "inconclusive"),
    "stripe": ("change-planned", "read-only", "inconclusive"),
    "security-breach": ("change-planned", "read-only", "inconclusive"),
    "r2-recovery": ("reupload-planned", "healthy", "inconclusive", "unrecoverable"),
    "rollback": ("rollback-planned", "nothing-to-roll-back", "inconclusive"),
    "deploy-verify": ("roll-back", "keep", "inconclusive"),
    "backups": (
        "backup-failed",
        "backups-stale",
        "backup-oversized",
        "backup-slow",
        "unlogged-objects",
        "healthy",
        "inconclusive",
    ),
    "restore": _RESTORE_CAUSES,
    "monthly-backup-verification": _RESTORE_CAUSES,
    # Checklists: the worst status among the checked items names the cause.
    **{
        f"checklist-{period}": (
            "items-failing",
            "items-unknown",
            "items-warning",
            "healthy",
            "inconclusive",
        )
        for period in ("daily", "weekly", "monthly")
    },
    "post-incident-report": ("report-written", "inconclusive"),
    "slow-responses": (
        "missing-index",
        "slow-external-api",
        "cold-start",
        "healthy",
        "inconclusive",
    ),
}


@dataclass(frozen=True)
class Verdict:
    """The conclusion of a runbook.

    Attributes:
        runbook: runbook name, such as "api-down".
        status: ok when healthy, fail when a cause was found, unknown when the
            runbook could not tell.
        cause: one of ``CAUSES[runbook]``.
        summary: one line for a person.
        evidence: the lines that support the cause.
        next_action: what to do now, in words.
        gated_step: the exact gated action that would do it, or None.
        findings: the findings the verdict was computed from.
    """

    runbook: str
    status: Status
    cause: str
    summary: str
    evidence: Sequence[str] = ()
    next_action: str = ""
    gated_step: Mapping[str, Any] | None = None
    findings: Sequence[Finding] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        allowed = CAUSES.get(self.runbook)
        if allowed is None:
            raise ValueError(
                f"runbook: got {self.runbook!r}, expected one of {sorted(CAUSES)}"
            )
        if self.cause not in allowed:
            raise ValueError(
                f"cause: got {self.cause!r} for {self.runbook}, expected one of {allowed}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form stored in records."""
        return {
            "runbook": self.runbook,
            "status": self.status.value,
            "cause": self.cause,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "next_action": self.next_action,
            "gated_step": dict(self.gated_step) if self.gated_step else None,
            "findings": [finding.to_dict() for finding in self.findings],
        }

    def __str__(self) -> str:
        lines = [
            f"VERDICT {self.runbook}: {self.status.value.upper()} — cause: {self.cause}",
            f"  {self.summary}",
        ]
        lines += [f"  - {line}" for line in self.evidence]
        steps = [f"  next: {self.next_action}"] if self.next_action else []
        if self.gated_step:
            steps.append(f"  gated step: {self.gated_step.get('command', '')}")
        from ._records import hidden_value_note

        return "\n".join(lines + hidden_value_note(steps, "  note: "))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "text/plain": str(self),
            "text/html": self._html(),
            VERDICT_MIME: self.to_dict(),
        }

    def _html(self) -> str:
        parts = [
            f"<h3>Verdict: {html.escape(self.status.value.upper())} "
            f"— cause <code>{html.escape(self.cause)}</code></h3>",
            f"<p>{html.escape(self.summary)}</p>",
        ]
        if self.evidence:
            items = "".join(f"<li>{html.escape(line)}</li>" for line in self.evidence)
            parts.append(f"<ul>{items}</ul>")
        if self.next_action:
            parts.append(f"<p><b>Next:</b> {html.escape(self.next_action)}</p>")
        if self.gated_step:
            command = html.escape(str(self.gated_step.get("command", "")))
            parts.append(f"<p><b>Gated step:</b> <code>{command}</code></p>")
        return "".join(parts)


def not_ok(found: Mapping[str, Finding]) -> tuple[list[str], list[str], str]:
    """Sum up the findings a verdict must show.

    Returns:
        The evidence lines (every finding that is not OK), the names of the
        findings that are unknown, and the sentence naming them for a summary
        ("" when every finding could be checked).
    """
    evidence = [str(f) for f in found.values() if f.status is not Status.OK]
    unknowns = [n for n, f in found.items() if f.status is Status.UNKNOWN]
    blind = f" Could not check: {', '.join(unknowns)}." if unknowns else ""
    return evidence, unknowns, blind


# From best to worst: a failure outweighs what could not be checked, which
# outweighs a warning (the order the checklists name their causes in).
_STATUS_ORDER = (Status.OK, Status.MANUAL, Status.WARN, Status.UNKNOWN, Status.FAIL)


def worst_status(statuses: Iterable[Status]) -> Status:
    """The worst of some statuses (``ok`` for none): fail, unknown, warn, ok."""
    return max(statuses, key=_STATUS_ORDER.index, default=Status.OK)
