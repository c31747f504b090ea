"""A thin client for the MailChannels Email API: send and dry-run send.

The platform's Worker posts its emails to ``/tx/v1/send`` without an API key. Since
MailChannels ended free sending for Workers (2024), such calls are refused: 401 or
403, with a JSON ``errors`` list such as "customer does not have an active
subscription with tx-send capability", or an nginx HTML page. A dry run
(``?dry-run=true``) renders the message and sends nothing, so it is the cheap probe
of credentials and payload (STRIPE-AND-FRIENDS.md section 3).

Base URL: the environment's ``mailchannels_url`` (ending in ``/tx/v1``). Key:
``MAILCHANNELS_API_KEY``, sent only when the caller asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._config import Environment
from ._errors import ConfigError
from ._http import HttpClient, json_body

logger = logging.getLogger(__name__)

KEY_VARIABLE = "MAILCHANNELS_API_KEY"
BODY_SHOWN = 200


@dataclass(frozen=True)
class SendAnswer:
    """What MailChannels answered to one send.

    Attributes:
        status_code: the HTTP status (202 accepted, 200 dry run).
        errors: the error messages of the answer's ``errors`` or ``message``.
        body: the first 200 characters of a body that was not JSON.
        request_id: MailChannels' request id of an accepted send.
    """

    status_code: int
    errors: tuple[str, ...] = ()
    body: str = ""
    request_id: str = ""

    @property
    def is_accepted(self) -> bool:
        """True for 202 (accepted) or 200 (dry run rendered)."""
        return self.status_code in (200, 202)

    @property
    def is_refused(self) -> bool:
        """True when the credentials or the sending domain were refused."""
        return self.status_code in (401, 403)

    @property
    def reason(self) -> str:
        """One line saying why the send was not accepted."""
        text = "; ".join(self.errors) or self.body or "no detail"
        return f"HTTP {self.status_code}: {text}"


class MailChannelsClient:
    """Sends, or dry-runs, one message through MailChannels.

    Args:
        environment: the environment whose ``mailchannels_url`` to use.
        use_key: send ``MAILCHANNELS_API_KEY`` as ``X-Api-Key``; False sends as the
            platform's Worker does, without a key.
        timeout: seconds per request.

    Raises:
        ConfigError: when the environment names no MailChannels URL, or a key is
            asked for and not set.
    """

    def __init__(
        self,
        environment: Environment,
        *,
        use_key: bool = False,
        timeout: float | None = None,
    ) -> None:
        if not environment.mailchannels_url:
            raise ConfigError(
                f"environment {environment.name!r} has no mailchannels_url; add it "
                "to its YAML file (such as https://api.mailchannels.net/tx/v1)"
            )
        headers = {"Content-Type": "application/json"}
        if use_key:
            key = environment.secret(KEY_VARIABLE)
            if not key:
                raise ConfigError(f"{KEY_VARIABLE} is not set; cannot send with a key")
            headers["X-Api-Key"] = key
        self._http = HttpClient(
            "mailchannels",
            environment.mailchannels_url + "/",
            headers=headers,
            timeout=environment.timeout(timeout, 15.0),
            retries=0,
        )

    def send(self, message: Mapping[str, Any], *, dry_run: bool = True) -> SendAnswer:
        """Post a message to ``send``; a dry run (the default) sends nothing.

        Raises:
            UnreachableError: when MailChannels does not answer.
            APIError: when a 2xx answer's body is not JSON (cut short, say).
        """
        params = {"dry-run": "true"} if dry_run else None
        response = self._http.request(
            "POST", "send", json=dict(message), params=params, idempotent=dry_run
        )
        if response.is_success and response.content:
            # An accepted send must say so in JSON; half an answer is no answer.
            return _answer(response.status_code, json_body(response, "mailchannels"))
        try:
            payload = response.json()
        except ValueError:
            return SendAnswer(response.status_code, body=response.text[:BODY_SHOWN])
        return _answer(response.status_code, payload)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def build_message(
    *, sender: str, recipient: str, subject: str, text: str, sender_name: str = ""
) -> dict[str, Any]:
    """Build a send body with one recipient and a text/plain part."""
    origin: dict[str, str] = {"email": sender}
    if sender_name:
        origin["name"] = sender_name
    return {
        "personalizations": [{"to": [{"email": recipient}]}],
        "from": origin,
        "subject": subject,
        "content": [{"type": "text/plain", "value": text}],
    }


def _answer(status: int, payload: Any) -> SendAnswer:
    if not isinstance(payload, dict):
        return SendAnswer(status, body=str(payload)[:BODY_SHOWN])
    errors = payload.get("errors") or []
    if isinstance(errors, str):
        errors = [errors]
    if payload.get("message") and status >= 300:
        errors = [*errors, str(payload["message"])]
    return SendAnswer(
        status,
        tuple(str(e)[:BODY_SHOWN] for e in errors),
        request_id=str(payload.get("request_id") or ""),
    )
