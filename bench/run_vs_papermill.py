"""Benchmark: `runbook run api-down` against bare `papermill` on the same notebook.

Both run as fresh processes, alternating, against one throw-away sandbox, with the
same parameters. Prints the median wall time of each and their ratio (runbook over
papermill). Target: ratio at most 1.0 — the wrapper's validation, scrubbing and
archiving paid for by running the kernel smarter than the CLI does.

Usage: .venv/bin/python bench/run_vs_papermill.py [--runs N] [--scenario NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _commands import timed
from _protocol import result_line

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NOTEBOOK = ROOT / "notebooks" / "incidents" / "01-api-down.ipynb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=7, help="runs of each command (default 7)"
    )
    parser.add_argument("--scenario", default="bad-deployment", help="sandbox scenario")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from opslib import load_environment
    from opslib.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="opslib-bench-") as folder:
        sandbox = Sandbox(
            Path(folder) / "sandbox",
            load_environment("sandbox"),
            ephemeral_ports=True,
            tied=True,
        )
        sandbox.start(args.scenario)
        env = {**os.environ, "RUNBOOK_ENVIRONMENTS": str(sandbox.environments_dir)}
        wrapper = [
            str(BIN / "runbook"),
            "run",
            "api-down",
            "-p",
            "incident_id",
            "BENCH-1",
            "--records",
            str(Path(folder) / "records"),
        ]
        bare = [
            str(BIN / "papermill"),
            str(NOTEBOOK),
            str(Path(folder) / "out.ipynb"),
            "-p",
            "incident_id",
            "BENCH-1",
            "--no-progress-bar",
        ]
        try:
            timed(wrapper, env), timed(bare, env)  # warm caches for both
            runbook_times, papermill_times = [], []
            for _ in range(args.runs):
                runbook_times.append(timed(wrapper, env))
                papermill_times.append(timed(bare, env))
        finally:
            sandbox.stop()

    runbook_median = statistics.median(runbook_times)
    papermill_median = statistics.median(papermill_times)
    print(f"runs per command: {args.runs} (scenario {args.scenario})")
    print(
        f"runbook run   median {runbook_median:.3f} s  (min {min(runbook_times):.3f}, max {max(runbook_times):.3f})"
    )
    print(
        f"papermill CLI median {papermill_median:.3f} s  (min {min(papermill_times):.3f}, max {max(papermill_times):.3f})"
    )
    print(
        f"ratio runbook/papermill: {runbook_median / papermill_median:.2f} (target <= 1.00)"
    )
    print(
        result_line(
            "run_vs_papermill", runbook_median / papermill_median, "ratio", "<= 1.0"
        )
    )


if __name__ == "__main__":
    main()
