"""A read given to the database procedure as its sql: run read-only on the sandbox's
D1, capped at row_limit, never a write; anything else goes to the write planning."""

from pathlib import Path

import pytest
from procedure_helpers import result_of, run

import opslib
from opslib import load_environment
from opslib._dbread import as_read, capped_sql
from opslib._sqlguard import classify_sql

DISGUISED = (
    "SELECT 1; DELETE FROM users WHERE id = 'u-1'",
    "WITH x AS (DELETE FROM users WHERE id = 'u-1' RETURNING *) SELECT * FROM x",
    "WITH x AS (UPDATE users SET role = 'admin' WHERE id = 'u-1' RETURNING id) "
    "SELECT * FROM x",
    "WITH x AS (INSERT INTO users (id) VALUES ('u-9') RETURNING id) SELECT 1",
    "WITH x AS (SELECT id FROM users) DELETE FROM users WHERE id IN (SELECT id FROM x)",
    "DELETE FROM users WHERE id = 'u-1'",
)


def count(env, sql):
    client = opslib.CloudflareClient(env)
    try:
        return client.d1_query(sql)[0]["results"][0]["n"]
    finally:
        client.close()


@pytest.fixture
def env(sandbox):
    sandbox.reset("healthy")
    return load_environment("sandbox")


@pytest.mark.parametrize("sql", DISGUISED)
def test_a_write_in_any_shape_is_not_a_read(sql):
    assert as_read(sql) is None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM users",
        "with recent as (select id from users) select * from recent;",
        "SELECT 'a;DELETE FROM users' AS s -- DELETE FROM users",
        "EXPLAIN QUERY PLAN SELECT * FROM users",
        "PRAGMA table_info(users)",
    ],
)
def test_one_read_is_a_read(sql):
    assert as_read(sql) is not None


def test_the_limit_is_appended_or_wraps_a_limit_of_the_read():
    for sql in (
        "SELECT id FROM users ORDER BY id ;",
        "SELECT id FROM users ORDER BY id -- a",
    ):
        plain = capped_sql(classify_sql(sql), 5)
        assert plain == "SELECT id FROM users ORDER BY id LIMIT 6"
    own = capped_sql(classify_sql("SELECT id FROM users LIMIT 2"), 5)
    assert own == "SELECT * FROM (\nSELECT id FROM users LIMIT 2\n) LIMIT 6"


def test_a_read_runs_and_shows_its_rows(env):
    total = count(env, "SELECT COUNT(*) AS n FROM users")
    finding = opslib.read_d1(
        env, "SELECT id, role FROM users ORDER BY id", row_limit=total + 5
    )
    assert finding.status is opslib.Status.OK, finding.summary
    assert finding.facts["rows"] == total and finding.facts["truncated"] is False
    assert "not truncated" in finding.summary
    frame = opslib.rows_frame(finding)
    assert list(frame.columns) == ["id", "role"] and len(frame) == total
    assert list(frame["id"]) == sorted(frame["id"])


def test_the_row_limit_is_honoured_and_named(env):
    total = count(env, "SELECT COUNT(*) AS n FROM users")
    assert total > 3
    finding = opslib.read_d1(env, "SELECT id FROM users", row_limit=3)
    assert len(finding.evidence) == 3 and finding.facts["truncated"] is True
    assert "truncated" in finding.summary and "row_limit=3" in finding.summary
    # The read's own smaller LIMIT still holds under the cap.
    own = opslib.read_d1(env, "SELECT id FROM users LIMIT 2", row_limit=3)
    assert len(own.evidence) == 2 and own.facts["truncated"] is False


def test_sensitive_columns_are_masked(env):
    finding = opslib.read_d1(env, "SELECT id, password_hash FROM users", row_limit=5)
    assert finding.evidence and all(
        row["password_hash"] == "[hidden: sensitive column]" for row in finding.evidence
    )


def test_no_read_given_runs_nothing(env):
    for sql in ("", "UPDATE users SET role = 'admin' WHERE id = 'u-1'"):
        finding = opslib.read_d1(env, sql)
        assert finding.facts == {"ran": False} and not finding.evidence


def test_a_read_given_as_sql_is_recorded_and_changes_nothing(env, tmp_path):
    users = count(env, "SELECT COUNT(*) AS n FROM users")
    record = run(
        "database",
        tmp_path,
        incident_id="CHG-2",
        sql="SELECT id, email, role FROM users ORDER BY id",
        row_limit=2,
    )
    read = [f for f in record.verdict["findings"] if f["name"] == "read"][0]
    assert len(read["evidence"]) == 2 and "row_limit=2" in read["summary"]
    assert result_of(record)["outcome"] == "not-needed"
    assert record.verdict["cause"] == "read-only"
    notebook = Path(record.record_path).read_text()
    assert "<email:" in notebook and "@example.com" not in notebook
    assert count(env, "SELECT COUNT(*) AS n FROM users") == users


def test_a_disguised_write_is_refused_before_anything_runs(env, tmp_path):
    users = count(env, "SELECT COUNT(*) AS n FROM users")
    for sql in DISGUISED[:2]:
        with pytest.raises(opslib.ParameterError, match="sql: got"):
            opslib.run_notebook(
                "database",
                parameters={"sql": sql},
                environment="sandbox",
                records_dir=tmp_path,
            )
    assert count(env, "SELECT COUNT(*) AS n FROM users") == users


def test_a_read_showing_a_hash_under_another_name_is_refused_before_running(
    env, tmp_path
):
    sql = (
        "SELECT id, email, password_hash, password_hash AS ph, "
        "substr(password_hash,1,40) AS p2 FROM users"
    )
    with pytest.raises(opslib.ParameterError, match="sql: got .*holds secrets"):
        opslib.run_notebook(
            "database",
            parameters={"incident_id": "SQL-m", "row_limit": 3, "sql": sql},
            environment="sandbox",
            records_dir=tmp_path,
        )
    assert not list(tmp_path.rglob("*.ipynb"))
    with pytest.raises(opslib.ConfigError, match="holds secrets"):
        opslib.read_d1(env, sql, row_limit=3)


def test_values_shaped_like_secrets_are_hidden_whatever_the_column(env):
    client = opslib.CloudflareClient(env)
    try:
        client.d1_query(
            "CREATE VIEW logins AS SELECT id, password_hash AS credential FROM users"
        )
    finally:
        client.close()
    try:
        finding = opslib.read_d1(env, "SELECT * FROM logins", row_limit=50)
        random = opslib.read_d1(
            env, "SELECT id, hex(randomblob(32)) AS x FROM users", row_limit=5
        )
    finally:
        client = opslib.CloudflareClient(env)
        try:
            client.d1_query("DROP VIEW logins")
        finally:
            client.close()
    assert finding.status is opslib.Status.OK and finding.evidence
    assert {row["credential"] for row in finding.evidence} == {
        "[hidden: looks like a secret]"
    }
    assert all(row["id"] != "[hidden: looks like a secret]" for row in finding.evidence)
    assert {row["x"] for row in random.evidence} == {"[hidden: looks like a secret]"}
