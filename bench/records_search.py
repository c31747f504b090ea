"""Benchmark: a filtered search of the records archive against reading every notebook.

Makes a throw-away archive of synthetic records (bench/_make_records.py),
rebuilds its index as `runbook reindex` does, then times `list_records` with
several filters at once (runbook, environment, verdict status, a date range and a
word of the findings), median of repeats, against the way without an index:
opening every executed notebook with nbformat and filtering on what the runner
stamped into its metadata, measured in the same run. Both must return the same
records. Targets: the search takes at most 0.1 s and is at least 100 times
faster than the baseline.

Usage: .venv/bin/python bench/records_search.py [--records N] [--repeats N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from _make_records import make_records  # noqa: E402
from _protocol import result_line  # noqa: E402
from opslib._index import findings_text, normal_time, rebuild  # noqa: E402
from opslib._notebook import runbook_name  # noqa: E402
from opslib._records import RecordQuery, list_records  # noqa: E402

FILTERS: dict[str, Any] = {
    "runbook": "api-down",
    "environment": "production",
    "status": "fail",
    "since": "2026-03-01",
    "until": "2026-11-30",
    "words": "timeout",
}
LIMIT = 100


def search_by_reading_notebooks(root: Path) -> list[str]:
    """The baseline: read every notebook and keep the ones the filters match."""
    since, until = (
        normal_time("2026-03-01T00:00:00Z"),
        normal_time("2026-12-01T00:00:00Z"),
    )
    words = [w.lower() for w in re.findall(r"\w+", FILTERS["words"])]
    found = []
    for path in root.glob("[0-9]*/[0-9]*/*.ipynb"):
        meta = nbformat.read(path, as_version=4).metadata
        verdict = meta.opslib.get("verdict") or {}
        started = normal_time(meta.papermill.get("start_time"))
        if (
            runbook_name(meta.papermill.get("input_path", "")) == FILTERS["runbook"]
            and meta.opslib.get("environment") == FILTERS["environment"]
            and verdict.get("status") == FILTERS["status"]
            and since <= started < until
            and _has_words(findings_text(verdict), words)
        ):
            found.append((started, meta.opslib["record_id"]))
    return [record_id for _, record_id in sorted(found, reverse=True)[:LIMIT]]


def _has_words(text: str, words: list[str]) -> bool:
    tokens = re.findall(r"\w+", text.lower())
    return all(any(token.startswith(word) for token in tokens) for word in words)


def timed(step: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Run a step ``repeats`` times; return the wall times and the last answer."""
    times, answer = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        answer = step()
        times.append(time.perf_counter() - started)
    return times, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000, help="default 10000")
    parser.add_argument("--repeats", type=int, default=21, help="searches (21)")
    parser.add_argument(
        "--baseline-repeats", type=int, default=3, help="baseline passes (3)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="opslib-bench-records-") as folder:
        root = Path(folder) / "records"
        started = time.perf_counter()
        make_records(root, args.records)
        made = time.perf_counter() - started
        [reindex_s], report = timed(lambda: rebuild(root), 1)

        def search() -> list[str]:
            return [
                r["id"] for r in list_records(root, RecordQuery(**FILTERS), limit=LIMIT)
            ]

        search()  # warm the file cache and imports, as a second search finds them
        search_times, found = timed(search, args.repeats)
        base_times, expected = timed(
            lambda: search_by_reading_notebooks(root), args.baseline_repeats
        )

    if found != expected:
        raise SystemExit(f"the two searches disagree: {found} against {expected}")
    search_s = statistics.median(search_times)
    baseline_s = statistics.median(base_times)
    speedup = baseline_s / search_s
    print(f"archive: {args.records} records made in {made:.1f} s")
    print(f"reindex: {report.indexed} records in {reindex_s:.2f} s")
    print(f"filters: {FILTERS} -> {len(found)} records")
    print(
        f"search   median {search_s * 1000:.2f} ms over {args.repeats} "
        f"(min {min(search_times) * 1000:.2f}, max {max(search_times) * 1000:.2f})"
    )
    print(
        f"baseline median {baseline_s:.2f} s over {args.baseline_repeats} "
        "(nbformat reads every notebook)"
    )
    print(f"speed-up: {speedup:.0f}x (target >= 100)")
    print(result_line("records_search", search_s, "s", "<= 0.1"))
    print(result_line("records_search", speedup, "x", ">= 100"))


if __name__ == "__main__":
    main()
