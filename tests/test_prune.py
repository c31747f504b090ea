"""Retention: what a rule lets go, what always stays, and the gate before removal."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from opslib._beforeimage import save_before_image
from opslib._cli import main
from opslib._errors import RunError
from opslib._prune import PRUNE_LOG, apply_prune, plan_prune
from opslib._records import list_records
from record_helpers import store

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
DAYS_90 = datetime.timedelta(days=90)


def day(days_ago: int) -> str:
    moment = NOW - datetime.timedelta(days=days_ago)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """api-down records 200, 120, 10 days old; queue-delays 150 and 100 days old."""
    root = tmp_path / "records"
    for record_id, age, runbook in [
        ("a200", 200, "api-down"),
        ("a120", 120, "api-down"),
        ("a10", 10, "api-down"),
        ("q150", 150, "queue-delays"),
        ("q100", 100, "queue-delays"),
    ]:
        store(root, record_id, day(age), runbook=runbook, verdict=None)
    return root


def removed(root: Path, **rule: object) -> list[str]:
    plan = plan_prune(root, now=NOW, **rule)  # type: ignore[arg-type]
    return [c.id for c in plan.remove]


def existing(root: Path) -> set[str]:
    return {p.stem for p in root.glob("*/*/*.json")}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"older_than": DAYS_90}, ["a200", "q150", "a120", "q100"]),
        ({"older_than": datetime.timedelta(days=130)}, ["a200", "q150"]),
        ({"keep": 1}, ["a200", "q150", "a120"]),
        ({"keep": 2}, ["a200"]),
        # both: only what both let go (q100 is old, but among the 1 newest)
        ({"older_than": DAYS_90, "keep": 1}, ["a200", "q150", "a120"]),
        ({"older_than": datetime.timedelta(days=300), "keep": 1}, []),
    ],
)
def test_plan_prune_lets_go_what_the_rule_names_oldest_first(
    archive: Path, rule: dict[str, object], expected: list[str]
) -> None:
    assert removed(archive, **rule) == expected


def test_plan_prune_changes_nothing(archive: Path) -> None:
    before = sorted(p for p in archive.rglob("*"))

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)
    result = apply_prune(plan)

    assert result.outcome == "dry-run"
    assert "'prune 4 records from " in result.detail
    assert sorted(p for p in archive.rglob("*")) == before


def test_plan_prune_needs_a_rule(archive: Path) -> None:
    with pytest.raises(RunError, match=r"give --older-than AGE .*--keep N, or both"):
        plan_prune(archive)


def test_a_report_goes_with_the_records_it_refers_to_when_all_are_due(
    archive: Path,
) -> None:
    store(
        archive,
        "report1",
        day(95),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["a200", "q150"],
    )

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)

    assert [c.id for c in plan.remove] == ["a200", "q150", "a120", "q100", "report1"]
    assert plan.referenced == ()


def test_a_report_citing_a_record_that_stays_keeps_itself_and_all_it_cites(
    archive: Path,
) -> None:
    # a10 is too young to go, so the incident's report and its evidence all stay
    store(
        archive,
        "report1",
        day(95),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["a200", "a10"],
    )

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)

    assert [c.id for c in plan.remove] == ["q150", "a120", "q100"]
    assert [c.id for c in plan.referenced] == ["a200", "report1"]
    assert "kept, a report and the records it refers to stay together: 2" in (
        plan.lines()
    )


def test_a_report_without_a_sidecar_keeps_the_records_it_refers_to(
    archive: Path,
) -> None:
    markdown = archive / "2026" / "07" / "plain.report.md"
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text("---\nreport: post-incident\nrefers_to:\n- q150\n---\n# r\n")

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)

    assert [c.id for c in plan.remove] == ["a200", "a120", "q100"]
    assert [c.id for c in plan.referenced] == ["q150"]


def test_a_report_another_report_keeps_keeps_what_it_refers_to(archive: Path) -> None:
    store(
        archive,
        "report1",
        day(100),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["a200"],
    )
    store(
        archive,
        "report2",
        day(5),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["report1"],
    )

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)

    assert [c.id for c in plan.referenced] == ["a200", "report1"]
    assert [c.id for c in plan.remove] == ["q150", "a120", "q100"]


def test_a_report_citing_an_unreadable_record_stays(archive: Path) -> None:
    sidecar = store(
        archive,
        "report1",
        day(95),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["a200", "torn"],
    )
    folder = archive / sidecar["record_path"].rsplit("/", 1)[0]
    (folder / "torn.json").write_text("{")

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)

    assert [c.id for c in plan.referenced] == ["a200", "report1"]


def test_a_report_whose_records_are_gone_already_follows_its_own_age(
    archive: Path,
) -> None:
    store(
        archive,
        "report1",
        day(95),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["pruned-long-ago"],
    )

    assert "report1" in removed(archive, older_than=DAYS_90)


@pytest.mark.parametrize(
    ("refs", "report_age"),
    [
        (["a200", "a10"], 95),
        (["a200", "q150"], 95),
        (["a200"], 5),
        (["q100", "a120"], 130),
    ],
)
def test_a_second_prune_with_the_same_rule_removes_nothing_more(
    archive: Path, refs: list[str], report_age: int
) -> None:
    store(
        archive,
        "report1",
        day(report_age),
        runbook="post-incident-report",
        verdict=None,
        refers_to=refs,
    )
    store(
        archive,
        "report2",
        day(91),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["report1", "q150"],
    )
    first = plan_prune(archive, older_than=DAYS_90, now=NOW)
    apply_prune(first, apply=True, confirm=first.confirm_phrase)

    second = plan_prune(archive, older_than=DAYS_90, now=NOW)

    assert first.remove
    assert second.remove == ()
    assert [c.id for c in second.referenced] == [c.id for c in first.referenced]


def test_prune_removes_a_report_with_its_markdown(archive: Path) -> None:
    sidecar = store(
        archive,
        "report1",
        day(100),
        runbook="post-incident-report",
        verdict=None,
        refers_to=["a200"],
    )
    folder = archive / sidecar["record_path"].rsplit("/", 1)[0]
    (folder / "report1.report.md").write_text("---\nrefers_to:\n- a200\n---\n")
    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)
    [candidate] = [c for c in plan.remove if c.id == "report1"]

    apply_prune(plan, apply=True, confirm=plan.confirm_phrase)

    assert sorted(p.name for p in candidate.files) == [
        "report1.ipynb",
        "report1.json",
        "report1.report.md",
    ]
    assert not any(p.exists() for p in candidate.files)
    assert "a200" not in existing(archive)
    assert "a10" in existing(archive)


def test_apply_prune_removes_files_and_index_rows_with_the_phrase(
    archive: Path,
) -> None:
    assert len(list_records(archive)) == 5
    plan = plan_prune(archive, keep=1, now=NOW)

    result = apply_prune(
        plan, apply=True, confirm=plan.confirm_phrase, operator="oncall-7"
    )

    assert result.outcome == "applied", result.detail
    assert existing(archive) == {"a10", "q100"}
    assert not list(archive.glob("*/*/a200.*"))
    assert [r["id"] for r in list_records(archive)] == ["a10", "q100"]
    [line] = (archive / PRUNE_LOG).read_text().splitlines()
    assert json.loads(line)["removed"] == ["a200", "q150", "a120"]
    assert json.loads(line)["operator"] == "oncall-7"


@pytest.mark.parametrize("confirm", ["", "prune 2 records", "yes"])
def test_apply_prune_refuses_without_the_exact_phrase(
    archive: Path, confirm: str
) -> None:
    plan = plan_prune(archive, keep=1, now=NOW)

    result = apply_prune(plan, apply=True, confirm=confirm)

    assert result.outcome == "refused"
    assert "nothing removed" in result.detail
    assert len(existing(archive)) == 5


def test_apply_prune_refuses_the_phrase_with_a_space_around(archive: Path) -> None:
    plan = plan_prune(archive, keep=1, now=NOW)

    result = apply_prune(plan, apply=True, confirm=plan.confirm_phrase + " ")

    assert result.outcome == "refused"
    assert len(existing(archive)) == 5


def test_apply_prune_refuses_a_plan_the_archive_outgrew(archive: Path) -> None:
    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)
    store(archive, "late", day(91), verdict=None)

    result = apply_prune(plan, apply=True, confirm=plan.confirm_phrase)

    assert result.outcome == "refused"
    assert "archive changed since the plan" in result.detail
    assert len(existing(archive)) == 6


def test_prune_removes_a_before_image_only_when_no_record_left_needs_it(
    archive: Path,
) -> None:
    folder = archive / "before-images"
    only_old = save_before_image({"rows": [{"id": "u-1"}]}, folder=folder)
    shared = save_before_image({"rows": [{"id": "u-2"}]}, folder=folder)
    unknown = save_before_image({"rows": [{"id": "u-3"}]}, folder=folder)
    plan_of = {"kind": "plan", "before": {"digest": only_old.stem}}
    result_of = {"kind": "result", "response": {"after_digest": shared.stem}}
    store(archive, "w-old", day(100), verdict=None, actions=[plan_of, result_of])
    store(
        archive,
        "w-new",
        day(5),
        verdict=None,
        actions=[{"kind": "plan", "before": {"digest": shared.stem}}],
    )

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)
    apply_prune(plan, apply=True, confirm=plan.confirm_phrase)

    assert plan.before_images == (only_old,)
    assert not only_old.exists()
    assert shared.exists() and unknown.exists()


def test_prune_leaves_an_unreadable_sidecar_alone(archive: Path) -> None:
    broken = archive / "2026" / "01" / "broken.json"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("{")

    plan = plan_prune(archive, older_than=DAYS_90, now=NOW)

    assert plan.left_alone == ("2026/01/broken.json",)
    assert "broken" not in [c.id for c in plan.remove]


def test_prune_command_is_a_dry_run_that_prints_the_phrase(archive: Path) -> None:
    result = CliRunner().invoke(
        main, ["prune", "--records", str(archive), "--keep", "2"]
    )

    assert result.exit_code == 0, result.output
    assert "would remove 1 records:\n  a200  api-down" in result.output
    assert (
        f"--keep 2 --apply --confirm 'prune 1 records from {archive}'" in result.output
    )
    assert len(existing(archive)) == 5


def test_prune_command_applies_with_the_phrase_and_refuses_without(
    archive: Path,
) -> None:
    runner = CliRunner()
    base = ["prune", "--records", str(archive), "--keep", "2", "--apply"]

    refused = runner.invoke(main, [*base, "--confirm", "prune 1 records"])
    applied = runner.invoke(
        main, [*base, "--confirm", f"prune 1 records from {archive}"]
    )

    assert refused.exit_code == 3 and "refused: confirm phrase" in refused.output
    assert applied.exit_code == 0, applied.output
    assert "applied: removed 1 records and 0 before-images" in applied.output
    assert existing(archive) == {"a120", "a10", "q150", "q100"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "give --older-than AGE"),
        (["--older-than", "90"], "--older-than: got '90', expected a whole number"),
        (["--older-than", "0d"], "--older-than: got '0d'"),
        (["--keep", "0"], "'--keep'"),
        # more days than a date can go back, and more than a timedelta holds
        (["--older-than", "99999999d"], "--older-than: got '99999999d', expected "),
        (["--older-than", "9" * 30 + "d"], "from 1m up to 36500d (such as 90d)"),
        (["--older-than", "36501d"], "--older-than: got '36501d'"),
        (["--older-than", "876001h"], "--older-than: got '876001h'"),
    ],
)
def test_prune_command_names_a_bad_option(
    archive: Path, options: list[str], message: str
) -> None:
    before = existing(archive)

    result = CliRunner().invoke(main, ["prune", "--records", str(archive), *options])

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)
    assert existing(archive) == before


def test_prune_command_takes_the_longest_age_it_names(archive: Path) -> None:
    result = CliRunner().invoke(
        main, ["prune", "--records", str(archive), "--older-than", "36500d"]
    )

    assert result.exit_code == 0, result.output
    assert "would remove 0 records" in result.output


@pytest.mark.parametrize("age", ["1m", "90m", "12h", "36h", "90d"])
def test_prune_command_prints_the_age_as_given(archive: Path, age: str) -> None:
    result = CliRunner().invoke(
        main, ["prune", "--records", str(archive), "--older-than", age]
    )

    assert result.exit_code == 0, result.output
    assert f"rule:    started more than {age} ago\n" in result.output


def test_plan_prune_refuses_an_age_beyond_the_range(archive: Path) -> None:
    with pytest.raises(RunError, match=r"--older-than: got 99999999d, expected "):
        plan_prune(archive, older_than=datetime.timedelta(days=99999999), now=NOW)


def test_prune_command_names_an_archive_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-archive"

    result = CliRunner().invoke(
        main, ["prune", "--records", str(missing), "--keep", "1"]
    )

    assert result.exit_code == 2
    assert f"--records: got {str(missing)!r}, expected an archive folder" in (
        result.output
    )
    assert not missing.exists()


@pytest.mark.parametrize(
    "confirm",
    [["--confirm", "wrong"], [], ["--confirm", ""]],
    ids=["wrong", "missing", "empty"],
)
def test_prune_command_apply_without_the_phrase_exits_at_the_gate(
    archive: Path, confirm: list[str]
) -> None:
    result = CliRunner().invoke(
        main, ["prune", "--records", str(archive), "--keep", "1", "--apply", *confirm]
    )

    assert result.exit_code == 3, result.output
    assert "refused: confirm phrase" in result.output
    assert "nothing removed" in result.output
    assert len(existing(archive)) == 5
