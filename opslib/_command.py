"""The ``runbook run`` command lines that gated steps print for the operator.

Every value in such a line may come from outside the runbook (a user id read from
D1, an IP from a KV key, a version id from the Cloudflare API, a parameter
typed by someone), and the operator pastes the line into a shell. So each value
is shell-quoted here, in one place: a value like ``u-$(touch /tmp/x)`` prints
as one inert word.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

INCIDENT_PLACEHOLDER = "INC-..."


class Placeholder(str):
    """A value the operator fills in: printed inside single quotes even when it
    needs none, so whatever is typed between them stays one word."""

    __slots__ = ()


def shell_value(value: object) -> str:
    """One parameter value as a single shell word (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Placeholder):
        return "'" + value.replace("'", "'\"'\"'") + "'"
    return shlex.quote(str(value))


def parameter_options(parameters: Mapping[str, object]) -> str:
    """``-p name value`` for each parameter, values quoted; ``None`` ones left out."""
    return " ".join(
        f"-p {shlex.quote(name)} {shell_value(value)}"
        for name, value in parameters.items()
        if value is not None
    )


def incident_parameter(params: Mapping[str, object]) -> dict[str, object]:
    """``{"incident_id": ...}`` of a run's parameters, to lead a printed command,
    so the run it starts is filed under the same incident or change; empty when
    the run has none."""
    incident_id = params.get("incident_id")
    return {"incident_id": incident_id} if incident_id else {}


def runbook_command(
    runbook: str,
    environment: str,
    parameters: Mapping[str, object] | None = None,
    *,
    confirm: str | None = None,
    prefix: str = "",
) -> str:
    """The command that runs ``runbook`` again with ``parameters``.

    Args:
        runbook: the runbook's name, as ``runbook list`` shows it.
        environment: the environment's name (``--env``).
        parameters: the ``-p`` options, in order; ``None`` values are left out.
        confirm: the confirm phrase; given, the line ends with ``-p apply true
            -p confirm <phrase>``.
        prefix: words put before the command as they are, such as a variable
            assignment with a placeholder for a secret (never a value from data).

    Returns:
        One line, every value shell-quoted.
    """
    words = [prefix, "runbook run", shlex.quote(runbook)]
    words += ["--env", shlex.quote(environment), parameter_options(parameters or {})]
    if confirm is not None:
        words.append(parameter_options({"apply": True, "confirm": confirm}))
    return " ".join(word for word in words if word)
