"""The gate as a widget, for engineers walking a runbook in JupyterLab.

Headless runs pass ``apply`` and ``confirm`` as parameters; interactively the same
gate is a text box and a button. Clicking calls :func:`apply_action` with what was
typed, so the phrase must still match the plan word for word.

Every click is archived as a record, as a headless run is (see ``_gaterecord``):
who clicked, when, the plan, the phrase typed, the outcome and how to undo it.
The archive is ``$RUNBOOK_RECORDS``, else ``records/`` at the project root; the
before-image of a write is kept in its ``before-images/`` folder, so
``runbook undo RECORD`` works on the record. When the archive cannot be
written, the gate is not passed at all.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._actions import ActionPlan, ActionResult, apply_action
from ._beforeimage import records_archive
from ._config import Environment
from ._errors import OpslibError
from ._finding import Finding
from ._gaterecord import GateClick, check_archive, record_click, session_notebook
from ._runner import RunRecord
from ._time import utcnow

logger = logging.getLogger(__name__)


def gate_widget(
    plan: ActionPlan,
    *,
    environment: Environment,
    verify: Callable[[], Finding] | None = None,
    notebook: str | Path | None = None,
    incident_id: str = "",
) -> Any:
    """Show a plan with a confirm box and an Apply button; record every click.

    Args:
        plan: the plan to gate; a no-op plan shows a disabled button.
        environment: the environment the plan was made for.
        verify: a check to run after applying, as in :func:`apply_action`.
        notebook: the notebook the widget is in, for the record; default the
            one the Jupyter server started this kernel for.
        incident_id: the incident the action belongs to, for the record.

    Returns:
        An ``ipywidgets.VBox`` of the plan, the confirm box, the button, the
        output and a line naming the last record. Its ``results`` attribute lists
        every gate outcome and ``records`` every record written.
    """
    import ipywidgets as widgets  # type: ignore[import-untyped]

    phrase = widgets.Text(
        placeholder="type the confirm phrase shown above",
        description="Confirm:",
        layout=widgets.Layout(width="90%"),
    )
    button = widgets.Button(
        description="Apply", button_style="danger", disabled=plan.is_noop
    )
    output = widgets.Output()
    record_line = widgets.HTML("")
    results: list[ActionResult] = []
    records: list[RunRecord] = []
    where = Path(notebook) if notebook else session_notebook()

    def on_click(_: Any) -> None:
        click = _click(plan, phrase.value, environment, verify)
        if click is None:
            record_line.value = _NOT_PASSED
            return
        if click.result is not None:
            results.append(click.result)
        try:
            record = record_click(
                click,
                environment=environment,
                records_dir=records_archive(),
                notebook=where,
                incident_id=incident_id,
            )
        except OpslibError as error:
            logger.error("gate click not recorded error=%s", error)
            record_line.value = _line(f"NO RECORD WRITTEN: {error}")
        else:
            records.append(record)
            record_line.value = _line(
                f"record {record.id} ({record.record_path}); runbook show {record.id}"
            )
        _show(output, click)

    button.on_click(on_click)
    box = widgets.VBox(
        [
            widgets.HTML(_pre(str(plan))),
            phrase,
            button,
            output,
            record_line,
        ]
    )
    box.results = results
    box.records = records
    return box


_NOT_PASSED = "<b>nothing applied:</b> the records folder cannot be written"


def _click(
    plan: ActionPlan,
    typed: str,
    environment: Environment,
    verify: Callable[[], Finding] | None,
) -> GateClick | None:
    """Pass the gate with what was typed; None when no record could be kept."""
    started = utcnow()
    try:
        check_archive(records_archive(), started)
    except OpslibError as error:
        logger.error("gate not passed: the archive cannot be written error=%s", error)
        return None
    try:
        result = apply_action(
            plan, environment=environment, apply=True, confirm=typed, verify=verify
        )
    except Exception as error:  # recorded as a failed click, then shown
        logger.exception("gate click failed action=%s", plan.action)
        return GateClick(plan, typed, started, utcnow(), None, error)
    return GateClick(plan, typed, started, utcnow(), result)


def _show(output: Any, click: GateClick) -> None:
    from IPython.display import display

    with output:
        if click.result is not None:
            display(click.result)  # type: ignore[no-untyped-call]
        else:
            print(f"the gate failed: {type(click.error).__name__}: {click.error}")


def _line(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
