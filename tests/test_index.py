"""The archive's SQLite index: built from sidecars, searched by filters, rebuilt."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from opslib import _index
from opslib._cli import main
from opslib._errors import ParameterError
from opslib._index import INDEX_NAME, LEGACY_INDEX_NAME, rebuild
from opslib._recordquery import RecordQuery, build_query
from opslib._records import append_index, list_records, load_record
from record_helpers import store, verdict


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Five records of two runbooks, two environments and three days."""
    root = tmp_path / "records"
    store(
        root,
        "r1",
        "2026-11-30T23:59:59.000Z",
        incident_id="INC-1",
        verdict=verdict(
            "fail",
            "bad-deployment",
            "Version 12 answers 500",
            evidence=["rollback to 11", {"deployment": {"note": "hotfix overflow"}}],
        ),
    )
    store(
        root,
        "r2",
        "2026-12-01T00:00:00.000Z",
        environment="staging",
        incident_id="INC-1",
        verdict=verdict("ok", "healthy", "All routes answer"),
    )
    store(
        root,
        "r3",
        "2026-12-01T12:00:00.000Z",
        runbook="queue-delays",
        status="failed",
        verdict=None,
    )
    store(
        root,
        "r4",
        "2026-12-02T08:30:00.000Z",
        runbook="queue-delays",
        incident_id="INC-2",
        verdict=verdict(
            "fail",
            "dlq-failures",
            "Jobs fail to the dead letter queue",
            findings=[{"name": "dlq", "summary": "41 messages in analysis_dlq"}],
        ),
    )
    store(
        root,
        "r5",
        "2026-12-03T10:00:00.000+01:00",
        verdict=verdict("warn", "d1-unavailable", "D1 timed out twice"),
    )
    return root


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


@pytest.fixture(params=[True, False], ids=["fts5", "like"])
def text_search(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run a test with SQLite's FTS5, and with the LIKE fallback."""
    if request.param and not _index.fts5_available():
        pytest.skip("this Python's SQLite has no FTS5")
    _index.fts5_available.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_index, "fts5_available", lambda: request.param)
        yield request.param
    _index.fts5_available.cache_clear()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["r5", "r4", "r3", "r2", "r1"]),
        ({"limit": 2}, ["r5", "r4"]),
        ({"runbook": "queue-delays"}, ["r4", "r3"]),
        ({"runbook": "notebooks/incidents/queue-delays.ipynb"}, ["r4", "r3"]),
        ({"environment": "staging"}, ["r2"]),
        ({"status": "failed"}, ["r3"]),
        ({"status": "fail"}, ["r4", "r1"]),
        ({"cause": "healthy"}, ["r2"]),
        ({"incident_id": "INC-1"}, ["r2", "r1"]),
        ({"since": "2026-12-01"}, ["r5", "r4", "r3", "r2"]),
        ({"until": "2026-12-01"}, ["r3", "r2", "r1"]),
        ({"since": "2026-12-01T06:00Z", "until": "2026-12-02T08:30:00Z"}, ["r3"]),
        # 10:00 at +01:00 is 09:00 UTC
        ({"since": "2026-12-03T09:00:00Z"}, ["r5"]),
        ({"since": "2026-12-03T09:00:01Z"}, []),
        ({"runbook": "api-down", "environment": "sandbox", "status": "fail"}, ["r1"]),
    ],
)
def test_list_records_filters_newest_first(
    archive: Path, filters: dict[str, Any], expected: list[str]
) -> None:
    rest = {key: value for key, value in filters.items() if key != "limit"}
    limit = filters.get("limit", 20)
    assert ids(list_records(archive, RecordQuery(**rest), limit=limit)) == expected


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("answer", ["r2", "r1"]),  # "answers" and "answer": words starting so
        ("VERSION 12", ["r1"]),
        ("overflow", ["r1"]),  # nested in the evidence
        ("analysis_dlq", ["r4"]),  # a finding's summary
        ("dead letter", ["r4"]),
        ("letter dead", ["r4"]),
        ("dead 500", []),
        ("nothing-like-it", []),
    ],
)
def test_list_records_finds_words_in_the_findings(
    archive: Path, text_search: bool, words: str, expected: list[str]
) -> None:
    assert ids(list_records(archive, RecordQuery(words=words))) == expected


def test_list_records_combines_words_with_other_filters(
    archive: Path, text_search: bool
) -> None:
    query = RecordQuery(words="answer", environment="staging")
    assert ids(list_records(archive, query)) == ["r2"]
    with sqlite3.connect(archive / INDEX_NAME) as db:
        [(mode,)] = db.execute("SELECT value FROM meta WHERE key = 'text'")
    assert mode == ("fts5" if text_search else "like")


def test_list_records_treats_like_wildcards_as_plain_text(tmp_path: Path) -> None:
    store(tmp_path, "a", "2026-12-01T00:00:00Z", verdict=verdict("ok", "x", "50%"))
    store(tmp_path, "b", "2026-12-01T00:00:01Z", verdict=verdict("ok", "x", "5 0"))
    store(tmp_path, "c", "2026-12-01T00:00:02Z", verdict=verdict("ok", "x", "a_b"))
    store(tmp_path, "d", "2026-12-01T00:00:03Z", verdict=verdict("ok", "x", "axb"))

    assert ids(list_records(tmp_path, RecordQuery(words="a_b"))) == ["c"]


@pytest.fixture
def pasted(tmp_path: Path) -> Path:
    """Findings holding the characters people paste from error messages."""
    texts = {
        "quote": 'the probe said "upstream timeout" twice',
        "star": "route /api/* answers 404",
        "percent": "50% of requests failed",
        "paren": "the script threw (undefined)",
        "dash": "deploy v12-rc1 went live",
        "underscore": "table analysis_dlq grows",
        "sql": "the log shows '; DROP TABLE users; -- from a scanner",
        "keywords": "NEAR the edge OR AND behind",
        "plain": "upstream answers slowly; a timeout of 30 s",
    }
    for second, (record_id, text) in enumerate(texts.items()):
        started = f"2026-12-01T00:00:{second:02d}Z"
        store(tmp_path, record_id, started, verdict=verdict("warn", "x", text))
    return tmp_path


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ('"', ["quote"]),
        ('"upstream', ["quote"]),
        ('timeout"', ["quote"]),
        ("*", ["star"]),
        ("/api/*", ["star"]),
        ("%", ["percent"]),
        ("50%", ["percent"]),
        ("(", ["paren"]),
        ("(undefined)", ["paren"]),
        ("-", ["sql", "dash"]),
        ("v12-rc1", ["dash"]),
        ("v12-rc2", []),
        ("_", ["underscore"]),
        ("analysis_dlq", ["underscore"]),
        ("analysis dlq", ["underscore"]),
        ("'; DROP TABLE", ["sql"]),
        ("--", ["sql"]),
        ("NEAR", ["keywords"]),
        ("OR", ["keywords"]),
        ("AND", ["keywords"]),
        ("near edge", ["keywords"]),
        ("NEAR(the edge)", []),
        ("upstream timeout", ["plain", "quote"]),
    ],
)
def test_words_are_searched_as_text_whatever_they_hold(
    pasted: Path, text_search: bool, words: str, expected: list[str]
) -> None:
    assert ids(list_records(pasted, RecordQuery(words=words))) == expected


def test_records_command_searches_pasted_error_text(pasted: Path) -> None:
    result = CliRunner().invoke(
        main, ["records", "--records", str(pasted), "--words", '"upstream timeout"']
    )

    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == ["quote"]


@pytest.mark.parametrize("words", ["", "   ", "a\tb", "x" * 201])
def test_words_refused_only_when_empty_too_long_or_not_one_line(
    pasted: Path, words: str
) -> None:
    with pytest.raises(ParameterError, match=r"words: got .*, expected one or more"):
        list_records(pasted, RecordQuery(words=words))


def test_list_records_names_every_bad_filter(archive: Path) -> None:
    with pytest.raises(ParameterError) as caught:
        list_records(
            archive,
            RecordQuery(
                status="broken",
                since="yesterday",
                until="2026-02-30",
                cause="Bad Deployment",
                incident_id="",
                words="disk\nfull",
            ),
        )

    assert caught.value.problems == [
        "since: got 'yesterday', expected an ISO date like 2026-12-04, or a time "
        "like 2026-12-04T17:00Z",
        "until: got '2026-02-30', expected an ISO date like 2026-12-04, or a time "
        "like 2026-12-04T17:00Z",
        "cause: got 'Bad Deployment', expected a cause such as bad-deployment",
        "status: got 'broken', expected one of succeeded, failed, aborted, ok, "
        "warn, fail, unknown, manual",
        "incident_id: got '', expected 1-64 letters, digits, '.', '_' or '-' "
        "(such as INC-42)",
        "words: got 'disk\\nfull', expected one or more words separated by "
        "spaces, at most 200 characters on one line without control characters "
        "(any other character is searched as written)",
    ]


def test_list_records_refuses_a_range_that_ends_before_it_starts(
    archive: Path,
) -> None:
    with pytest.raises(ParameterError, match=r"until: got '2026-12-01', expected a "):
        list_records(archive, RecordQuery(since="2026-12-02", until="2026-12-01"))


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"cause": "bad-deploymnt"}, r"did you mean bad-deployment\?"),
        ({"runbook": "queue-delay"}, r"did you mean queue-delays"),
        ({"environment": "stagin"}, r"did you mean staging"),
    ],
)
def test_a_typed_name_unknown_to_the_archive_gets_the_name_meant(
    archive: Path, filters: dict[str, str], message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        build_query(archive, RecordQuery(**filters), check_names=True)
    assert list_records(archive, RecordQuery(**filters)) == []


def test_a_name_of_the_project_is_known_though_the_archive_lacks_it(
    archive: Path,
) -> None:
    query = build_query(
        archive,
        RecordQuery(runbook="restore", cause="backup-missing"),
        check_names=True,
    )

    assert (query.runbook, query.cause) == ("restore", "backup-missing")


def test_records_command_filters_and_names_the_option_of_a_bad_value(
    archive: Path,
) -> None:
    runner = CliRunner()

    good = runner.invoke(
        main,
        ["records", "--records", str(archive), "--cause", "dlq-failures"],
    )
    bad = runner.invoke(
        main,
        ["records", "--records", str(archive), "--since", "12/01/2026"],
    )
    none = runner.invoke(
        main,
        ["records", "--records", str(archive), "--words", "unheard"],
    )

    assert good.exit_code == 0, good.output
    assert [line.split()[0] for line in good.output.splitlines()] == ["r4"]
    assert bad.exit_code == 2
    assert "--since: got '12/01/2026', expected an ISO date" in bad.output
    assert none.exit_code == 0 and "match" in none.output
    typo = runner.invoke(
        main, ["records", "--records", str(archive), "--env", "stagin"]
    )
    assert typo.exit_code == 2
    assert "--env: got 'stagin', expected an environment name" in typo.output
    assert "did you mean staging?" in typo.output


def test_records_command_takes_a_notebook_by_its_absolute_path(
    archive: Path, tmp_path: Path
) -> None:
    from opslib._notebook import find_project_root

    notebook = find_project_root() / "notebooks" / "incidents" / "01-api-down.ipynb"
    outside = tmp_path / "drills" / "my drill.ipynb"
    outside.parent.mkdir()
    outside.write_text("{}")
    store(
        archive,
        "n1",
        "2026-12-04T09:00:00Z",
        notebook="notebooks/incidents/01-api-down.ipynb",
    )
    store(archive, "n2", "2026-12-04T10:00:00Z", notebook=outside.as_posix())
    runner = CliRunner()

    def listed(runbook: str) -> list[str]:
        result = runner.invoke(
            main, ["records", "--records", str(archive), "--runbook", runbook]
        )
        assert result.exit_code == 0, result.output
        return [line.split()[0] for line in result.output.splitlines()]

    assert notebook.is_absolute() and notebook.is_file()
    assert listed(str(notebook)) == ["n1"]
    assert listed(str(outside)) == ["n2"]
    missing = runner.invoke(
        main,
        ["records", "--records", str(archive), "--runbook", "/no/such/x.ipynb"],
    )
    assert missing.exit_code == 2
    assert "--runbook: got '/no/such/x.ipynb', expected a runbook name" in (
        missing.output
    )


@pytest.mark.parametrize("incident", ["x y", "INC 42", "-INC", "a" * 65])
def test_records_command_refuses_an_incident_id_a_run_could_not_have(
    archive: Path, incident: str
) -> None:
    result = CliRunner().invoke(
        main, ["records", "--records", str(archive), "--incident", incident]
    )

    assert result.exit_code == 2
    assert (
        f"--incident: got {incident!r}, expected 1-64 letters, digits, '.', '_' "
        "or '-' (such as INC-42)"
    ) in result.output


def test_index_is_built_from_the_sidecars_when_missing(archive: Path) -> None:
    assert not (archive / INDEX_NAME).exists()

    assert len(list_records(archive)) == 5
    with sqlite3.connect(archive / INDEX_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_index_row_written_by_a_run_lost_is_back_after_reindex(archive: Path) -> None:
    list_records(archive)
    _index.remove_rows(archive, ["r4"])

    assert "r4" not in ids(list_records(archive))
    assert load_record(archive, "r4")["runbook"] == "queue-delays"

    report = rebuild(archive)

    assert report.indexed == 5
    assert "r4" in ids(list_records(archive))


def test_reindex_drops_rows_of_records_that_are_gone(archive: Path) -> None:
    list_records(archive)
    (archive / "2026" / "12" / "r2.json").unlink()

    report = rebuild(archive)

    assert report.dropped == 1
    assert "r2" not in ids(list_records(archive))


def test_a_damaged_index_is_kept_aside_and_rebuilt(
    archive: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (archive / INDEX_NAME).write_bytes(b"this is no database" * 100)

    with caplog.at_level(logging.WARNING, logger="opslib._index"):
        rows = list_records(archive)

    assert len(rows) == 5
    kept = [p.name for p in archive.glob(f"{INDEX_NAME}.damaged-*")]
    assert len(kept) == 1
    assert (archive / kept[0]).read_bytes().startswith(b"this is no database")
    assert "index damaged" in caplog.text


def test_reindex_migrates_an_archive_with_only_index_jsonl(
    archive: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [
        json.dumps({"id": "r1", "runbook": "api-down"}),
        '{"id": "torn',
        "",
        json.dumps({"id": "vanished", "runbook": "api-down"}),
        json.dumps({"id": "r2", "runbook": "api-down"}),
    ]
    (archive / LEGACY_INDEX_NAME).write_text("\n".join(lines) + "\n")

    with caplog.at_level(logging.WARNING, logger="opslib._index"):
        result = CliRunner().invoke(main, ["reindex", "--records", str(archive)])

    assert result.exit_code == 0, result.output
    assert f"indexed 5 records in {archive / INDEX_NAME}" in result.output
    assert "migrated from index.jsonl (3 lines" in result.output
    assert "1 index.jsonl lines name a record without a sidecar" in result.output
    assert [r.getMessage().split(" line=")[1] for r in caplog.records] == ["2"]
    assert (archive / LEGACY_INDEX_NAME).read_text() == "\n".join(lines) + "\n"
    assert len(list_records(archive)) == 5


# Ways an index can be SQLite and still not be an index of this version.
WRONG_LAYOUTS = {
    "dropped text table": "DROP TABLE records_text",
    "missing column": "ALTER TABLE records DROP COLUMN gate",
    "extra column": "ALTER TABLE records ADD COLUMN colour TEXT",
    "other user_version": "PRAGMA user_version = 7",
}


def spoil(archive: Path, statement: str) -> None:
    with sqlite3.connect(archive / INDEX_NAME) as db:
        db.execute(statement)


@pytest.mark.parametrize("statement", WRONG_LAYOUTS.values(), ids=WRONG_LAYOUTS)
def test_reindex_replaces_an_index_of_another_layout(
    archive: Path, statement: str
) -> None:
    list_records(archive)
    if "records_text" in statement and not _index.fts5_available():
        statement = "DROP TABLE meta"
    spoil(archive, statement)

    result = CliRunner().invoke(main, ["reindex", "--records", str(archive)])

    assert result.exit_code == 0, result.output
    kept = [p.name for p in archive.glob(f"{INDEX_NAME}.damaged-*[0-9TZ]")]
    assert len(kept) == 1
    assert f"the old index was damaged; kept as {kept[0]}" in result.output
    assert ids(list_records(archive, RecordQuery(words="dead letter"))) == ["r4"]


@pytest.mark.parametrize("statement", WRONG_LAYOUTS.values(), ids=WRONG_LAYOUTS)
def test_a_search_replaces_an_index_of_another_layout(
    archive: Path, statement: str, caplog: pytest.LogCaptureFixture
) -> None:
    list_records(archive)
    spoil(archive, statement)

    with caplog.at_level(logging.WARNING, logger="opslib._index"):
        found = ids(list_records(archive, RecordQuery(words="dead letter")))

    assert found == ["r4"]
    assert len(list(archive.glob(f"{INDEX_NAME}.damaged-*[0-9TZ]"))) == 1
    assert "index damaged" in caplog.text
    with sqlite3.connect(archive / INDEX_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (_index.USER_VERSION,)


def test_two_damaged_indexes_within_a_second_are_both_kept(archive: Path) -> None:
    for content in (b"first garbage" * 100, b"second garbage" * 100):
        (archive / INDEX_NAME).write_bytes(content)
        rebuild(archive)

    kept = sorted(archive.glob(f"{INDEX_NAME}.damaged-*"))
    assert sorted(p.read_bytes()[:6] for p in kept) == [b"first ", b"second"]


def test_reindex_builds_a_new_file_and_keeps_a_sound_one_nowhere(
    archive: Path,
) -> None:
    list_records(archive)
    before = (archive / INDEX_NAME).stat().st_ino

    report = rebuild(archive)

    assert report.replaced_corrupt is None
    assert (archive / INDEX_NAME).stat().st_ino != before
    assert sorted(p.name for p in archive.glob(f"{INDEX_NAME}*")) == [INDEX_NAME]
    assert len(list_records(archive)) == 5


def test_an_index_made_before_user_version_was_set_is_still_used(
    archive: Path,
) -> None:
    list_records(archive)
    spoil(archive, "PRAGMA user_version = 0")
    _index.remove_rows(archive, ["r4"])

    assert "r4" not in ids(list_records(archive))
    assert not list(archive.glob(f"{INDEX_NAME}.damaged-*"))


def test_reindex_leaves_out_an_unreadable_sidecar(archive: Path) -> None:
    broken = archive / "2026" / "12" / "broken.json"
    broken.write_text("{")

    report = rebuild(archive)

    assert report.indexed == 5
    assert report.unreadable == ["2026/12/broken.json"]


def test_reindex_command_refuses_a_folder_that_is_not_there(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["reindex", "--records", str(tmp_path / "nothing")]
    )

    assert result.exit_code == 2
    assert "expected an archive folder" in result.output


def test_append_index_replaces_the_row_of_the_same_record(tmp_path: Path) -> None:
    sidecar = store(tmp_path, "a", "2026-12-01T00:00:00Z", verdict=None)
    append_index(tmp_path, sidecar)
    append_index(tmp_path, {**sidecar, "status": "failed"})

    assert [(r["id"], r["status"]) for r in list_records(tmp_path)] == [("a", "failed")]


def test_records_command_lists_a_record_without_status_or_environment(
    tmp_path: Path,
) -> None:
    append_index(tmp_path, {"id": "bare", "started_at": "2026-12-01T00:00:00Z"})

    result = CliRunner().invoke(main, ["records", "--records", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert result.output.split() == ["bare", "-", "-", "-", "-"]


def test_every_filter_of_a_query_is_an_option_of_the_records_command() -> None:
    from opslib._cli import records
    from opslib._recordquery import OPTION_LABELS

    options = {name for param in records.params for name in param.opts}

    assert set(OPTION_LABELS) == set(RecordQuery.__dataclass_fields__)
    assert set(OPTION_LABELS.values()) <= options
