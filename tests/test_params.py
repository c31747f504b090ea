"""Parameter rules: validate_params, coerce_parameters, load_parameter_file."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from opslib._errors import ParameterError
from opslib._notebook import ParameterSpec
from opslib._params import (
    Params,
    coerce_parameters,
    load_parameter_file,
    validate_params,
)

GOOD = {
    "incident_id": "INC-42",
    "environment": "sandbox",
    "lookback": "6h",
    "paths": ["/health", "/api/v1/manuscripts"],
    "apply": False,
    "confirm": "",
}


@pytest.fixture(autouse=True)
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "parameters" / "environments"
    folder.mkdir(parents=True)
    for name in ("production", "sandbox", "staging"):
        (folder / f"{name}.yaml").write_text(f"name: {name}\n")
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(folder))
    return folder


def _spec(**types: str) -> dict[str, ParameterSpec]:
    defaults = {"str": "x", "int": 1, "float": 1.0, "bool": False, "list[str]": ["/"]}
    good = {"incident_id": "INC-1", "environment": "sandbox", "lookback": "1h"}
    return {
        name: ParameterSpec(name, type_name, good.get(name, defaults[type_name]))
        for name, type_name in types.items()
    }


def test_validate_params_returns_read_only_params_with_attribute_access() -> None:
    params = validate_params(**GOOD)

    assert isinstance(params, Params)
    assert params.incident_id == "INC-42"
    assert params["lookback"] == "6h"
    assert params.paths == ("/health", "/api/v1/manuscripts")
    assert params.as_dict() == GOOD


def test_params_refuse_assignment_and_name_unknown_attributes() -> None:
    params = validate_params(**GOOD)

    with pytest.raises(AttributeError, match="read-only; cannot set 'apply'"):
        params.apply = True  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no parameter 'incident' .* incident_id"):
        _ = params.incident


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("incident_id", "", r"incident_id: got '' — expected 1-64 letters"),
        ("incident_id", "INC 42", r"got 'INC 42' — expected 1-64"),
        ("incident_id", "-INC", r"got '-INC'"),
        ("incident_id", "INC-42\n", r"got 'INC-42\\n' — expected 1-64"),
        ("incident_id", "I" * 65, r"incident_id: got 'IIII"),
        ("incident_id", 42, r"incident_id: got 42 — expected text"),
        ("environment", "prod", r"expected one of: production, sandbox, staging"),
        ("lookback", "0m", r"lookback: got '0m' — expected a duration from 1m to 30d"),
        ("lookback", "31d", r"got '31d'"),
        ("lookback", "6 h", r"got '6 h'"),
        ("lookback", "1w", r"got '1w'"),
        ("lookback", "6h\n", r"lookback: got '6h\\n'"),
        ("paths", [], r"paths: got \[\] — expected a list of 1 to 20 URL paths"),
        ("paths", ["health"], r"got \['health'\]"),
        ("paths", ["/a b"], r"got \['/a b'\]"),
        ("paths", ["/x?u=http://evil"], r"expected a list of 1 to 20"),
        ("paths", ["/'"], r"expected a list"),
        ("paths", ["/a"] * 21, r"expected a list of 1 to 20"),
        ("paths", "/health", r"paths: got '/health' — expected a list of strings"),
        ("apply", "yes", r"apply: got 'yes' — expected true or false"),
        ("apply", 1, r"apply: got 1 — expected true or false"),
        (
            "confirm",
            "roll\nback",
            r"confirm: got 'roll\\nback' — expected a single line",
        ),
        ("note", 'say "hi"', r"note: got 'say \"hi\"' — expected a single line"),
        ("note", "back\\slash", r"note: got .* — expected a single line"),
        ("note", "bidi \u202e", r"note: got .* without quotes, backslashes or control"),
        ("confirm", "roll\u2028back", r"confirm: got .* — expected a single line"),
        ("note", "two\u2029lines", r"note: got .* — expected a single line"),
        ("note", "x" * 201, r"note: got 'xxxx.*… \(203 characters\)"),
        ("client_ip", "fe80::1%' or 1=1", r"client_ip: got .* without a %zone"),
        ("client_ip", "fe80::1%eth0\n", r"client_ip: got .* — expected empty, or an"),
        (
            "backup_key",
            "backup-\u0662\u0660\u0662\u0666-11-27-1795748400417.sql.gz",
            "backup_key: got",
        ),
        (
            "api_version",
            "20\u0662\u0664-10-28.acacia",
            r"api_version: got .* a date and",
        ),
        (
            "incident_time",
            "\u0662\u0660\u0662\u0666-11-27T14:30Z",
            "incident_time: got",
        ),
        ("ratio", float("inf"), r"ratio: got inf — expected a finite number"),
        ("when", datetime.date(2025, 1, 1), r"when: got .* — expected a str, int"),
        ("tags", ["ok", "no\nway"], r"tags: got .* — expected a list whose items"),
    ],
)
def test_validate_params_rejects_bad_value(
    name: str, value: object, expected: str
) -> None:
    with pytest.raises(ParameterError, match=expected):
        validate_params(**{**GOOD, name: value})


def test_validate_params_reports_every_problem_at_once() -> None:
    with pytest.raises(ParameterError) as caught:
        validate_params(incident_id="", lookback="0m", apply="no", other="a'b")

    assert [p.split(":")[0] for p in caught.value.problems] == [
        "incident_id",
        "lookback",
        "apply",
        "other",
    ]
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("name", "value"),
    [("count", 3), ("ratio", 0.5), ("dry_run", True), ("note", ""), ("tags", ["a"])],
)
def test_validate_params_accepts_other_names_by_type(name: str, value: object) -> None:
    assert validate_params(**{name: value}).as_dict() == {name: value}


@pytest.mark.parametrize("lookback", ["1m", "90m", "6h", "30d"])
def test_validate_params_accepts_lookbacks_from_one_minute_to_thirty_days(
    lookback: str,
) -> None:
    assert validate_params(lookback=lookback).lookback == lookback


@pytest.mark.parametrize("lookback", ["", "0h", "45000m", "1.5h", "h", "06h", "6H"])
def test_validate_params_rejects_other_lookbacks(lookback: str) -> None:
    with pytest.raises(ParameterError, match=f"lookback: got '{lookback}'"):
        validate_params(lookback=lookback)


@pytest.mark.parametrize(
    ("type_name", "text", "expected"),
    [
        ("bool", "TRUE", True),
        ("bool", "yes", True),
        ("bool", "1", True),
        ("bool", "No", False),
        ("bool", "0", False),
        ("int", "-12", -12),
        ("float", "2.5e3", 2500.0),
        ("float", "7", 7.0),
        ("list[str]", "/a, /b,", ["/a", "/b"]),
        ("list[str]", '["/a", "/b"]', ["/a", "/b"]),
        ("list[str]", "[/a, /b]", ["/a", "/b"]),
        ("str", "2025-11-01", "2025-11-01"),
        ("str", "yes", "yes"),
    ],
)
def test_coerce_parameters_converts_command_line_text(
    type_name: str, text: str, expected: object
) -> None:
    values = coerce_parameters(
        _spec(value=type_name), {"value": text}, raw=frozenset({"value"})
    )

    assert values == {"value": expected}
    assert type(values["value"]) is type(expected)


@pytest.mark.parametrize(
    ("type_name", "text", "expected"),
    [
        ("bool", "maybe", r"value: got 'maybe' — expected true or false \(also yes/no"),
        ("int", "1.5", r"value: got '1.5' — expected a whole number"),
        ("int", "12abc", r"got '12abc'"),
        ("float", "nan", r"value: got 'nan' — expected a number"),
        ("list[str]", "[/a, [b]]", r"expected a list of strings, but item \['b'\]"),
        ("list[str]", "[unclosed", r"expected a list such as"),
    ],
)
def test_coerce_parameters_rejects_unconvertible_text(
    type_name: str, text: str, expected: str
) -> None:
    with pytest.raises(ParameterError, match=expected):
        coerce_parameters(
            _spec(value=type_name), {"value": text}, raw=frozenset({"value"})
        )


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("float", 3, 3.0),
        ("int", 3, 3),
        ("bool", False, False),
        ("list[str]", ["/a", 404], ["/a", "404"]),
        ("list[str]", "/a,/b", ["/a", "/b"]),
    ],
)
def test_coerce_parameters_accepts_yaml_values_that_fit(
    type_name: str, value: object, expected: object
) -> None:
    assert coerce_parameters(_spec(value=type_name), {"value": value}) == {
        "value": expected
    }


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        (
            "str",
            datetime.date(2025, 11, 1),
            r"YAML reads an unquoted date .* '2025-11-01'",
        ),
        ("str", True, r"value: got True — expected text; YAML reads yes, no"),
        ("str", 1.10, r"YAML read it as the number 1.1 .* so quote the value"),
        ("str", 31, r"YAML read it as the number 31 \(0x1F, 017"),
        ("str", None, r"value: got None — expected text .* leave the name out"),
        ("int", "3", r"value: got '3' — expected a whole number"),
        ("int", True, r"value: got True — expected a whole number"),
        ("float", True, r"value: got True — expected a number"),
        ("float", float("inf"), r"expected a finite number"),
        ("bool", "yes", r"value: got 'yes' — expected true or false"),
        ("list[str]", {"a": 1}, r"expected a list of strings"),
        ("list[str]", [True], r"item True is not text; quote it"),
    ],
)
def test_coerce_parameters_rejects_yaml_values_that_do_not_fit(
    type_name: str, value: object, expected: str
) -> None:
    with pytest.raises(ParameterError, match=expected):
        coerce_parameters(_spec(value=type_name), {"value": value})


def test_coerce_parameters_names_unknown_parameters_and_close_matches() -> None:
    spec = _spec(incident_id="str", apply="bool", confirm="str")

    with pytest.raises(
        ParameterError,
        match=r"unknown parameter 'incident' \(did you mean "
        r"'incident_id'\?\) — this notebook takes: apply, confirm, incident_id",
    ):
        coerce_parameters(spec, {"incident": "INC-1"}, raw=frozenset({"incident"}))


def test_coerce_parameters_applies_name_rules_after_conversion() -> None:
    spec = _spec(incident_id="str", lookback="str", paths="list[str]")
    given = {"incident_id": "", "lookback": "2w", "paths": "health"}

    with pytest.raises(ParameterError) as caught:
        coerce_parameters(spec, given, raw=frozenset(given))

    assert [p.split(":")[0] for p in caught.value.problems] == [
        "incident_id",
        "lookback",
        "paths",
    ]


def test_coerce_parameters_checks_defaults_not_given() -> None:
    spec = {"incident_id": ParameterSpec("incident_id", "str", "")}

    with pytest.raises(
        ParameterError, match=r"incident_id: got '' .* notebook's default"
    ):
        coerce_parameters(spec, {})


def test_coerce_parameters_returns_only_given_values() -> None:
    spec = _spec(incident_id="str", apply="bool", lookback="str")

    assert coerce_parameters(spec, {"apply": "yes"}, raw=frozenset({"apply"})) == {
        "apply": True
    }


def test_coerce_parameters_reports_every_problem_at_once() -> None:
    spec = _spec(incident_id="str", apply="bool", note="str")
    given = {"incident_id": "", "apply": "perhaps", "note": 'a"b\n', "nope": 1}

    with pytest.raises(ParameterError) as caught:
        coerce_parameters(spec, given, raw=frozenset({"apply"}))

    assert len(caught.value.problems) == 4


def test_load_parameter_file_keeps_yaml_types(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("incident_id: INC-42\napply: yes\nsince: 2025-11-01\npaths: [/a]\n")

    assert load_parameter_file(path) == {
        "incident_id": "INC-42",
        "apply": True,
        "since": datetime.date(2025, 11, 1),
        "paths": ["/a"],
    }


def test_load_parameter_file_reads_an_empty_file_as_no_parameters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")

    assert load_parameter_file(path) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", r"params.yaml': got a list; expected a flat YAML mapping"),
        ("apply: [\n", r"params.yaml': .*expected a flat YAML mapping"),
        ("outer:\n  inner: 1\n", r"key 'outer' holds a nested mapping"),
        ("1: one\n", r"key 1 is not text"),
    ],
)
def test_load_parameter_file_rejects_other_forms(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)

    with pytest.raises(ParameterError, match=expected):
        load_parameter_file(path)


def test_load_parameter_file_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"parameter file '.*missing.yaml'"):
        load_parameter_file(tmp_path / "missing.yaml")


def test_parameter_file_refuses_a_key_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("incident_id: INC-1\nincident_id: INC-2\n")

    with pytest.raises(ParameterError, match="key 'incident_id' is given twice"):
        load_parameter_file(path)


def test_missing_environments_folder_names_the_variable_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(missing))
    with pytest.raises(ParameterError) as caught:
        validate_params(**GOOD)
    assert "RUNBOOK_ENVIRONMENTS" in str(caught.value)
    assert str(missing) in str(caught.value)


def test_empty_environments_folder_names_the_variable_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(empty))
    with pytest.raises(ParameterError) as caught:
        validate_params(**GOOD)
    assert "RUNBOOK_ENVIRONMENTS" in str(caught.value)
    assert str(empty) in str(caught.value)
    assert "none defined" not in str(caught.value)
