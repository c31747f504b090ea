"""One alert-triggered run, in a process of its own: ``python -m opslib._alertjob``.

``serve-alerts`` starts this module once per accepted alert and writes the job
to its standard input as JSON (runbook, parameters, environment, archive, the
record id it reserved, cell timeout, operator); nothing of it shows in the
process list. Each run needs its own process because the runner sets the
kernel's variables on the process environment. The module prints one JSON line:
the record id and its status, or the error that kept the run from starting.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

from ._errors import OpslibError

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run the job's runbook as a dry run and archive it under the reserved id.

    Raises:
        OpslibError: the run could not start (a bad parameter or environment).
    """
    from ._runner import run_notebook

    parameters = dict(job["parameters"])
    if "apply" in parameters:
        parameters["apply"] = False
    record = run_notebook(
        job["runbook"],
        parameters=parameters,
        environment=job["environment"],
        records_dir=job["records_dir"],
        operator=job["operator"],
        timeout=job["timeout"],
        record_id=job["record_id"],
    )
    verdict = record.verdict or {}
    return {
        "record_id": record.id,
        "status": record.status,
        "verdict_status": verdict.get("status"),
        "cause": verdict.get("cause"),
    }


def main() -> int:
    """Read the job from standard input, run it, print the outcome as JSON."""
    # A receiver started in the background of a shell passes SIGINT on as
    # ignored; the receiver's stop sends it, and the run must archive and end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        job = json.loads(sys.stdin.read())
        outcome = run_job(job)
    except KeyboardInterrupt as stopped:
        record = getattr(stopped, "record", None)  # archived when it had begun
        archived = {"record_id": record.id, "status": record.status} if record else {}
        print(json.dumps({**archived, "error": "interrupted"}), flush=True)
        return EXIT_INTERRUPTED
    except (OpslibError, ValueError, KeyError, TypeError) as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        return EXIT_FAILED
    print(json.dumps(outcome), flush=True)
    return 0 if outcome["status"] == "succeeded" else EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
