"""The gate as a widget, for engineers walking a runbook in JupyterLab.

Headless runs pass ``apply`` and ``confirm`` as parameters; interactively the same
gate is a text box and a button. Clicking calls :func:`apply_action` with what was
typed, so the phrase must still match the plan word for word.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from ._actions import ActionPlan, ActionResult, apply_action
from ._config import Environment
from ._finding import Finding


def gate_widget(
    plan: ActionPlan,
    *,
    environment: Environment,
    verify: Callable[[], Finding] | None = None,
) -> Any:
    """Show a plan with a confirm box and an Apply button.

    Args:
        plan: the plan to gate; a no-op plan shows a disabled button.
        environment: the environment the plan was made for.
        verify: a check to run after applying, as in :func:`apply_action`.

    Returns:
        An ``ipywidgets.VBox``; its ``results`` attribute lists every gate outcome.
    """
    import ipywidgets as widgets  # type: ignore[import-untyped]
    from IPython.display import display

    phrase = widgets.Text(
        placeholder="type the confirm phrase shown above",
        description="Confirm:",
        layout=widgets.Layout(width="90%"),
    )
    button = widgets.Button(
        description="Apply", button_style="danger", disabled=plan.is_noop
    )
    output = widgets.Output()
    results: list[ActionResult] = []

    def on_click(_: Any) -> None:
        result = apply_action(
            plan,
            environment=environment,
            apply=True,
            confirm=phrase.value,
            verify=verify,
        )
        results.append(result)
        with output:
            display(result)  # type: ignore[no-untyped-call]

    button.on_click(on_click)
    box = widgets.VBox(
        [widgets.HTML(f"<pre>{html.escape(str(plan))}</pre>"), phrase, button, output]
    )
    box.results = results
    return box
