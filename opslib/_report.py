"""The post-incident report, assembled from incident records.

Given the ids of the records an incident produced, :func:`build_report` reads
their sidecars and executed notebooks and fills the runbook's report template:
the timeline from the cells' times, the root cause from the verdicts, the
resolution from the gated actions (who, when, outcome, undo), the duration, the
affected users counted in D1, the severity from the team's matrix and the
escalation level reached, and action items. :func:`write_report` writes it as
Markdown beside the report's own record, with the ids it refers to in its front
matter; the notebook's output also carries them (``REFERENCES_MIME``), so the
report's sidecar lists them under ``refers_to`` and no record a report cites is
ever taken for unused.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._beforeimage import records_archive
from ._config import Environment
from ._errors import ParameterError, RunError
from ._finding import Finding, Status
from ._impact import count_affected_users
from ._notebook import RECORD_ID_VARIABLE, REFERENCES_MIME
from ._records import archive_dir, load_record, record_folder
from ._reportmd import read_front_matter, render_markdown
from ._scrub import Scrubber
from ._team import Team
from ._time import parse_duration, utcnow
from ._timeline import QUIET_CAUSES, Event, milestones, record_events, shown
from ._verdict import Verdict

DEFAULT_LOOKBACK = datetime.timedelta(hours=1)
REPORT_RUNBOOK = "post-incident-report"


@dataclass(frozen=True)
class Report:
    """A post-incident report, ready to render.

    Attributes:
        incident_id: the incident's id.
        records: the sidecars it was built from, oldest first.
        events: the merged timeline.
        milestones: the template's moments (None when not reached).
        start, end: the incident window counted for impact (UTC).
        severity: the matrix level and why.
        escalation: the escalation level reached and its contact.
        maintenance: the window the incident began in, if any.
        affected: the affected-users finding.
        root_causes: verdicts that named a cause.
        actions: gate results of every record.
        action_items: checklist lines for after the incident.
    """

    incident_id: str
    records: Sequence[Mapping[str, Any]]
    events: Sequence[Event]
    milestones: Mapping[str, Event | None]
    start: datetime.datetime
    end: datetime.datetime
    severity: Mapping[str, Any]
    escalation: Mapping[str, Any]
    maintenance: str
    affected: Finding
    root_causes: Sequence[Mapping[str, Any]]
    actions: Sequence[Mapping[str, Any]]
    action_items: Sequence[str]
    generated_at: datetime.datetime = field(default_factory=utcnow)

    @property
    def record_ids(self) -> list[str]:
        """The full ids of the records the report refers to."""
        return [str(r["id"]) for r in self.records]

    @property
    def duration_min(self) -> float:
        """Minutes from the investigation's start to restoration, else the last run."""
        return duration_min(self.milestones, self.start, self.end)

    def to_markdown(self) -> str:
        """The report as Markdown, front matter first."""
        return render_markdown(self)

    def references(self) -> dict[str, Any]:
        """The machine-readable list of records this report refers to."""
        return {"report": REPORT_RUNBOOK, "refers_to": self.record_ids}

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        text = self.to_markdown()
        return {
            "text/plain": text,
            "text/markdown": text,
            REFERENCES_MIME: self.references(),
        }


def load_report_records(
    record_ids: Sequence[str],
    *,
    records_dir: str | Path | None = None,
    environment: str | None = None,
) -> list[dict[str, Any]]:
    """Read the sidecars of the given records (ids or unique prefixes), oldest first.

    Raises:
        ParameterError: naming ``record_ids`` when an id matches no record or
            several, is given twice, is a report itself, or ran against another
            environment than ``environment``.
    """
    archive = records_archive() if records_dir is None else Path(records_dir)
    problems: list[str] = []
    sidecars: dict[str, dict[str, Any]] = {}
    for given in record_ids:
        try:
            sidecar = load_record(archive, given)
        except RunError as error:
            problems.append("record_ids: " + str(error).removeprefix("record_id: "))
            continue
        problems += _sidecar_problems(given, sidecar, sidecars, environment)
        sidecars[str(sidecar["id"])] = sidecar
    if problems:
        raise ParameterError(problems)
    return sorted(sidecars.values(), key=lambda s: str(s.get("started_at")))


def _sidecar_problems(
    given: str,
    sidecar: Mapping[str, Any],
    seen: Mapping[str, Any],
    environment: str | None,
) -> list[str]:
    if sidecar["id"] in seen:
        return [
            f"record_ids: got {given!r}, which names {sidecar['id']} twice — "
            "expected each record once"
        ]
    if sidecar.get("runbook") == REPORT_RUNBOOK:
        return [f"record_ids: got {given!r}, a report; expected incident records"]
    if environment and sidecar.get("environment") != environment:
        place = sidecar.get("environment")
        problem = (
            f"record_ids: got {given!r}, which ran against {place!r}; expected "
            f"records of {environment!r} (run the report with --env of its records)"
        )
        return [problem]
    return []


def build_report(
    environment: Environment,
    team: Team,
    records: Sequence[Mapping[str, Any]],
    *,
    incident_id: str,
    records_dir: str | Path | None = None,
) -> Report | None:
    """Assemble the report of ``records`` (from :func:`load_report_records`).

    Returns:
        The report; None when no record was given.
    """
    if not records:
        return None
    archive = records_archive() if records_dir is None else Path(records_dir)
    events = sorted(
        (e for r in records for e in record_events(archive, r)), key=lambda e: e.at
    )
    marks = milestones(events)
    start, end = _window(records, events)
    causes = _root_causes(records)
    runbooks = [str(r.get("runbook")) for r in records]
    affected = count_affected_users(
        environment, runbooks, start.timestamp(), end.timestamp()
    )
    share = affected.facts.get("share")
    level = team.severity_for(
        [(str(v["runbook"]), str(v["cause"])) for v in causes] or _pairs(records),
        share if isinstance(share, float) else None,
    )
    actions = _actions(records)
    reached = team.escalation_for(duration_min(marks, start, end))
    return Report(
        incident_id,
        list(records),
        events,
        marks,
        start,
        end,
        _severity(level, causes, share),
        {
            "level": reached.name,
            "role": reached.role,
            "contact": reached.contact,
            "channel": reached.channel,
            "after_min": reached.after_min,
        },
        _maintenance(team, marks, start),
        affected,
        causes,
        actions,
        _action_items(records, actions),
    )


def duration_min(
    marks: Mapping[str, Event | None],
    start: datetime.datetime,
    end: datetime.datetime,
) -> float:
    """Minutes from the investigation's start to restoration, else the last run."""
    started, restored = marks.get("investigation"), marks.get("restored")
    first = started.at if started else start
    last = restored.at if restored else end
    return max(0.0, (last - first).total_seconds() / 60)


def _window(
    records: Sequence[Mapping[str, Any]], events: Sequence[Event]
) -> tuple[datetime.datetime, datetime.datetime]:
    """From the first run's start minus its look-back to the last run's end."""
    first = records[0]
    params = first.get("parameters") or {}
    lookback = DEFAULT_LOOKBACK
    if isinstance(params.get("lookback"), str):
        try:
            lookback = parse_duration(params["lookback"])
        except ValueError:
            lookback = DEFAULT_LOOKBACK
    elif isinstance(params.get("window_min"), int):
        lookback = datetime.timedelta(minutes=params["window_min"])
    return events[0].at - lookback, events[-1].at


def _root_causes(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts that named a cause, once per runbook and cause (the first record)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for sidecar, runbook, cause in _verdict_pairs(records):
        verdict = sidecar["verdict"]
        if cause in QUIET_CAUSES or verdict.get("status") == "ok":
            continue
        key = (runbook, cause)
        if key in found:
            found[key]["also_in"].append(sidecar["id"])
        else:
            found[key] = {
                "record": sidecar["id"],
                "also_in": [],
                **verdict,
                "runbook": runbook,
            }
    return list(found.values())


def _pairs(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The (runbook, cause) of every verdict, for the severity matrix.

    A record without a verdict (a run that failed or was aborted) adds none:
    its runbook alone says nothing of how bad the incident is.
    """
    return [(runbook, cause) for _, runbook, cause in _verdict_pairs(records)]


def _verdict_pairs(
    records: Sequence[Mapping[str, Any]],
) -> list[tuple[Mapping[str, Any], str, str]]:
    """Each record whose verdict names a cause, with the verdict's runbook and cause.

    The runbook is the verdict's own, else the record's.
    """
    found = []
    for sidecar in records:
        verdict = sidecar.get("verdict")
        if not isinstance(verdict, Mapping):
            continue
        cause = verdict.get("cause")
        runbook = verdict.get("runbook") or sidecar.get("runbook")
        if isinstance(cause, str) and cause and runbook:
            found.append((sidecar, str(runbook), cause))
    return found


def _severity(
    level: Any, causes: Sequence[Mapping[str, Any]], share: Any
) -> dict[str, Any]:
    named = list(dict.fromkeys(f"{c['runbook']}/{c['cause']}" for c in causes))
    why = f"cause {', '.join(named)}" if named else "no cause named"
    if isinstance(share, float):
        why += f"; {share:.1%} of users affected"
    return {
        "level": level.name,
        "label": level.label,
        "respond_within_min": level.respond_within_min,
        "update_every_min": level.update_every_min,
        "why": why,
    }


def _maintenance(
    team: Team, marks: Mapping[str, Event | None], start: datetime.datetime
) -> str:
    began = marks.get("detected") or marks.get("investigation")
    moment = began.at if began else start
    window = team.window_at(moment)
    return f"began inside {window.describe()}" if window else ""


def _actions(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for sidecar in records:
        for action in sidecar.get("actions") or []:
            if _is_gate_outcome(action):
                found.append({"record": sidecar["id"], **action})
    return found


def _is_gate_outcome(action: object) -> bool:
    return (
        isinstance(action, Mapping)
        and action.get("kind") == "result"
        and action.get("outcome") != "not-needed"
    )


def _action_items(
    records: Sequence[Mapping[str, Any]], actions: Sequence[Mapping[str, Any]]
) -> list[str]:
    applied = [a for a in actions if a.get("outcome") == "applied"]
    done = {
        phrase
        for a in applied
        if isinstance(phrase := (a.get("plan") or {}).get("confirm_phrase"), str)
    }
    items = [
        f"[x] Immediate fix (done): {shown(a.get('action'))} — {shown(a.get('detail'))}"
        for a in applied
    ] or ["[ ] Immediate fix: none applied through a gate yet"]
    for sidecar in records:
        verdict = sidecar.get("verdict")
        if not isinstance(verdict, Mapping):
            items.append(
                f"[ ] Run {shown(sidecar.get('runbook'), 'the runbook')} again: "
                f"run {sidecar.get('id')} {shown(sidecar.get('status'), 'ended')} "
                "before reaching a verdict"
            )
            continue
        step = verdict.get("gated_step") or {}
        if step and step.get("confirm") in done:
            continue
        if step and step.get("command"):
            items.append(f"[ ] Apply or rule out: {step.get('command')}")
        elif verdict.get("next_action") not in (None, "", "-"):
            items.append(f"[ ] {verdict.get('next_action')}")
    items += [
        "[ ] Add a monitoring alert that would have caught this earlier",
        "[ ] Update the runbook with what this incident taught",
        "[ ] Improve testing: a sandbox scenario or drill for this cause",
    ]
    return list(dict.fromkeys(items))


def write_report(
    report: Report | None,
    *,
    environment: Environment | None = None,
    records_dir: str | Path | None = None,
) -> Path | None:
    """Write the report's Markdown beside its own record; return the path.

    The file is ``<archive>/YYYY/MM/<report record id>.report.md``; outside
    ``runbook run`` (no record id) it is named after the time instead. The text
    is scrubbed like a record (with ``environment``'s secrets too), and a report
    is never rewritten.

    Raises:
        RunError: when the file exists or cannot be written.

    Returns:
        The file written; None when there was no report.
    """
    from ._records import write_once

    if report is None:
        return None
    archive = records_archive() if records_dir is None else Path(records_dir)
    name = os.environ.get(RECORD_ID_VARIABLE) or (
        f"{report.generated_at:%Y%m%dT%H%M%SZ}-{REPORT_RUNBOOK}-{report.incident_id}"
    )
    path = record_folder(archive, report.generated_at) / f"{name}.report.md"
    scrubber = Scrubber.from_environment()
    if environment is not None:
        scrubber = scrubber.extended(environment.secrets)
    write_once(path, scrubber.scrub_text(report.to_markdown()))
    return path


def conclude_report(report: Report | None, path: Path | None) -> Verdict:
    """The report run's verdict: where the report went and what it found."""
    if report is None or path is None:
        return Verdict(
            REPORT_RUNBOOK,
            Status.UNKNOWN,
            "inconclusive",
            "no record ids given: nothing to report on",
            (),
            "runbook run post-incident-report -p incident_id <incident> "
            "-p record_ids <record id>,<record id> (runbook records lists them)",
        )
    severity = report.severity
    evidence = [
        f"report: {path}",
        f"severity {severity['level']} ({severity['label']}): {severity['why']}",
        f"duration {report.duration_min:.1f} min; {report.affected.summary}",
        f"refers to {len(report.record_ids)} record(s): {', '.join(report.record_ids)}",
    ]
    return Verdict(
        REPORT_RUNBOOK,
        Status.OK,
        "report-written",
        f"report of {report.incident_id} written beside this record",
        evidence,
        "review the action items with the team",
        None,
        (report.affected,),
    )


def referenced_records(records_dir: str | Path | None = None) -> set[str]:
    """Every record id some report in the archive refers to.

    Reads the ``refers_to`` of every sidecar and the front matter of every
    ``*.report.md`` (a report run under plain papermill has no sidecar). A
    clean-up of old records must keep these.
    """
    return {i for refs in report_references(records_dir).values() for i in refs}


def report_references(records_dir: str | Path | None = None) -> dict[str, set[str]]:
    """The records each report of the archive refers to, by the report's record id.

    A report's id is its sidecar's name, or for a ``<id>.report.md`` without
    a sidecar, ``<id>``; both of one report are merged.
    """
    archive = archive_dir(records_archive() if records_dir is None else records_dir)
    found: dict[str, set[str]] = {}
    for path in archive.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/*"):
        if path.name.endswith(".report.md"):
            report_id = path.name.removesuffix(".report.md")
            refs = read_front_matter(path.read_text(encoding="utf-8")).get("refers_to")
        elif path.suffix == ".json" and not path.name.startswith("."):
            report_id = path.stem
            refs = _sidecar_references(path)
        else:
            continue
        if isinstance(refs, list) and refs:
            found.setdefault(report_id, set()).update(str(r) for r in refs)
    return found


def _sidecar_references(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    refs = data.get("refers_to") if isinstance(data, dict) else None
    return refs if isinstance(refs, list) else []
