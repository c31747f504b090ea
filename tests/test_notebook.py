"""Notebooks as files: finding them, reading parameters, reading executed outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import opslib
from opslib._errors import RunError
from opslib._notebook import (
    ACTION_MIME,
    VERDICT_MIME,
    ParameterSpec,
    cell_timings,
    collect_outputs,
    collect_verdict,
    failed_cell_index,
    find_notebooks_dir,
    find_project_root,
    join_streams,
    mark_stopped_cell,
    read_parameters,
    resolve_notebook,
    runbook_name,
)

PARAMETERS = """incident_id: str = ""  # the incident, such as INC-42
lookback: str = "1h"  # how far back to look
paths: list[str] = ["/health", "/api/v1"]
apply: bool = False  # change anything?  # really
limit: int = 20
ratio: float = 1
label: str = "a # not a comment"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    environments = tmp_path / "parameters" / "environments"
    environments.mkdir(parents=True)
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(environments))
    for relative in (
        "incidents/01-api-down.ipynb",
        "incidents/02-payment-failed.ipynb",
        "procedures/01-rollback.ipynb",
        "incidents/05-restore.ipynb",
        "procedures/06-restore.ipynb",
    ):
        _write_notebook(tmp_path / "notebooks" / relative, PARAMETERS)
    return tmp_path


def _write_notebook(
    path: Path, *sources: str, tags: tuple[str, ...] = ("parameters",)
) -> Path:
    nb = new_notebook()
    nb.cells = [new_markdown_cell("# Title")]
    for index, source in enumerate(sources):
        cell = new_code_cell(source)
        cell.metadata["tags"] = list(tags) if index == 0 else []
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_find_notebooks_dir_is_beside_the_parameters_folder(project: Path) -> None:
    assert find_project_root() == project
    assert find_notebooks_dir() == project / "notebooks"


def test_find_project_root_falls_back_to_the_checkout_around_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environments = tmp_path / "sandbox-state" / "parameters" / "environments"
    environments.mkdir(parents=True)
    checkout = tmp_path / "checkout"
    (checkout / "notebooks" / "procedures").mkdir(parents=True)
    (checkout / "sub").mkdir()
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(environments))
    monkeypatch.chdir(checkout / "sub")

    assert find_project_root() == checkout


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("notebooks/incidents/01-api-down.ipynb", "api-down"),
        ("08-payment-without-subscription.ipynb", "payment-without-subscription"),
        ("ok.ipynb", "ok"),
        ("2024-notes.ipynb", "notes"),
    ],
)
def test_runbook_name_drops_number_and_extension(path: str, expected: str) -> None:
    assert runbook_name(path) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("api-down", "incidents/01-api-down.ipynb"),
        ("01-api-down", "incidents/01-api-down.ipynb"),
        ("incidents/01-api-down", "incidents/01-api-down.ipynb"),
        ("incidents/01-api-down.ipynb", "incidents/01-api-down.ipynb"),
        ("rollback", "procedures/01-rollback.ipynb"),
        ("procedures/06-restore", "procedures/06-restore.ipynb"),
    ],
)
def test_resolve_notebook_finds_runbook_by_name(
    project: Path, given: str, expected: str
) -> None:
    assert resolve_notebook(given) == project / "notebooks" / expected


def test_resolve_notebook_uses_an_existing_path_as_is(project: Path) -> None:
    path = _write_notebook(project / "elsewhere" / "mine.ipynb", PARAMETERS)

    assert resolve_notebook(str(path)) == path


def test_resolve_notebook_lists_known_runbooks_for_an_unknown_name(
    project: Path,
) -> None:
    with pytest.raises(
        RunError,
        match=r"notebook: got 'api-dwon', expected an existing .ipynb path or a "
        r"runbook name; known runbooks: api-down, payment-failed, restore, rollback",
    ):
        resolve_notebook("api-dwon")


def test_resolve_notebook_refuses_an_ambiguous_name(project: Path) -> None:
    with pytest.raises(
        RunError, match=r"matches several notebooks \(incidents/05-restore, "
    ):
        resolve_notebook("restore")


def test_read_parameters_reads_types_defaults_and_help(tmp_path: Path) -> None:
    path = _write_notebook(tmp_path / "nb.ipynb", PARAMETERS, "print('not parameters')")

    specs = read_parameters(path)

    assert list(specs) == [
        "incident_id",
        "lookback",
        "paths",
        "apply",
        "limit",
        "ratio",
        "label",
    ]
    assert specs["incident_id"] == ParameterSpec(
        "incident_id", "str", "", "the incident, such as INC-42"
    )
    assert specs["paths"] == ParameterSpec(
        "paths", "list[str]", ["/health", "/api/v1"], ""
    )
    assert specs["apply"].help == "change anything?  # really"
    assert specs["ratio"].default == 1.0 and isinstance(specs["ratio"].default, float)
    assert specs["label"] == ParameterSpec("label", "str", "a # not a comment", "")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a = 1\n", r"line 1: a name without a type annotation"),
        ("a: str = 'x'\nb: dict = {}\n", r"line 2: b: type 'dict' is not one of"),
        ("a: List[str] = []\n", r"line 1: a: type 'List\[str\]' is not one of"),
        (
            "a: str = 'x'\nb: int = len('x')\n",
            r"line 2: b: default \"len\('x'\)\" is not a literal",
        ),
        ("a: int\n", r"line 1: a: no default value"),
        ("a: int = '3'\n", r"line 1: a: default '3' is not of type int"),
        ("a: int = True\n", r"line 1: a: default True is not of type int"),
        ("a: list[str] = [1]\n", r"line 1: a: default \[1\] is not of type list"),
        ("a: str = 'x'\na: str = 'y'\n", r"line 2: 'a' is declared twice"),
        ("import os\n", r"line 1: a statement other than 'name: type = value'"),
        ("a: str = (\n", r"line 1: not valid Python"),
    ],
)
def test_read_parameters_rejects_bad_lines(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = _write_notebook(tmp_path / "bad.ipynb", source)

    with pytest.raises(RunError, match=r"bad.ipynb: parameters cell " + expected):
        read_parameters(path)


@pytest.mark.parametrize(
    ("tags", "count"),
    [((), 0), (("other",), 0)],
)
def test_read_parameters_requires_a_parameters_cell(
    tmp_path: Path, tags: tuple[str, ...], count: int
) -> None:
    path = _write_notebook(tmp_path / "none.ipynb", "a: int = 1\n", tags=tags)

    with pytest.raises(RunError, match=rf"found {count} cells tagged 'parameters'"):
        read_parameters(path)


def test_read_parameters_refuses_two_parameters_cells(tmp_path: Path) -> None:
    path = _write_notebook(tmp_path / "two.ipynb", "a: int = 1\n")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell("b: int = 2\n", metadata={"tags": ["parameters"]}))
    nbformat.write(nb, path)

    with pytest.raises(RunError, match=r"two.ipynb: found 2 cells tagged 'parameters'"):
        read_parameters(path)


def test_read_parameters_names_a_file_that_is_not_a_notebook(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")

    with pytest.raises(RunError, match=r"could not read '.*broken.ipynb' .* \(.ipynb"):
        read_parameters(path)


def _executed(*cells: Any) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = list(cells)
    return nb


def _display(mime: str, value: dict[str, Any]) -> nbformat.NotebookNode:
    return new_output("display_data", data={mime: value, "text/plain": "x"})


def test_collect_verdict_returns_the_last_verdict_displayed() -> None:
    first = {"runbook": "api-down", "status": "unknown"}
    last = {"runbook": "api-down", "status": "fail", "cause": "bad-deployment"}
    nb = _executed(
        new_code_cell(outputs=[_display(VERDICT_MIME, first)]),
        new_markdown_cell("between"),
        new_code_cell(outputs=[_display(VERDICT_MIME, last)]),
    )

    assert collect_verdict(nb) == last


def test_collect_verdict_is_none_without_a_verdict() -> None:
    nb = _executed(new_code_cell(outputs=[_display(ACTION_MIME, {"kind": "plan"})]))

    assert collect_verdict(nb) is None


def test_collect_outputs_keeps_action_order_and_reads_json_text() -> None:
    plan, result = {"kind": "plan"}, {"kind": "result", "outcome": "applied"}
    text_form = new_output("display_data", data={ACTION_MIME: json.dumps(result)})
    nb = _executed(
        new_code_cell(outputs=[_display(ACTION_MIME, plan)]),
        new_code_cell(outputs=[text_form]),
    )

    assert collect_outputs(nb, ACTION_MIME) == [plan, result]


def test_mime_types_match_the_ones_opslib_displays() -> None:
    assert (VERDICT_MIME, ACTION_MIME) == (opslib.VERDICT_MIME, opslib.ACTION_MIME)


def _ran(source: str, status: str, start: str | None, **fields: Any) -> Any:
    cell = new_code_cell(source, **fields)
    cell.metadata["papermill"] = {
        "status": status,
        "start_time": start,
        "duration": 0.5,
    }
    return cell


def test_mark_stopped_cell_marks_the_last_started_cell_and_adds_a_banner() -> None:
    nb = _executed(
        _ran("a = 1", "completed", "t0"),
        _ran("os._exit(1)", "completed", "t1"),
        _ran("never()", "completed", None),
    )

    mark_stopped_cell(
        nb, {"kind": "kernel-died", "ename": "DeadKernelError", "evalue": "x"}
    )

    assert nb.cells[0].source.startswith(
        "**This run failed: the kernel died (cell 2).**"
    )
    assert nb.cells[0].metadata["tags"] == ["papermill-error-cell-tag"]
    assert [c.metadata["papermill"]["status"] for c in nb.cells[1:]] == [
        "completed",
        "failed",
        "pending",
    ]
    assert nb.cells[2].outputs[-1]["ename"] == "DeadKernelError"
    assert failed_cell_index(nb) == 2
    nbformat.validate(nb)


def test_an_interrupt_before_any_cell_leaves_every_cell_pending() -> None:
    # as papermill saves a notebook it stopped before the first cell began
    nb = _executed(
        _ran("a = 1", "completed", None, execution_count=None),
        _ran("b = 2", "completed", None, execution_count=None),
    )

    mark_stopped_cell(
        nb, {"kind": "interrupted", "ename": "KeyboardInterrupt", "evalue": "x"}
    )

    assert nb.cells[0].source.startswith(
        "**This run was interrupted (before any cell ran) and archived as aborted.**"
    )
    assert "failed" not in nb.cells[0].source
    assert [row["status"] for row in cell_timings(nb)] == ["pending", "pending"]
    assert failed_cell_index(nb) is None
    assert all(not cell.outputs for cell in nb.cells[1:])
    nbformat.validate(nb)


def test_an_interrupt_mid_cell_marks_that_cell_and_says_interrupted() -> None:
    nb = _executed(_ran("a = 1", "completed", "t0"), _ran("sleep()", "running", "t1"))

    mark_stopped_cell(
        nb, {"kind": "interrupted", "ename": "KeyboardInterrupt", "evalue": ""}
    )

    assert nb.cells[0].source.startswith(
        "**This run was interrupted (cell 2) and archived as aborted.**"
    )
    assert [row["status"] for row in cell_timings(nb)] == ["completed", "failed"]


def test_failed_cell_index_is_none_when_no_cell_failed() -> None:
    assert failed_cell_index(_executed(_ran("a = 1", "completed", "t0"))) is None


def test_join_streams_joins_consecutive_outputs_of_one_stream() -> None:
    outputs = [
        new_output("stream", name="stdout", text="tok"),
        new_output("stream", name="stdout", text="en\n"),
        new_output("stream", name="stderr", text="warn\n"),
        new_output("stream", name="stdout", text="end\n"),
    ]
    nb = _executed(new_code_cell(outputs=outputs))

    join_streams(nb)

    assert [(o.name, o.text) for o in nb.cells[0].outputs] == [
        ("stdout", "token\n"),
        ("stderr", "warn\n"),
        ("stdout", "end\n"),
    ]


def test_cell_timings_lists_code_cells_with_first_line_duration_and_status() -> None:
    nb = _executed(
        new_markdown_cell("# title"),
        _ran("\nx = 1\ny = 2", "completed", "t0"),
        _ran("", "pending", None),
    )

    assert cell_timings(nb) == [
        {"index": 1, "source": "x = 1", "duration_s": 0.5, "status": "completed"},
        {"index": 2, "source": "", "duration_s": 0.5, "status": "pending"},
    ]
