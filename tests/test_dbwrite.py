"""Gated D1 writes on the sandbox: preview, guard, before-image, refusals, follow-up."""

import dataclasses
import json
import os

import pytest

import opslib
from opslib import apply_action, load_environment
from opslib._beforeimage import REDACTED, image_digest, load_before_image
from opslib._dbwrite import check_d1_write, guarded_sql, plan_d1_write, plan_digest
from opslib._sqlguard import classify_sql

TEST_USERS = "email LIKE 'prodtest%@example.com'"


@pytest.fixture
def env(sandbox, tmp_path, monkeypatch):
    sandbox.reset("healthy")
    monkeypatch.setenv("RUNBOOK_RECORDS", str(tmp_path / "records"))
    return load_environment("sandbox")


def query(env, sql, params=()):
    client = opslib.CloudflareClient(env)
    try:
        return client.d1_query(sql, list(params), read_only=False)[0]
    finally:
        client.close()


def dump(env, table):
    """Every row of a table, each value as SQLite's own literal (type and bytes)."""
    columns = [r["name"] for r in query(env, f"PRAGMA table_info({table})")["results"]]
    quoted = " || '|' || ".join(f"quote({c})" for c in columns)
    rows = query(env, f"SELECT {quoted} AS r FROM {table} ORDER BY rowid")["results"]
    return [row["r"] for row in rows]


def _apply(plan, env, **kwargs):
    return apply_action(
        plan, environment=env, verify=lambda: check_d1_write(env, plan), **kwargs
    )


def test_update_plan_previews_whole_rows_and_guards_the_count(env):
    plan = plan_d1_write(env, f"UPDATE users SET email_verified = 0 WHERE {TEST_USERS}")
    rows = plan.before["rows"]
    assert plan.action == "d1-write"
    assert plan.before["expected_rows"] == len(rows) == 2
    assert plan.before["key"] == ["id"]
    assert {"id", "email", "password_hash", "created_at"} <= set(rows[0])
    assert "(SELECT COUNT(*) FROM" in plan.changes[0]["sql"]
    assert plan.changes[0]["sql"].endswith(") = 2")
    assert plan.confirm_phrase.startswith("update 2 rows of users [")
    assert plan.confirm_phrase.endswith("] in sandbox")
    assert plan.before["digest"] == image_digest(plan.private["image"])


def test_dry_run_and_wrong_phrase_change_nothing(env):
    before = dump(env, "users")
    plan = plan_d1_write(env, f"UPDATE users SET role = 'admin' WHERE {TEST_USERS}")
    dry = _apply(plan, env, apply=False, confirm=plan.confirm_phrase)
    wrong = _apply(plan, env, apply=True, confirm="update 2 rows of users")
    assert (dry.outcome, wrong.outcome) == ("dry-run", "refused")
    assert dump(env, "users") == before


def test_applied_update_saves_the_before_image_and_checks_after(env, tmp_path):
    plan = plan_d1_write(env, f"UPDATE users SET role = 'publisher' WHERE {TEST_USERS}")
    result = _apply(plan, env, apply=True, confirm=plan.confirm_phrase)
    assert result.outcome == "applied"
    assert result.response["changes"] == 2
    assert {r["role"] for r in result.response["after_rows"]} == {"publisher"}
    assert result.after is not None and result.after.is_ok
    saved = tmp_path / "records" / "before-images" / f"{plan.before['digest']}.json"
    assert oct(os.stat(saved).st_mode & 0o777) == "0o600"
    assert (
        load_before_image(plan.before["digest"])["rows"]
        == plan.private["image"]["rows"]
    )
    assert result.to_dict()["plan"]["before"]["rows"] == plan.before["rows"]


def test_password_hashes_stay_out_of_plan_result_and_check(env):
    plan = plan_d1_write(env, f"UPDATE users SET role = 'publisher' WHERE {TEST_USERS}")
    hashes = [r["password_hash"] for r in plan.private["image"]["rows"]]
    assert all(len(h) == 96 for h in hashes)
    assert {r["password_hash"] for r in plan.before["rows"]} == {REDACTED}
    result = _apply(plan, env, apply=True, confirm=plan.confirm_phrase)
    shown = json.dumps(result.to_dict()) + str(plan) + repr(plan)
    assert result.outcome == "applied"
    assert not [h for h in hashes if h in shown]
    assert (
        load_before_image(plan.before["digest"])["rows"][0]["password_hash"] in hashes
    )


def test_a_plan_without_its_private_before_image_is_refused(env):
    plan = plan_d1_write(env, f"UPDATE users SET role = 'admin' WHERE {TEST_USERS}")
    bare = dataclasses.replace(plan, private={})
    result = _apply(bare, env, apply=True, confirm=plan.confirm_phrase)
    assert result.outcome == "refused"
    assert "no before-image" in result.detail


def test_a_plan_gone_stale_is_refused_and_changes_nothing(env):
    plan = plan_d1_write(env, f"UPDATE users SET role = 'admin' WHERE {TEST_USERS}")
    query(env, "UPDATE users SET last_login = 1 WHERE email = 'prodtest1@example.com'")
    before = dump(env, "users")
    result = _apply(plan, env, apply=True, confirm=plan.confirm_phrase)
    assert result.outcome == "refused"
    assert "changed since the plan" in result.detail
    assert dump(env, "users") == before


def test_the_guard_keeps_every_row_when_the_count_differs(env):
    statement = classify_sql(f"UPDATE users SET role = 'admin' WHERE {TEST_USERS}")
    before = dump(env, "users")
    answer = query(env, guarded_sql(statement, 3))
    assert answer["meta"]["changes"] == 0
    assert dump(env, "users") == before
    assert query(env, guarded_sql(statement, 2))["meta"]["changes"] == 2


def test_delete_follows_foreign_keys_into_the_before_image(env):
    plan = plan_d1_write(env, f"DELETE FROM users WHERE {TEST_USERS}")
    cascade = {c["table"]: c for c in plan.before["cascade"]}
    assert cascade["manuscripts"]["effect"] == "deleted"
    assert len(cascade["manuscripts"]["rows"]) == len(
        query(
            env,
            "SELECT id FROM manuscripts WHERE user_id IN (SELECT id FROM users "
            f"WHERE {TEST_USERS})",
        )["results"]
    )
    assert "foreign keys also" in plan.summary
    result = _apply(plan, env, apply=True, confirm=plan.confirm_phrase)
    assert result.outcome == "applied"
    assert result.after.is_ok
    assert query(env, f"SELECT COUNT(*) AS n FROM users WHERE {TEST_USERS}")[
        "results"
    ] == [{"n": 0}]


def test_insert_needs_new_keys_and_is_checked_after(env):
    sql = (
        "INSERT INTO backup_logs (id, filename, status, duration) "
        "VALUES ('bk-test-1', 'manual.sql.gz', 'success', 12)"
    )
    plan = plan_d1_write(env, sql)
    if plan.is_noop:
        pytest.fail(plan.summary)
    result = _apply(plan, env, apply=True, confirm=plan.confirm_phrase)
    assert result.outcome == "applied"
    again = plan_d1_write(env, sql)
    assert again.is_noop and "exist already" in again.summary


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("UPDATE users SET role = 'x' WHERE email = 'nobody@example.com'", "no row"),
        ("UPDATE users SET id = 'x' WHERE " + TEST_USERS, "primary key"),
        ("UPDATE users SET role = 'x' WHERE role = 'author'", "more than max_rows=5"),
        ("UPDATE nosuchtable SET a = 1 WHERE b = 2", "does not exist"),
    ],
)
def test_writes_that_cannot_be_previewed_safely_get_no_plan(env, sql, why):
    plan = plan_d1_write(env, sql, max_rows=5)
    assert plan.is_noop
    assert why in plan.summary


def test_create_index_is_planned_with_the_index_list_as_before_image(env):
    plan = plan_d1_write(env, "CREATE INDEX idx_users_last_login ON users(last_login)")
    assert "idx_users_email" in plan.before["indexes"]
    assert (
        plan.confirm_phrase == "create index idx_users_last_login on users in sandbox"
    )
    result = _apply(plan, env, apply=True, confirm=plan.confirm_phrase)
    assert result.outcome == "applied" and result.after.is_ok
    assert json.dumps(result.to_dict())


def test_the_phrase_of_one_update_does_not_apply_another_of_as_many_rows(env):
    first = plan_d1_write(
        env, "UPDATE users SET role = 'publisher' WHERE email = 'prodtest2@example.com'"
    )
    other = plan_d1_write(
        env, "UPDATE users SET role = 'admin' WHERE email = 'prodtest2@example.com'"
    )
    assert first.confirm_phrase.startswith("update 1 row of users [")
    assert first.confirm_phrase != other.confirm_phrase
    before = dump(env, "users")
    result = _apply(other, env, apply=True, confirm=first.confirm_phrase)
    assert result.outcome == "refused"
    assert dump(env, "users") == before


def test_the_phrase_changes_when_other_rows_match_in_as_many(env):
    sql = f"UPDATE users SET email_verified = 0 WHERE {TEST_USERS}"
    planned = plan_d1_write(env, sql)
    gone = planned.before["rows"][0]["id"]
    query(env, "UPDATE users SET email = 'left@example.org' WHERE id = ?", [gone])
    query(
        env,
        "INSERT INTO users (id, email, password_hash, created_at) "
        "VALUES ('u-extra', 'prodtest8@example.com', 'x', 1)",
    )
    again = plan_d1_write(env, sql)
    assert again.before["expected_rows"] == planned.before["expected_rows"] == 2
    assert again.confirm_phrase != planned.confirm_phrase
    result = _apply(again, env, apply=True, confirm=planned.confirm_phrase)
    assert result.outcome == "refused"


def test_a_delete_phrase_names_every_cascaded_row(env):
    plan = plan_d1_write(env, f"DELETE FROM users WHERE {TEST_USERS}")
    cascade = plan.before["cascade"]
    total = sum(len(group["rows"]) for group in cascade)
    assert total > 0
    phrase = plan.confirm_phrase
    assert phrase.startswith(f"delete 2 rows of users and {total} cascaded rows (")
    for group in cascade:
        assert f"{group['table']} {len(group['rows'])}" in phrase
    assert phrase.endswith("] in sandbox")


def test_the_digest_covers_the_statement_and_the_keys():
    rows = [{"id": "u-1"}, {"id": "u-2"}]
    base = plan_digest("DELETE FROM users WHERE x = 1", rows, ["id"])
    assert len(base) == 8 and int(base, 16) >= 0
    assert plan_digest("DELETE FROM users WHERE x = 2", rows, ["id"]) != base
    assert plan_digest("DELETE FROM users WHERE x = 1", rows[:1], ["id"]) != base
    cascade = [{"table": "m", "effect": "deleted", "key": ["id"], "rows": rows}]
    assert plan_digest("DELETE FROM users WHERE x = 1", rows, ["id"], cascade) != base
