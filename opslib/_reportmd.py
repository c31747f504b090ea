"""The post-incident report as Markdown, in the runbook's template.

Front matter (YAML) first, for machines: the report's kind, the incident, the
record ids it refers to, severity and duration. Then the template's sections:
summary, timeline, root cause, resolution, impact, action items, and the
records it was built from.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from ._timeline import shown

if TYPE_CHECKING:
    from ._report import Report
    from ._timeline import Event

MILESTONE_WORDS = (
    ("detected", "Incident detected"),
    ("investigation", "Investigation started"),
    ("root-cause", "Root cause identified"),
    ("fix", "Fix applied"),
    ("restored", "Service restored"),
)
TIMELINE_ROWS = 40


def render_markdown(report: Report) -> str:
    """Render the whole report."""
    parts = [
        _front_matter(report),
        f"# Incident Report: {report.incident_id} — {_title(report)}",
        _header(report),
        "## Summary\n\n" + _summary(report),
        "## Timeline\n\n" + _timeline(report),
        "## Root Cause\n\n" + _root_cause(report),
        "## Resolution\n\n" + _resolution(report),
        "## Impact\n\n" + _impact(report),
        "## Action Items\n\n" + "\n".join(f"- {i}" for i in report.action_items),
        "## Records\n\n" + _records(report),
    ]
    return "\n\n".join(parts) + "\n"


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a report's Markdown; {} when there is none."""
    if not text.startswith("---\n"):
        return {}
    head, found, _ = text[4:].partition("\n---")
    try:
        data = yaml.safe_load(head) if found else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _front_matter(report: Report) -> str:
    data = {
        "report": "post-incident",
        "incident_id": report.incident_id,
        "refers_to": report.record_ids,
        "severity": report.severity["level"],
        "duration_min": round(report.duration_min, 1),
        "generated_at": _iso(report.generated_at),
    }
    return "---\n" + yaml.safe_dump(data, sort_keys=False).strip() + "\n---"


def _title(report: Report) -> str:
    if report.root_causes:
        first = report.root_causes[0]
        return f"{first['runbook']}: {first['cause']}"
    runbooks = dict.fromkeys(shown(r.get("runbook")) for r in report.records)
    return ", ".join(runbooks) + ": no cause named"


def _header(report: Report) -> str:
    severity = report.severity
    affected = report.affected.facts
    users = (
        f"{affected['affected']} users ({affected['share']:.1%} of {affected['total']})"
        if "affected" in affected
        else f"unknown ({report.affected.summary})"
    )
    respond = _minutes(severity["respond_within_min"])
    update = _minutes(severity["update_every_min"])
    level = f"{severity['level']} ({severity['label']}) — {severity['why']}"
    escalation = report.escalation
    contact = f"{escalation['role']}: {escalation['contact']} ({escalation['channel']})"
    lines = [
        f"**Date:** {_first_start(report):%Y-%m-%d}",
        f"**Duration:** {_minutes(report.duration_min)}",
        f"**Severity:** {level}; respond within {respond}, update every {update}",
        f"**Affected Users:** {users}",
        f"**Escalation reached:** {escalation['level']} — {contact}",
    ]
    if report.maintenance:
        lines.append(f"**Maintenance window:** the incident {report.maintenance}")
    return "  \n".join(lines)


def _first_start(report: Report) -> datetime.datetime:
    """When the incident's first run started (UTC); else the window's start."""
    started = str(report.records[0].get("started_at") or "") if report.records else ""
    try:
        moment = datetime.datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return report.start
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def _summary(report: Report) -> str:
    if not report.root_causes:
        ended = _without_verdict(report)
        if len(ended) == len(report.records):
            return (
                f"The runbooks named no cause: no run reached a verdict "
                f"({', '.join(ended)}). See the records below."
            )
        also = (
            f", and {len(ended)} run(s) reached no verdict: {', '.join(ended)}"
            if ended
            else ""
        )
        return (
            "The runbooks named no cause: every verdict was healthy or "
            f"inconclusive{also}. See the records below."
        )
    return "\n".join(
        f"- {c['runbook']} found **{c['cause']}**: {shown(c.get('summary'))}"
        for c in report.root_causes
    )


def _without_verdict(report: Report) -> list[str]:
    """The runs that reached no verdict, each as ``runbook (status)``."""
    return [
        f"{shown(r.get('runbook'))} ({shown(r.get('status'), 'no status')})"
        for r in report.records
        if not isinstance(r.get("verdict"), Mapping)
    ]


def _timeline(report: Report) -> str:
    reached = [
        (event, words)
        for key, words in MILESTONE_WORDS
        if (event := report.milestones.get(key)) is not None
    ]
    marks = [
        f"- {_clock(event.at)} — {words}"
        for event, words in sorted(reached, key=lambda pair: pair[0].at)
    ]
    marks.append(f"- {_clock(report.generated_at)} — Report written")
    rows = ["| time (UTC) | record | what |", "|---|---|---|"]
    rows += [_event_row(e) for e in report.events[:TIMELINE_ROWS]]
    if len(report.events) > TIMELINE_ROWS:
        rows.append(f"| | | {len(report.events) - TIMELINE_ROWS} more in the records |")
    note = (
        "Times are the records' cell times (papermill); the incident may have "
        "begun before the first runbook ran."
    )
    return "\n".join(marks) + "\n\n" + "\n".join(rows) + "\n\n" + note


def _event_row(event: Event) -> str:
    status = f" [{event.status}]" if event.status else ""
    return (
        f"| {_clock(event.at)} | {_short(event.record)} | {_cell(event.text)}{status} |"
    )


def _root_cause(report: Report) -> str:
    if not report.root_causes:
        return "Not established by the records."
    blocks = []
    for cause in report.root_causes:
        also = cause.get("also_in") or []
        seen = f"{cause['record']}" + (f", also {', '.join(also)}" if also else "")
        lines = [f"**{cause['runbook']} / {cause['cause']}** ({seen})"]
        lines.append(shown(cause.get("summary"), "(no summary)"))
        lines += [f"- {_cell(str(e))}" for e in (cause.get("evidence") or [])[:8]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _resolution(report: Report) -> str:
    if not report.actions:
        return "No gated action was applied or refused in these records."
    rows = [
        "| when (UTC) | action | outcome | by | check after | undo |",
        "|---|---|---|---|---|---|",
    ]
    rows += [_action_row(a) for a in report.actions]
    return "\n".join(rows)


def _action_row(action: Mapping[str, Any]) -> str:
    after = action.get("after") or {}
    check = f"{shown(after.get('status'))}: {shown(after.get('summary'))}"
    check = check if after else "-"
    undo = (
        f"`runbook undo {action['record']}`"
        if action.get("outcome") == "applied" and action.get("undo")
        else "-"
    )
    return (
        f"| {_clock_text(action.get('at'))} | {shown(action.get('action'))} | "
        f"{shown(action.get('outcome'))}: {_cell(shown(action.get('detail')))} | "
        f"{shown(action.get('operator'))} | {_cell(check)} | {undo} |"
    )


def _impact(report: Report) -> str:
    facts = report.affected.facts
    lines = [
        (
            f"- Window counted: {_iso(report.start)} to {_iso(report.end)} (the "
            "first run's look-back before it, to the last run's end)"
        ),
        f"- Affected users: {report.affected.summary}",
    ]
    lines += [
        f"  - {row['affected']}: {row['method']} — `{row['sql']}`"
        for row in report.affected.evidence
    ]
    if "affected" not in facts:
        lines.append("  - the count could not be made; the reason is above")
    lines += [
        f"- Duration of impact: {_minutes(report.duration_min)}",
        (
            "- Revenue impact: not measured by the records; check Stripe for "
            "failed or missing payments in the window"
        ),
        "- Data loss: none recorded in these records",
    ]
    return "\n".join(lines)


def _records(report: Report) -> str:
    rows = [
        "| record | runbook | status | verdict | operator |",
        "|---|---|---|---|---|",
    ]
    for r in report.records:
        rows.append(
            f"| {r['id']} | {shown(r.get('runbook'))} | {shown(r.get('status'))} | "
            f"{_verdict_cell(r)} | {shown(r.get('operator'))} |"
        )
    return "\n".join(rows)


def _verdict_cell(record: Mapping[str, Any]) -> str:
    """The verdict's status and cause, or why the run has none."""
    verdict = record.get("verdict")
    if not isinstance(verdict, Mapping):
        return f"{shown(record.get('status'), 'ended')} — no verdict"
    return f"{shown(verdict.get('status'))}: {shown(verdict.get('cause'))}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _short(record: str) -> str:
    return record[:15] + "…" + record[-4:] if len(record) > 24 else record


def _clock(moment: datetime.datetime) -> str:
    return f"{moment:%H:%M:%S}"


def _clock_text(value: object) -> str:
    from ._time import parse_timestamp

    try:
        return _clock(parse_timestamp(str(value)).astimezone(datetime.UTC))
    except ValueError:
        return "?"


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minutes(value: float) -> str:
    if value < 1:
        return "under a minute"
    if value < 10:  # as precise as the front matter's duration_min
        return f"{round(value, 1):g} min"
    minutes = round(value)
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"
