"""The MailChannels Email API stand-in (STRIPE-AND-FRIENDS.md section 3).

Serves ``POST /tx/v1/send`` (``?dry-run=true`` renders and sends nothing) as the
real API answers it: 202 ``{request_id, results}`` on accept, 200 ``{data}`` for a
dry run, 400 ``{errors}`` for a malformed message. Since free sending for Workers
ended in 2024, a call without ``X-Api-Key`` is refused with 401 and the JSON error
users saw; the scenarios decide, through the switch ``mailchannels_refuse_unauth``,
whether this sandbox still plays the old Worker-origin allowance (healthy) or the
refusal. The sandbox issues no API key, so any key given is refused with 403.

The platform stand-in hands its messages to :func:`deliver` in-process, which runs
the same checks; accepted messages are kept in a short outbox in the scenario's
switches (``mail_outbox``) for the sandbox's own tests.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from email.message import Message
from typing import Any

from ._http import Request, Response
from ._state import World

logger = logging.getLogger(__name__)

SEND_PATH = "/tx/v1/send"
REFUSE_SWITCH = "mailchannels_refuse_unauth"
OUTBOX_SWITCH = "mail_outbox"
OUTBOX_SIZE = 50
NO_SUBSCRIPTION = (
    "customer does not have an active subscription with tx-send capability"
)
_CONTENT_TYPES = ("text/plain", "text/html")


class MailChannelsApp:
    """Request handler of the MailChannels stand-in.

    Args:
        world: the shared sandbox state (switches and outbox).
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, request: Request) -> Response:
        """Answer one call of the Email API."""
        if request.path.rstrip("/") != SEND_PATH:
            return Response.json(404, {"message": "Not Found"})
        if request.method != "POST":
            return Response.json(405, {"message": "Method Not Allowed"})
        refused = _refuse_auth(self.world, request.headers)
        if refused is not None:
            return refused
        try:
            message = request.json()
        except ValueError:
            return _errors(400, ["request body is not valid JSON"])
        return _accept(self.world, message, request.arg("dry-run") == "true")


def deliver(world: World, message: dict[str, Any]) -> Response:
    """Send a message as the platform's Worker does: no API key, not a dry run."""
    refused = _refuse_auth(world, Message())
    if refused is not None:
        return refused
    return _accept(world, message, dry_run=False)


def outbox(world: World) -> list[dict[str, Any]]:
    """Return the messages accepted since the scenario started, oldest first."""
    with world.lock:
        return list(world.scenario.switches.get(OUTBOX_SWITCH) or [])


def _refuse_auth(world: World, headers: Message) -> Response | None:
    if headers.get("X-Api-Key"):
        return _errors(403, ["invalid API key"])
    if world.scenario.switches.get(REFUSE_SWITCH):
        logger.info("mailchannels refused an unauthenticated send")
        return _errors(401, [NO_SUBSCRIPTION])
    return None


def _accept(world: World, message: Any, dry_run: bool) -> Response:
    problems = _problems(message)
    if problems:
        return _errors(400, problems)
    if dry_run:
        return Response.json(200, {"data": [_render(message)]})
    with world.lock:
        sent = world.scenario.switches.setdefault(
            OUTBOX_SWITCH, deque(maxlen=OUTBOX_SIZE)
        )
        sent.append(message)
    results = [
        {"index": i, "message_id": str(uuid.uuid4()), "status": "sent"}
        for i, _ in enumerate(message["personalizations"])
    ]
    return Response.json(202, {"request_id": str(uuid.uuid4()), "results": results})


def _problems(message: Any) -> list[str]:
    """What a send request lacks: personalizations with ``to``, from, subject, content."""
    if not isinstance(message, dict):
        return ["request body must be a JSON object"]
    problems = []
    people = message.get("personalizations")
    if not isinstance(people, list) or not people:
        problems.append("personalizations is required")
    elif not all(isinstance(p, dict) and _has_addresses(p.get("to")) for p in people):
        problems.append("personalizations[].to must list at least one email")
    sender = message.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email") or ""):
        problems.append("from.email is required")
    if not message.get("subject"):
        problems.append("subject is required")
    content = message.get("content")
    if not isinstance(content, list) or not any(
        isinstance(c, dict) and c.get("type") in _CONTENT_TYPES for c in content
    ):
        problems.append("content must hold a text/plain or text/html part")
    return problems


def _has_addresses(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and "@" in str(v.get("email") or "") for v in value)
    )


def _render(message: dict[str, Any]) -> str:
    to = ", ".join(t["email"] for p in message["personalizations"] for t in p["to"])
    body = next(
        c["value"] for c in message["content"] if c.get("type") in _CONTENT_TYPES
    )
    return (
        f"From: {message['from']['email']}\r\nTo: {to}\r\n"
        f"Subject: {message['subject']}\r\n\r\n{body}"
    )


def _errors(status: int, errors: list[str]) -> Response:
    return Response(
        status,
        json.dumps({"errors": errors}).encode("utf-8"),
        [("Content-Type", "application/json")],
    )
