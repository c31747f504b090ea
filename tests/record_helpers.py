"""Records written as the runner writes them, for the archive's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opslib._records import write_once


def store(
    root: Path,
    record_id: str,
    started_at: str,
    *,
    runbook: str = "api-down",
    environment: str = "sandbox",
    status: str = "succeeded",
    incident_id: str | None = None,
    verdict: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write a record's sidecar and notebook as the runner does; return the sidecar."""
    folder = root / started_at[:4] / started_at[5:7]
    sidecar = {
        "id": record_id,
        "notebook": f"notebooks/incidents/{runbook}.ipynb",
        "runbook": runbook,
        "environment": environment,
        "incident_id": incident_id,
        "started_at": started_at,
        "status": status,
        "verdict": verdict,
        "actions": [],
        "refers_to": [],
        "record_path": f"{started_at[:4]}/{started_at[5:7]}/{record_id}.ipynb",
        **extra,
    }
    write_once(folder / f"{record_id}.ipynb", '{"cells": []}\n')
    write_once(folder / f"{record_id}.json", json.dumps(sidecar))
    return sidecar


def verdict(status: str, cause: str, summary: str, **more: Any) -> dict[str, Any]:
    return {"status": status, "cause": cause, "summary": summary, **more}
