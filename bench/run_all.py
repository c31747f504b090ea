"""Run every benchmark and print one table of their results.

Each bench/*.py whose name does not start with `_` (helper modules) runs, apart
from this script, as a subprocess with this Python; its output passes through as
it comes, and its BENCH-RESULT lines are collected. The table lists benchmark,
figure, unit, target, ratio and whether the target was met; a missed target reads
MISSED. Exit code: 0 when every benchmark ran (targets met or not), 1 when one
failed or printed no valid BENCH-RESULT line.

Usage: .venv/bin/python bench/run_all.py [NAME ...]   (names without .py: a subset)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _protocol import parse_line

HERE = Path(__file__).resolve().parent
COLUMNS = ("benchmark", "figure", "unit", "target", "ratio", "met")


def benchmarks(folder: Path) -> list[Path]:
    """The benchmark scripts of a folder, by name; helpers and this runner left out."""
    return sorted(
        path
        for path in folder.glob("*.py")
        if not path.name.startswith("_") and path.name != Path(__file__).name
    )


def run_one(script: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Run one benchmark, echoing its output; return its results and any failure."""
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    with subprocess.Popen(
        [sys.executable, str(script)],
        cwd=script.parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(f"  {line}", end="", flush=True)
            try:
                found = parse_line(line.strip())
            except ValueError as error:
                problems.append(f"malformed BENCH-RESULT line ({error})")
                continue
            if found is not None:
                results.append(found)
    if process.returncode != 0:
        problems.insert(0, f"exited with {process.returncode}")
    elif not results:
        problems.append("printed no BENCH-RESULT line")
    return results, "; ".join(problems) or None


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a fixed-width table; a missed target reads MISSED."""
    cells = [list(COLUMNS)] + [
        [
            str(row["benchmark"]),
            f"{row['figure']:g}" if isinstance(row["figure"], (int, float)) else "-",
            str(row["unit"]),
            str(row["target"]),
            f"{row['ratio']:.2f}" if isinstance(row["ratio"], (int, float)) else "-",
            row.get("met_text") or ("met" if row["met"] is True else "MISSED"),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
        for line in cells
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these benchmarks (no .py)")
    parser.add_argument(
        "--folder", type=Path, default=HERE, help="folder of benchmark scripts"
    )
    args = parser.parse_args(argv)
    scripts = benchmarks(args.folder)
    if args.names:
        known = {path.stem: path for path in scripts}
        unknown = [name for name in args.names if name not in known]
        if unknown:
            parser.error(
                f"unknown benchmark {unknown[0]!r}; expected one of: "
                + ", ".join(known)
            )
        scripts = [known[name] for name in args.names]

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.perf_counter()
        results, failure = run_one(script)
        print(f"== {script.name}: {time.perf_counter() - started:.1f} s", flush=True)
        rows.extend(results)
        if failure:
            failures.append(f"{script.name}: {failure}")
            rows.append(
                dict.fromkeys(COLUMNS, "-")
                | {"benchmark": script.stem, "met_text": "FAILED"}
            )
    print()
    print(table(rows))
    missed = [row for row in rows if row["met"] is False]
    for row in missed:
        print(
            f"MISSED: {row['benchmark']} {row['figure']:g} {row['unit']} "
            f"(target {row['target']})"
        )
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
