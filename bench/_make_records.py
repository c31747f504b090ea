"""Synthetic incident records for benchmarks: a sidecar and a small notebook each.

The records look like the runner's: the sidecar keys it writes, a verdict with
evidence and findings in the runbook's vocabulary of causes, gated actions on
some, and an executed notebook (parameters, a few steps with outputs, the verdict
as a display) whose metadata carries what the runner stamps into it. Runbooks,
environments, statuses, causes, dates over a year and the words of the findings
vary with a seeded random generator, so two calls with the same seed give the
same archive.
"""

from __future__ import annotations

import datetime
import json
import random
import zlib
from pathlib import Path
from typing import Any

from opslib._verdict import CAUSES

RUNBOOKS = {
    "api-down": "notebooks/incidents/01-api-down.ipynb",
    "auth-broken": "notebooks/incidents/02-auth-broken.ipynb",
    "password-reset": "notebooks/incidents/03-password-reset.ipynb",
    "high-error-rate": "notebooks/incidents/04-high-error-rate.ipynb",
    "slow-responses": "notebooks/incidents/05-slow-responses.ipynb",
    "queue-delays": "notebooks/incidents/06-queue-delays.ipynb",
    "stripe-webhooks": "notebooks/incidents/07-stripe-webhooks.ipynb",
    "payment-without-subscription": (
        "notebooks/incidents/08-payment-without-subscription.ipynb"
    ),
    "backups": "notebooks/procedures/backups.ipynb",
    "checklist-daily": "notebooks/procedures/checklist-daily.ipynb",
}
ENVIRONMENTS = ("sandbox", "sandbox", "staging", "production")
SYSTEMS = ("Worker", "D1", "KV", "R2", "queue", "Stripe", "MailChannels", "API")
SYMPTOMS = (
    "timeout",
    "latency",
    "refused",
    "throttled",
    "overflow",
    "retries",
    "backlog",
    "unauthorized",
    "missing",
    "stale",
    "rollback",
    "deadlock",
)
ROUTES = ("/health", "/manuscripts", "/auth/login", "/billing/webhook", "/upload")
END = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)


def make_records(root: Path, count: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """Write ``count`` records into the archive ``root``; return their sidecars."""
    rng = random.Random(seed)
    sidecars = []
    for number in range(count):
        sidecar, notebook = _record(rng, number)
        folder = root / sidecar["record_path"].rsplit("/", 1)[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{sidecar['id']}.ipynb").write_text(json.dumps(notebook, indent=1))
        (folder / f"{sidecar['id']}.json").write_text(json.dumps(sidecar, indent=2))
        sidecars.append(sidecar)
    return sidecars


def _record(rng: random.Random, number: int) -> tuple[dict[str, Any], dict[str, Any]]:
    runbook = rng.choice(list(RUNBOOKS))
    started = END - datetime.timedelta(seconds=rng.randrange(365 * 86400))
    duration = round(rng.uniform(2.0, 90.0), 3)
    status = rng.choices(["succeeded", "failed", "aborted"], [88, 9, 3])[0]
    incident = f"INC-{rng.randrange(1, 400)}" if rng.random() < 0.7 else None
    record_id = "-".join(
        part
        for part in (f"{started:%Y%m%dT%H%M%SZ}", runbook, incident, f"{number:04x}")
        if part
    )
    verdict = _verdict(rng, runbook) if status == "succeeded" else None
    actions = _actions(rng, runbook) if verdict and rng.random() < 0.3 else []
    sidecar = {
        "sidecar_version": 1,
        "id": record_id,
        "notebook": RUNBOOKS[runbook],
        "runbook": runbook,
        "environment": rng.choice(ENVIRONMENTS),
        "incident_id": incident,
        "parameters": {"incident_id": incident or "INC-UNSET", "apply": False},
        "operator": rng.choice(["oncall-1", "oncall-2", "ana@ops", "li@ops"]),
        "started_at": _iso(started),
        "finished_at": _iso(started + datetime.timedelta(seconds=duration)),
        "duration_s": duration,
        "status": status,
        "error": _error(status),
        "verdict": verdict,
        "actions": actions,
        "refers_to": [],
        "cells": [
            {"index": i, "status": "completed", "duration_s": 0.1} for i in range(7)
        ],
        "opslib_version": "0.1.0",
        "papermill_version": "2.6.0",
        "record_path": f"{started:%Y}/{started:%m}/{record_id}.ipynb",
    }
    return sidecar, _notebook(sidecar)


def _verdict(rng: random.Random, runbook: str) -> dict[str, Any]:
    cause = rng.choice(CAUSES[runbook])
    status = "ok" if cause == "healthy" else rng.choice(["fail", "warn", "unknown"])
    system, symptom = rng.choice(SYSTEMS), rng.choice(SYMPTOMS)
    route = rng.choice(ROUTES)
    findings = [
        {
            "name": f"check-{i}",
            "status": rng.choice(["ok", "warn", "fail"]),
            "summary": f"{rng.choice(SYSTEMS)} {rng.choice(SYMPTOMS)} on "
            f"{rng.choice(ROUTES)}: {rng.randrange(1, 500)} of 500 requests",
            "evidence": [],
            "facts": {},
        }
        for i in range(rng.randrange(2, 6))
    ]
    return {
        "runbook": runbook,
        "status": status,
        "cause": cause,
        "summary": f"{system} {symptom} on {route} ({cause.replace('-', ' ')})",
        "evidence": [
            f"{rng.randrange(1, 100)} % of {route} answered 5xx",
            {"version": f"v{rng.randrange(1, 60)}", "note": rng.choice(SYMPTOMS)},
        ],
        "next_action": f"look at the {system} dashboard",
        "gated_step": None,
        "findings": findings,
    }


def _actions(rng: random.Random, runbook: str) -> list[dict[str, Any]]:
    outcome = rng.choice(["dry-run", "applied", "refused"])
    plan = {"kind": "plan", "action": "rollback", "summary": f"{runbook} remedy"}
    return [plan, {"kind": "result", "action": "rollback", "outcome": outcome}]


def _error(status: str) -> dict[str, Any] | None:
    if status == "succeeded":
        return None
    kind = "interrupted" if status == "aborted" else "cell-error"
    return {"kind": kind, "ename": "RuntimeError", "evalue": "x", "cell_index": 3}


def _notebook(sidecar: dict[str, Any]) -> dict[str, Any]:
    verdict = sidecar["verdict"]
    shown = [{"output_type": "stream", "name": "stdout", "text": "checked\n"}]
    if verdict:
        shown.append(
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {
                    "application/vnd.opslib.verdict+json": verdict,
                    "text/plain": verdict["summary"],
                },
            }
        )
    cells = [
        _cell("markdown", f"# {sidecar['runbook']}"),
        _cell("code", 'incident_id: str = "INC-UNSET"  # the incident', ["parameters"]),
        _cell("code", "import opslib\nenv = opslib.load_environment(environment)"),
        _cell("markdown", "## Probe\nWhat the API answers."),
        _cell("code", "probe = opslib.probe_api(env)\nprobe", outputs=shown[:1]),
        _cell("code", "verdict = opslib.conclude(...)\nverdict", outputs=shown[1:]),
    ]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "opslib": {
                "record_id": sidecar["id"],
                "verdict": verdict,
                "actions": sidecar["actions"],
                "environment": sidecar["environment"],
            },
            "papermill": {
                "parameters": sidecar["parameters"],
                "input_path": sidecar["notebook"],
                "output_path": sidecar["record_path"],
                "start_time": sidecar["started_at"],
                "end_time": sidecar["finished_at"],
                "duration": sidecar["duration_s"],
            },
        },
        "cells": cells,
    }


def _cell(
    kind: str,
    source: str,
    tags: list[str] | None = None,
    outputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_type": kind,
        "id": f"c{zlib.crc32(source.encode()):08x}",
        "metadata": {"tags": tags or []},
        "source": source,
    }
    if kind == "code":
        cell.update(execution_count=1, outputs=outputs or [])
    return cell


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
