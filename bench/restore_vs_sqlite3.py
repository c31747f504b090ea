"""Benchmark: restoring a platform dump with opslib against the `sqlite3` shell.

One dump in the backup worker's format (users and manuscripts, a share of the
titles with semicolons, quotes and line breaks in them) is written to a temp
folder. Each side then does the same job on it:

- opslib: ``restore_dump`` into a fresh scratch file, then the row-count and
  integrity checks of the restore runbook (``check_restore_counts``,
  ``check_integrity``).
- sqlite3: ``sqlite3 FILE < dump.sql`` into a fresh file, then a second
  ``sqlite3`` run of the very queries opslib's checks run (one COUNT per table,
  the orphan and NULL-key queries of ``integrity_queries``), taken from opslib
  for the same schema.

The two sides alternate within each round, and which goes first alternates
between rounds, so load on a shared machine hits both alike. Each round gives a
speed ratio (sqlite3's time over opslib's: opslib's speed as a share of the
shell's); the median over the rounds is the figure. Target: at least 0.8.

Usage: .venv/bin/python bench/restore_vs_sqlite3.py [--rows N] [--rounds N]
"""

from __future__ import annotations

import argparse
import datetime
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _protocol import result_line  # noqa: E402
from opslib._dump import (  # noqa: E402
    dump_footer,
    dump_header,
    insert_line,
    insert_prefix,
    table_opening,
)
from opslib._restore import count_sql, restore_dump, user_tables  # noqa: E402
from opslib._restorecheck import (  # noqa: E402
    check_integrity,
    check_restore_counts,
    integrity_queries,
)

BENCHMARK = "restore_vs_sqlite3"
TARGET = 0.8
SQLITE3 = "/usr/bin/sqlite3"
USERS_PER_THOUSAND = 5
USERS_TABLE = (
    "CREATE TABLE users (\n    id TEXT PRIMARY KEY,\n    email TEXT UNIQUE NOT NULL,\n"
    "    created_at INTEGER NOT NULL\n)"
)
MANUSCRIPTS_TABLE = (
    "CREATE TABLE manuscripts (\n    id TEXT PRIMARY KEY,\n    user_id TEXT NOT NULL,\n"
    "    title TEXT NOT NULL,\n    word_count INTEGER,\n    metadata TEXT,\n"
    "    uploaded_at INTEGER NOT NULL,\n"
    "    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE\n)"
)


def user_rows(rows: int) -> int:
    """How many of the dump's rows are users (the rest are manuscripts)."""
    return max(1, rows * USERS_PER_THOUSAND // 1000)


def logged_stats(rows: int) -> dict[str, object]:
    """The backup log's stats for the dump, as the worker logs them."""
    users = user_rows(rows)
    return {
        "tables": [
            {"name": "manuscripts", "rows": rows - users},
            {"name": "users", "rows": users},
        ],
        "totalRows": rows,
    }


def write_dump(path: Path, rows: int) -> None:
    """Write a dump of ``rows`` rows in the worker's layout."""
    users = user_rows(rows)
    taken = datetime.datetime(2026, 11, 27, 3, tzinfo=datetime.UTC)
    with open(path, "w", encoding="utf-8") as out:
        out.write(dump_header(taken, "manuscript-platform"))
        out.write(table_opening("manuscripts", MANUSCRIPTS_TABLE))
        prefix = insert_prefix(
            "manuscripts",
            ["id", "user_id", "title", "word_count", "metadata", "uploaded_at"],
        )
        for number in range(rows - users):
            title = f"Draft {number}" if number % 50 else f"Part {number}; it's\nnew"
            metadata = f'{{"reportId": "{number:08x}", "originalName": "book.docx"}}'
            row = (
                f"m-{number:09d}",
                f"u-{number % users:07d}",
                title,
                number % 90_000,
                metadata,
                1_700_000_000 + number,
            )
            out.write(insert_line(prefix, row))
        out.write("\n" + table_opening("users", USERS_TABLE))
        prefix = insert_prefix("users", ["id", "email", "created_at"])
        for number in range(users):
            row = (f"u-{number:07d}", f"author{number}@example.com", 1_690_000_000)
            out.write(insert_line(prefix, row))
        out.write("\n")
        out.write(
            dump_footer(["CREATE INDEX idx_manuscripts_user ON manuscripts(user_id)"])
        )


def check_queries() -> tuple[list[str], list[str]]:
    """The count queries and the integrity queries opslib runs on this schema."""
    schema = sqlite3.connect(":memory:")
    try:
        schema.execute(USERS_TABLE)
        schema.execute(MANUSCRIPTS_TABLE)
        counts = [count_sql(table) for table in user_tables(schema)]
        integrity = [query["sql"] for query in integrity_queries(schema)]
    finally:
        schema.close()
    return counts, integrity


def cpu_seconds(side: str) -> float:
    """CPU time used so far by this process (opslib, all its threads) or by its
    finished children (the sqlite3 shell): shows the work apart from the load."""
    who = resource.RUSAGE_SELF if side == "opslib" else resource.RUSAGE_CHILDREN
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_opslib(dump: Path, target: Path, logged: dict[str, object]) -> float:
    """Restore and check with opslib (counts against the log); return the wall time."""
    started = time.perf_counter()
    report = restore_dump(dump, target, views="")
    counts = check_restore_counts(report, logged_stats=logged)
    integrity = check_integrity(target)
    elapsed = time.perf_counter() - started
    if not (counts.is_ok and integrity.is_ok):
        raise SystemExit(f"opslib checks failed: {counts} / {integrity}")
    return elapsed


def run_shell(
    dump: Path, target: Path, rows: int, counts: list[str], integrity: list[str]
) -> float:
    """Restore with the sqlite3 shell, run the same check queries; return the time."""
    script = "".join(f"{sql};\n" for sql in counts + integrity)
    started = time.perf_counter()
    with open(dump, "rb") as source:
        subprocess.run([SQLITE3, str(target)], stdin=source, check=True)
    checked = subprocess.run(
        [SQLITE3, str(target)],
        input=script,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    found = checked.stdout.splitlines()
    restored = sum(int(line) for line in found[: len(counts)])
    if restored != rows or found[len(counts) :] != ["0"] * len(integrity):
        raise SystemExit(f"sqlite3 checks found problems: {checked.stdout!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows (default 1e6)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of both sides (default 5)"
    )
    args = parser.parse_args()
    if args.rows < 1000 or args.rounds < 1:
        raise SystemExit("--rows must be at least 1000 and --rounds at least 1")
    if shutil.which(SQLITE3) is None:
        raise SystemExit(
            f"{SQLITE3} is missing: install the sqlite3 shell (apt-get install "
            "sqlite3) to compare against it; nothing was measured"
        )

    counts, integrity = check_queries()
    print("opslib : restore_dump into a fresh file + check_restore_counts +")
    print("         check_integrity (journal off, multi-row INSERTs, writer thread)")
    print("sqlite3: `sqlite3 FILE < dump.sql` into a fresh file + `sqlite3 FILE` with")
    print(
        f"         the same {len(counts)} count and {len(integrity)} integrity queries"
    )
    with tempfile.TemporaryDirectory(prefix="opslib-restore-bench-") as folder:
        dump = Path(folder) / "dump.sql"
        write_dump(dump, args.rows)
        print(f"dump: {args.rows:,} rows, {dump.stat().st_size / 1e6:.1f} MB")
        sides = {
            "opslib": lambda target: run_opslib(dump, target, logged_stats(args.rows)),
            "sqlite3": lambda target: run_shell(
                dump, target, args.rows, counts, integrity
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, float] = {}
        ratios = []
        for number in range(args.rounds):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for name in order:
                target = Path(folder) / f"{name}-{number}.sqlite"
                before = cpu_seconds(name)
                times[name].append(sides[name](target))
                cpu[name] = cpu_seconds(name) - before
                target.unlink()
            ratios.append(times["sqlite3"][-1] / times["opslib"][-1])
            print(
                f"  round {number + 1}: opslib {times['opslib'][-1]:.2f} s "
                f"(CPU {cpu['opslib']:.2f} s), sqlite3 {times['sqlite3'][-1]:.2f} s "
                f"(CPU {cpu['sqlite3']:.2f} s), ratio {ratios[-1]:.2f} "
                f"({' first, '.join(order)} second)"
            )
    for name, taken in times.items():
        print(
            f"{name:8} median {statistics.median(taken):.2f} s "
            f"(min {min(taken):.2f}, max {max(taken):.2f})"
        )
    figure = statistics.median(ratios)
    print(
        f"speed ratio (sqlite3 time / opslib time), median of {args.rounds} rounds: "
        f"{figure:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}; target >= {TARGET})"
    )
    print(result_line(BENCHMARK, figure, "ratio", f">= {TARGET}"))


if __name__ == "__main__":
    main()
