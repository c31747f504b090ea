"""Benchmark: what `import opslib` costs a fresh interpreter.

Runs `python -c "import opslib"` and `python -c "pass"` alternately as fresh
processes, with this Python, and takes the difference of their medians: the time
the import adds to starting Python. Target: at most 0.15 s.

Usage: .venv/bin/python bench/import_cost.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _protocol import result_line

ROOT = Path(__file__).resolve().parent.parent


def timed(code: str) -> float:
    """Wall time of a fresh interpreter running ``code``; fail loudly on error."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each (15)")
    args = parser.parse_args()
    timed("import opslib")  # compile the package's bytecode once, untimed
    with_import: list[float] = []
    bare: list[float] = []
    for _ in range(args.runs):
        with_import.append(timed("import opslib"))
        bare.append(timed("pass"))
    cost = statistics.median(with_import) - statistics.median(bare)
    print(f"runs of each: {args.runs}")
    print(f'python -c "import opslib"  median {statistics.median(with_import):.3f} s')
    print(f'python -c "pass"           median {statistics.median(bare):.3f} s')
    print(f"import opslib costs {cost:.3f} s (target <= 0.15)")
    print(result_line("import_cost", cost, "s", "<= 0.15"))


if __name__ == "__main__":
    main()
