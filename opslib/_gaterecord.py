"""The record of a gate passed in JupyterLab, archived like a headless run's.

A headless run archives its executed notebook; a click on the gate widget has
no such notebook, so one is made for it: a short notebook whose two cells show
the plan as it was confirmed and what the gate did, with their times. It goes
through the runner's archiving (scrubbed, written once, indexed), so
``runbook records``, ``runbook show`` and ``runbook undo`` read it as they read
any record. The before-image of a write goes, as headless, to the archive's
``before-images/`` folder, and the record holds it redacted.
"""

from __future__ import annotations

import datetime
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._actions import ActionPlan, ActionResult
from ._config import Environment
from ._notebook import runbook_name
from ._runner import RunRecord, archive_notebook, prepare_folder
from ._records import new_record_id

if TYPE_CHECKING:
    import nbformat

SOURCE = "jupyterlab-gate"
SESSION_VARIABLE = "JPY_SESSION_NAME"
UNKNOWN_RUNBOOK = "gate"


@dataclass(frozen=True)
class GateClick:
    """One click on the gate widget: what was confirmed and what came of it.

    Attributes:
        plan: the plan the widget showed.
        typed: the confirm phrase as typed.
        started: when the button was clicked.
        finished: when the gate (and the check after it) returned.
        result: the gate's result; None when applying raised.
        error: the exception applying raised, if any.
    """

    plan: ActionPlan
    typed: str
    started: datetime.datetime
    finished: datetime.datetime
    result: ActionResult | None
    error: BaseException | None = None


def session_notebook(environ: Mapping[str, str] | None = None) -> Path | None:
    """The notebook this kernel serves, as the Jupyter server told it, if known."""
    environ = os.environ if environ is None else environ
    name = environ.get(SESSION_VARIABLE, "")
    return Path(name) if name.endswith(".ipynb") else None


def check_archive(records_dir: str | Path, started: datetime.datetime) -> None:
    """Make sure the record of a click can be written, before the gate is passed.

    Raises:
        RunError: naming the folder that cannot be created.
    """
    prepare_folder(records_dir, started)


def record_click(
    click: GateClick,
    *,
    environment: Environment,
    records_dir: str | Path,
    notebook: Path | None = None,
    incident_id: str = "",
) -> RunRecord:
    """Archive one click on the gate widget as a record.

    Args:
        click: the click and its outcome.
        environment: the environment the gate judged the plan for.
        records_dir: the archive folder.
        notebook: the notebook the widget was shown in, when known.
        incident_id: the incident the action belongs to, for the record's id.

    Raises:
        RunError: when the record cannot be written.
    """
    runbook = runbook_name(notebook) if notebook else UNKNOWN_RUNBOOK
    nb, error = _gate_notebook(click, environment, notebook)
    operator = click.result.operator if click.result else None
    return archive_notebook(
        nb,
        record_id=new_record_id(click.started, runbook, incident_id),
        notebook=notebook,
        runbook=runbook,
        environment=environment,
        started=click.started,
        parameters={
            **({"incident_id": incident_id} if incident_id else {}),
            "apply": True,
            "confirm": click.typed,
        },
        operator=operator or None,
        error=error,
        records_dir=records_dir,
        source=SOURCE,
    )


def _gate_notebook(
    click: GateClick, environment: Environment, notebook: Path | None
) -> tuple[nbformat.NotebookNode, dict[str, Any] | None]:
    """The notebook of a click: the plan confirmed, then the gate's outcome."""
    import nbformat

    where = f"`{notebook.name}`" if notebook else "a notebook"
    intro = nbformat.v4.new_markdown_cell(  # type: ignore[no-untyped-call]
        f"# Gate passed in JupyterLab\n\nThe gate widget in {where}, environment "
        f"`{environment.name}`: the plan as shown, then what the Apply button did "
        "with the phrase typed."
    )
    plan_cell = _cell(
        "# the plan the gate widget showed",
        [_display(click.plan)],
        click.started,
        click.started,
    )
    error = None
    if click.error is not None:
        outputs, error = _error_output(click.error)
    else:
        outputs = [_display(click.result)] if click.result else []
    gate_cell = _cell(
        f"# Apply clicked, confirm phrase typed: {click.typed!r}",
        outputs,
        click.started,
        click.finished,
        failed=error is not None,
    )
    nb = nbformat.v4.new_notebook(cells=[intro, plan_cell, gate_cell])  # type: ignore[no-untyped-call]
    return nb, error


def _display(shown: ActionPlan | ActionResult) -> Any:
    import nbformat

    return nbformat.v4.new_output(  # type: ignore[no-untyped-call]
        "display_data", data=shown._repr_mimebundle_()
    )


def _error_output(exc: BaseException) -> tuple[list[Any], dict[str, Any]]:
    import nbformat

    lines = traceback.format_exception(exc)
    output = nbformat.v4.new_output(  # type: ignore[no-untyped-call]
        "error", ename=type(exc).__name__, evalue=str(exc), traceback=lines
    )
    error = {
        "kind": "cell-error",
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "cell_index": None,
    }
    return [output], error


def _cell(
    source: str,
    outputs: list[Any],
    started: datetime.datetime,
    finished: datetime.datetime,
    *,
    failed: bool = False,
) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(source, outputs=outputs)  # type: ignore[no-untyped-call]
    cell.metadata["papermill"] = {
        "start_time": started.isoformat(),
        "end_time": finished.isoformat(),
        "duration": round((finished - started).total_seconds(), 3),
        "status": "failed" if failed else "completed",
        "exception": failed,
    }
    return cell
