"""Benchmark: `runbook run --all incidents` against eight plain `papermill` CLI runs.

Against one throw-away sandbox (healthy, on free ports), in the same run: the eight
incident notebooks as one batch, and the same eight notebooks one after the other
through the bare `papermill` command with the same parameters. The sandbox is reset
before each pass so both see the same state. Prints each pass's wall time, the
median over the rounds and the ratio batch over sequential. Target: at most 0.35.

Usage: .venv/bin/python bench/batch_vs_papermill.py [--rounds N] [--jobs N]
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
INCIDENTS = sorted((ROOT / "notebooks" / "incidents").glob("*.ipynb"))
PARAMETERS = ["-p", "incident_id", "BENCH-1"]


def sequential(folder: Path, env: dict[str, str]) -> float:
    """The eight notebooks one after the other through the papermill CLI."""
    total = 0.0
    for notebook in INCIDENTS:
        output = folder / f"{notebook.stem}.ipynb"
        total += timed(
            [str(BIN / "papermill"), str(notebook), str(output), *PARAMETERS]
            + ["--no-progress-bar"],
            env,
        )
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--jobs", type=int, default=None, help="runbook run --jobs")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from opslib.sandbox.testing import running_sandbox, sandbox_environ

    batch = [str(BIN / "runbook"), "run", "--all", "incidents", *PARAMETERS]
    batch += ["--jobs", str(args.jobs)] if args.jobs else []
    batch_times: list[float] = []
    papermill_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="opslib-batch-bench-") as name:
        folder = Path(name)
        with running_sandbox(folder / "sandbox") as sandbox:
            env = dict(os.environ)
            for key, value in sandbox_environ(sandbox).items():
                if value:
                    env[key] = value
                else:  # blanked: the sandbox's own secrets file must win
                    env.pop(key, None)
            for round_ in range(args.rounds):
                # alternate which goes first, so neither always finds caches warm
                passes = [("batch", batch_times), ("papermill", papermill_times)]
                for label, times in passes[:: 1 if round_ % 2 == 0 else -1]:
                    sandbox.reset("healthy")
                    if label == "batch":
                        records = folder / f"records-{round_}"
                        times.append(timed(batch + ["--records", str(records)], env))
                    else:
                        times.append(sequential(folder, env))
                    print(
                        f"  round {round_ + 1} {label:9} {times[-1]:.1f} s", flush=True
                    )
    batch_median = statistics.median(batch_times)
    papermill_median = statistics.median(papermill_times)
    ratio = batch_median / papermill_median
    print(f"notebooks: {len(INCIDENTS)}, rounds: {args.rounds}")
    print(f"runbook run --all incidents  median {batch_median:.1f} s")
    print(f"papermill CLI, sequential    median {papermill_median:.1f} s")
    print(f"ratio batch/sequential: {ratio:.2f} (target <= 0.35)")
    print(result_line("batch_vs_papermill", ratio, "ratio", "<= 0.35"))


if __name__ == "__main__":
    main()
