"""Parameter rules of the procedures: record ids, versions, SQL, row caps, watch."""

import pytest

from opslib._params import check_value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("record_id", "20261204T1715"),
        ("record_id", "20261204T171501Z-database-CHG-7-3fa9"),
        ("version", ""),
        ("version", "3f2a9c1e-0b7d-4e21-9f55-6a1d2c3b4e5f"),
        ("sql", ""),
        ("sql", "UPDATE users SET role = 'publisher' WHERE id = 'u-1'"),
        ("sql", "DELETE FROM users WHERE email LIKE 'prodtest%@example.com'"),
        ("max_rows", 1),
        ("max_rows", 1000),
        ("watch_s", 5),
        ("watch_s", 3600),
    ],
)
def test_good_values_pass(name, value):
    assert check_value(name, value) is None


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("record_id", "latest", "a record id or a unique prefix"),
        ("record_id", "20261204T17;rm", "a record id"),
        ("version", "v 2", "a Worker version id"),
        ("sql", "DELETE FROM users", "without WHERE touches every row"),
        ("sql", "UPDATE users SET role = 'x' WHERE 1=1", "reads no column"),
        ("sql", "DROP TABLE users", "DROP statements are not allowed"),
        ("sql", "SELECT 1;\nDELETE FROM users WHERE id = 'x'", "one SQL statement"),
        ("max_rows", 0, "from 1 to 1000"),
        ("max_rows", 5000, "from 1 to 1000"),
        ("watch_s", 4, "from 5 to 3600"),
        ("watch_s", "900", "a whole number"),
    ],
)
def test_bad_values_name_the_parameter_and_the_form(name, value, expected):
    problem = check_value(name, value)
    assert problem is not None
    assert problem.startswith(f"{name}: got ")
    assert expected in problem
