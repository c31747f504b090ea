"""The errors opslib raises.

Every error derives from one base, so a caller can catch them all at once::

    OpslibError
    ├── ConfigError (also ValueError)       an environment file or secret is wrong
    │   └── ParameterError                  a runbook parameter is wrong
    ├── ServiceError                        an outside system answered badly
    │   ├── UnreachableError                no answer at all (DNS, refused, timeout)
    │   ├── AuthError                       401/403, or a token without the scope
    │   ├── RateLimitError                  429 after the bounded retries
    │   └── APIError                        any other error answer or envelope
    ├── ActionError                         a gated action refused or failed
    │   └── ConfirmationError               the confirm phrase does not match the plan
    └── RunError                            running or archiving a notebook failed

Checks never let a ServiceError escape: they turn it into a finding with status
``unknown``. Actions and the runner raise.

Outside the tree, on purpose: ``_runner.RunInterrupted``, the KeyboardInterrupt a
run raises once it has archived what Ctrl-C stopped, with the record attached. It
is no error, and ``except OpslibError`` must never swallow an interrupt.
"""

from __future__ import annotations

from typing import Any


class OpslibError(Exception):
    """Base class of every error opslib raises."""


class ConfigError(OpslibError, ValueError):
    """An environment definition or a secret is missing or malformed."""


class ParameterError(ConfigError):
    """One or more runbook parameters are invalid.

    Attributes:
        problems: one line per wrong parameter, each naming the parameter, the
            value given and the form expected.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid parameters:\n  " + "\n  ".join(self.problems))

    def __repr__(self) -> str:
        return f"ParameterError(problems={self.problems!r})"


class ServiceError(OpslibError):
    """An outside system did not answer as expected.

    Attributes:
        system: short name of the system ("cloudflare", "platform", ...).
        url: the URL called, without query string secrets.
        status_code: the HTTP status, or None when there was no answer.
        codes: error codes from the answer's envelope, if any.
        request_id: the provider's request or ray id, kept for support tickets.
    """

    def __init__(
        self,
        message: str,
        *,
        system: str,
        url: str = "",
        status_code: int | None = None,
        codes: tuple[int, ...] = (),
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.system = system
        self.url = url
        self.status_code = status_code
        self.codes = codes
        self.request_id = request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(system={self.system!r}, url={self.url!r}, "
            f"status_code={self.status_code!r}, codes={self.codes!r}, "
            f"request_id={self.request_id!r})"
        )


class UnreachableError(ServiceError):
    """The system could not be reached: refused, name not found or timed out.

    Attributes:
        refused: True when no connection opened, so nothing was sent.
    """

    refused = False


class AuthError(ServiceError):
    """The credentials were refused or lack the permission for the call."""


class RateLimitError(ServiceError):
    """The system kept answering 429 after the bounded retries."""


class APIError(ServiceError):
    """The system answered with an error status or an unsuccessful envelope."""


class ActionError(OpslibError):
    """A gated action could not be planned or applied.

    Attributes:
        action: the action's name, such as "rollback".
    """

    def __init__(self, message: str, *, action: str, **context: Any) -> None:
        super().__init__(message)
        self.action = action
        self.context = context

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(action={self.action!r}, context={self.context!r})"
        )


class ConfirmationError(ActionError):
    """The confirm phrase given does not match the one the plan asks for."""


class RunError(OpslibError):
    """A notebook could not be found, run or archived."""
