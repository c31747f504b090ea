"""The database and undo procedures end to end on the sandbox: reads, a gated write
(dry run, refused, applied with its before-image in the record and a follow-up
check) and ``runbook undo`` restoring the table exactly."""

import json

import pytest
from procedure_helpers import result_of, run

import opslib
from opslib import load_environment, run_notebook

TEST_USERS = "email LIKE 'prodtest%@example.com'"
CLEANUP = {"incident_id": "CHG-1", "cleanup_test_accounts": True}
CASCADE_TABLES = (
    "users",
    "manuscripts",
    "subscriptions",
    "usage_tracking",
    "payment_history",
    "audit_log",
    "sessions",
    "verification_tokens",
)


def query(env, sql, params=()):
    client = opslib.CloudflareClient(env)
    try:
        return client.d1_query(sql, list(params), read_only=False)[0]["results"]
    finally:
        client.close()


def dump(env, tables=CASCADE_TABLES):
    """Every row of the tables, each value as SQLite's literal (type and bytes)."""
    found = {}
    for table in tables:
        columns = [r["name"] for r in query(env, f"PRAGMA table_info({table})")]
        quoted = " || '|' || ".join(f"quote({c})" for c in columns)
        rows = query(env, f"SELECT {quoted} AS r FROM {table} ORDER BY 1")
        found[table] = [row["r"] for row in rows]
    return found


@pytest.fixture
def env(sandbox):
    sandbox.reset("healthy")
    return load_environment("sandbox")


def test_read_only_run_shows_counts_and_plans_nothing(env, tmp_path):
    before = dump(env)
    record = run("database", tmp_path, incident_id="CHG-0")
    assert record.verdict["cause"] == "read-only"
    counts = record.verdict["findings"][0]["evidence"][0]
    assert counts["total"] == query(env, "SELECT COUNT(*) AS n FROM users")[0]["n"]
    assert f"total {counts['total']}" in record.verdict["findings"][0]["summary"]
    assert result_of(record)["outcome"] == "not-needed"
    assert dump(env) == before


def test_cleanup_dry_run_changes_nothing_and_prints_the_phrase(env, tmp_path):
    before = dump(env)
    record = run("database", tmp_path, **CLEANUP)
    assert record.verdict["cause"] == "write-planned"
    assert result_of(record)["outcome"] == "dry-run"
    plan = result_of(record)["plan"]
    cascade = plan["before"]["cascade"]
    total = sum(len(group["rows"]) for group in cascade)
    phrase = record.verdict["gated_step"]["confirm"]
    assert phrase.startswith(f"delete 1 row of users and {total} cascaded rows (")
    assert all(f"{g['table']} {len(g['rows'])}" in phrase for g in cascade)
    assert phrase == plan["confirm_phrase"]
    command = record.verdict["gated_step"]["command"]
    assert "-p incident_id CHG-1 -p cleanup_test_accounts true" in command
    assert dump(env) == before


def test_cleanup_with_a_wrong_phrase_is_refused(env, tmp_path):
    before = dump(env)
    record = run("database", tmp_path, **CLEANUP, apply=True, confirm="delete them")
    assert result_of(record)["outcome"] == "refused"
    assert dump(env) == before


def test_cleanup_keeps_the_account_runbooks_log_in_as(env, tmp_path):
    record = run("database", tmp_path, **CLEANUP)
    plan = result_of(record)["plan"]
    assert len(plan["before"]["rows"]) == 1
    assert env.test_account_email not in json.dumps(plan)  # scrubbed or absent
    assert (
        query(
            env,
            "SELECT COUNT(*) AS n FROM users WHERE email = ?",
            [env.test_account_email],
        )[0]["n"]
        == 1
    )


def test_applied_cleanup_then_undo_restores_every_row_exactly(env, tmp_path):
    before = dump(env)
    phrase = run("database", tmp_path, **CLEANUP).verdict["gated_step"]["confirm"]
    applied = run("database", tmp_path, **CLEANUP, apply=True, confirm=phrase)
    result = result_of(applied)
    assert result["outcome"] == "applied"
    assert result["after"]["status"] == "ok"
    assert result["plan"]["before"]["rows"] and result["plan"]["before"]["digest"]
    assert applied.verdict["next_action"].startswith("to undo: runbook undo <this")
    assert dump(env) != before

    dry = run("undo", tmp_path, record_id=applied.id)
    assert result_of(dry)["outcome"] == "dry-run"
    assert dump(env) != before
    undo_phrase = dry.verdict["gated_step"]["confirm"]
    assert undo_phrase == f"undo d1-write of record {applied.id} in sandbox"

    undone = run(
        "undo", tmp_path, record_id=applied.id, apply=True, confirm=undo_phrase
    )
    assert result_of(undone)["outcome"] == "applied"
    assert result_of(undone)["after"]["status"] == "ok"
    assert dump(env) == before

    hashes = [
        r["password_hash"]
        for r in query(env, f"SELECT password_hash FROM users WHERE {TEST_USERS}")
    ]
    records = [
        p for p in tmp_path.rglob("*") if p.is_file() and "before-images" not in p.parts
    ]
    assert records and hashes
    for path in records:
        text = path.read_text(errors="replace")
        assert not [h for h in hashes if h in text], path


def test_undo_is_refused_when_the_rows_changed_since(env, tmp_path):
    sql = "UPDATE users SET role = 'publisher' WHERE email = 'prodtest2@example.com'"
    phrase = opslib.plan_d1_write(env, sql).confirm_phrase
    assert phrase.startswith("update 1 row of users [")
    applied = run(
        "database", tmp_path, incident_id="CHG-2", sql=sql, apply=True, confirm=phrase
    )
    assert result_of(applied)["outcome"] == "applied"
    query(env, "UPDATE users SET role = 'admin' WHERE email = 'prodtest2@example.com'")
    undo_phrase = f"undo d1-write of record {applied.id} in sandbox"
    undone = run(
        "undo", tmp_path, record_id=applied.id, apply=True, confirm=undo_phrase
    )
    assert result_of(undone)["outcome"] == "refused"
    assert query(
        env, "SELECT role FROM users WHERE email = 'prodtest2@example.com'"
    ) == [{"role": "admin"}]


def test_undo_of_an_unknown_record_plans_nothing(env, tmp_path):
    record = run("undo", tmp_path, record_id="19990101T0000")
    assert record.verdict["cause"] == "inconclusive"
    assert "19990101T0000" in record.verdict["summary"]


def test_a_refused_sql_stops_before_the_kernel(env, tmp_path):
    with pytest.raises(opslib.ParameterError, match="sql: got .* without WHERE"):
        run_notebook(
            "database",
            parameters={"sql": "DELETE FROM users"},
            environment="sandbox",
            records_dir=tmp_path,
        )
