"""Benchmark: restoring a platform dump with opslib against the `sqlite3` shell.

One dump in the backup worker's format (users and manuscripts, a share of the
titles with semicolons, quotes and line breaks in them) is written to a temp
folder. opslib restores it into a fresh file and runs its row-count and
foreign-key checks; the `sqlite3` shell reads the same SQL into another fresh file
and then runs the same two checks as SQL. Runs alternate; the script prints the
median wall time of each and opslib's speed as a share of the shell's (shell
time over opslib time). Target: at least 0.8.

Usage: .venv/bin/python bench/restore_vs_sqlite3.py [--rows N] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQLITE3 = "/usr/bin/sqlite3"
USERS_PER_THOUSAND = 5
CHECKS_SQL = """
SELECT 'manuscripts', COUNT(*) FROM manuscripts;
SELECT 'users', COUNT(*) FROM users;
SELECT COUNT(*) FROM manuscripts WHERE user_id IS NOT NULL
    AND user_id NOT IN (SELECT id FROM users);
SELECT COUNT(*) FROM users WHERE id IS NULL;
SELECT COUNT(*) FROM manuscripts WHERE id IS NULL;
"""
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


def write_dump(path: Path, rows: int) -> None:
    """Write a dump of ``rows`` rows in the worker's layout."""
    from opslib._dump import (
        dump_footer,
        dump_header,
        insert_line,
        insert_prefix,
        table_opening,
    )

    users = max(1, rows * USERS_PER_THOUSAND // 1000)
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


def run_opslib(dump: Path, target: Path) -> float:
    """Restore and check with opslib; return the wall time."""
    from opslib._restore import restore_dump
    from opslib._restorecheck import check_integrity, check_restore_counts

    started = time.perf_counter()
    report = restore_dump(dump, target, views="")
    counts = check_restore_counts(report)
    integrity = check_integrity(target)
    elapsed = time.perf_counter() - started
    if not (counts.is_ok and integrity.is_ok):
        raise SystemExit(f"opslib checks failed: {counts} / {integrity}")
    return elapsed


def run_shell(dump: Path, target: Path) -> float:
    """Restore and check with the sqlite3 shell; return the wall time."""
    started = time.perf_counter()
    with open(dump, "rb") as source:
        subprocess.run([SQLITE3, str(target)], stdin=source, check=True)
    checked = subprocess.run(
        [SQLITE3, str(target)],
        input=CHECKS_SQL,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    if checked.stdout.splitlines()[2:] != ["0", "0", "0"]:
        raise SystemExit(f"sqlite3 checks found problems: {checked.stdout!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows (default 1e6)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    if shutil.which(SQLITE3) is None:
        raise SystemExit(
            f"{SQLITE3} is missing: install the sqlite3 shell (apt-get install "
            "sqlite3) to compare against it; nothing was measured"
        )

    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="opslib-restore-bench-") as folder:
        dump = Path(folder) / "dump.sql"
        write_dump(dump, args.rows)
        size = dump.stat().st_size
        print(f"dump: {args.rows:,} rows, {size / 1e6:.1f} MB")
        opslib_times, shell_times = [], []
        for run in range(args.runs):
            for name, runner, times in (
                ("opslib", run_opslib, opslib_times),
                ("sqlite3", run_shell, shell_times),
            ):
                target = Path(folder) / f"{name}-{run}.sqlite"
                times.append(runner(dump, target))
                target.unlink()
                print(f"  run {run + 1} {name:8} {times[-1]:.2f} s")
    opslib_median = statistics.median(opslib_times)
    shell_median = statistics.median(shell_times)
    print(f"opslib restore+checks  median {opslib_median:.2f} s")
    print(f"sqlite3 shell          median {shell_median:.2f} s")
    print(
        f"speed ratio (sqlite3 / opslib): {shell_median / opslib_median:.2f} (target >= 0.8)"
    )
    from _protocol import result_line

    print(
        result_line(
            "restore_vs_sqlite3", shell_median / opslib_median, "ratio", ">= 0.8"
        )
    )


if __name__ == "__main__":
    main()
