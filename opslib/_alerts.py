"""Alerts from outside senders, read and mapped onto the runbook that diagnoses them.

Two senders are understood:

- an UptimeRobot webhook alert contact. UptimeRobot fills the operator's template
  with ``*variable*`` placeholders and sends it as a query string, as POST form
  fields or as a JSON body; a placeholder that does not apply arrives as the
  literal ``*name*``, which counts as absent here. A down alert (``alertType`` 1)
  runs api-down, or stripe-webhooks when the monitor watches the platform's
  Stripe webhook path; up alerts (2) and certificate or domain notices (3) start
  nothing.
- a Stripe event, already verified by its signature (``_alertserver``).
  ``invoice.payment_failed`` runs the read-only part of the stripe procedure for
  the invoice's customer (unpaid invoices and Stripe's retries);
  ``checkout.session.completed`` in subscription mode runs
  payment-without-subscription for the session's customer. Every other event
  starts nothing. Stripe sends no event when a webhook endpoint fails or is
  disabled (it mails the account), so that trouble can only come in as an
  UptimeRobot alert on the webhook path.

Nothing here runs anything; the mapped parameters never include ``apply`` or
``confirm``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._config import Environment
from ._errors import OpslibError, ParameterError
from ._notebook import ParameterSpec
from ._params import MAX_PATHS, check_value

UPTIMEROBOT = "uptimerobot"
STRIPE = "stripe"
UPTIMEROBOT_FIELDS = (
    "monitorID",
    "monitorURL",
    "monitorFriendlyName",
    "alertType",
    "alertTypeFriendlyName",
    "alertDetails",
    "alertDateTime",
)
# The platform's Stripe webhook routes (PLATFORM.md section 5).
WEBHOOK_PATHS = ("/webhooks/stripe", "/payments/webhook")
ALERT_DOWN, ALERT_UP, ALERT_NOTICE = "1", "2", "3"

_PLACEHOLDER = re.compile(r"\*[A-Za-z]+\*")
_DIGITS = re.compile(r"\d{1,20}")
# Unix seconds as UptimeRobot sends them; ten digits last until the year 2286,
# so a value in milliseconds is refused rather than read as a far future.
_UNIX_SECONDS = re.compile(r"\d{1,10}")
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9]{1,60}")
CUSTOMER_PREFIX = "cus_"
_MAX_TEXT = 2000
_MAX_SUMMARY = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class AlertError(OpslibError, ValueError):
    """An alert's body or fields are malformed; the sender gets a 400."""


@dataclass(frozen=True)
class AlertRun:
    """A runbook run an alert asks for.

    Attributes:
        source: ``uptimerobot`` or ``stripe``.
        key: what makes two deliveries the same alert (the duplicate check).
        runbook: the runbook to run, such as ``api-down``.
        parameters: its parameters, typed; never ``apply`` or ``confirm``.
        summary: one line on what the alert said, for the log and the answer.
        wait_for_platform: True when the run should start only after the
            platform's own webhook handler had a moment with the same event.
        sources: for each parameter, the alert field it was made from (such
            as ``data.object.customer``), so a value the run would refuse is
            answered naming the field the sender filled.
    """

    source: str
    key: str
    runbook: str
    parameters: dict[str, object] = field(default_factory=dict)
    summary: str = ""
    wait_for_platform: bool = False
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IgnoredAlert:
    """An alert that starts nothing, and why."""

    source: str
    reason: str


def read_uptimerobot_fields(
    query: str, body: bytes, content_type: str
) -> dict[str, str]:
    """Gather UptimeRobot's variables from the query string and the body.

    Args:
        query: the request's query string (UptimeRobot's "query string" format).
        body: the request body: JSON, form fields, or empty.
        content_type: the request's Content-Type header.

    Returns:
        Each known variable that has a value; the body wins over the query.
        Values still holding a literal ``*placeholder*`` are left out.

    Raises:
        AlertError: a body that is neither a JSON object nor form fields, or a
            variable given twice with different values in the query or the body.
    """
    fields = _single_fields(parse_qsl(query, keep_blank_values=True), "query")
    if body.strip():
        fields.update(_body_fields(body, content_type))
    known = {name: fields.get(name) for name in UPTIMEROBOT_FIELDS}
    return {
        name: _clipped(value.strip())
        for name, value in known.items()
        if value is not None and value.strip() and not _PLACEHOLDER.fullmatch(value)
    }


def _body_fields(body: bytes, content_type: str) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AlertError(
            "body: not UTF-8 text; expected a JSON object or form fields"
        ) from error
    if "json" in content_type.lower() or text.lstrip().startswith("{"):
        return _json_fields(text)
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        raise AlertError(
            f"body: got {text[:80]!r}; expected a JSON object or form fields "
            "such as monitorID=*monitorID*&alertType=*alertType*"
        )
    return _single_fields(pairs, "body")


def _single_fields(pairs: list[tuple[str, str]], where: str) -> dict[str, str]:
    """Form fields as a dict; a known variable given twice is refused, since
    which value UptimeRobot meant cannot be told."""
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields and name in UPTIMEROBOT_FIELDS and fields[name] != value:
            raise AlertError(
                f"{name}: given twice in the {where} ({fields[name][:40]!r} and "
                f"{value[:40]!r}); expected it once"
            )
        fields[name] = value
    return fields


def read_json_object(text: str, expected: str) -> dict[str, Any]:
    """Parse a body that must hold one JSON object.

    Raises:
        AlertError: invalid JSON, JSON nested deeper than the parser can go,
            or JSON of another kind; ``expected`` says what the object should be.
    """
    try:
        data = json.loads(text)
    except ValueError as error:
        raise AlertError(f"body: not valid JSON ({error})") from error
    except RecursionError as error:
        # The parser recurses per level: a short body of brackets exhausts it.
        raise AlertError(
            f"body: JSON nested too deeply; expected {expected}, whose values "
            "nest a few levels at most"
        ) from error
    if not isinstance(data, dict):
        raise AlertError(f"body: got a JSON {type(data).__name__}; expected {expected}")
    return data


def _json_fields(text: str) -> dict[str, str]:
    data = read_json_object(
        text,
        'an object of UptimeRobot variables such as {"monitorID": ..., '
        '"alertType": ...}',
    )
    return {
        str(name): str(value)
        for name, value in data.items()
        if isinstance(value, (str, int, float)) and not isinstance(value, bool)
    }


def _one_line(text: str) -> str:
    """Sender text made safe for a log line: no line breaks or control bytes."""
    return _CONTROL.sub(" ", text)[:_MAX_SUMMARY]


def _clipped(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT]


def map_uptimerobot(
    fields: Mapping[str, str], environment: Environment
) -> AlertRun | IgnoredAlert:
    """Decide what an UptimeRobot alert runs.

    Args:
        fields: the variables ``read_uptimerobot_fields`` returned.
        environment: the environment the runs go against; its ``platform_url``
            tells whether the monitor watches the platform's API.

    Raises:
        AlertError: ``monitorID`` or ``alertType`` missing or malformed;
            ``alertDateTime`` there but not unix seconds; a ``monitorURL`` on
            the platform whose path the run's ``paths`` rule refuses.
    """
    monitor_id = _required(fields, "monitorID", _DIGITS, "a numeric monitor id")
    alert_type = _required(fields, "alertType", re.compile("[123]"), "1, 2 or 3")
    if alert_type == ALERT_UP:
        return IgnoredAlert(UPTIMEROBOT, "an up alert: the monitor recovered")
    if alert_type == ALERT_NOTICE:
        return IgnoredAlert(
            UPTIMEROBOT,
            "a certificate or domain expiry notice: no runbook diagnoses it",
        )

    when = _alert_time(fields)
    runbook, parameters, watched = _runbook_for_monitor(
        fields.get("monitorURL", ""), environment
    )
    incident_id = "-".join(["UR", monitor_id, *([when] if when else [])])
    name = fields.get("monitorFriendlyName") or f"monitor {monitor_id}"
    details = fields.get("alertDetails", "")
    return AlertRun(
        source=UPTIMEROBOT,
        key=f"{UPTIMEROBOT}:{monitor_id}:{when}",
        runbook=runbook,
        parameters={"incident_id": incident_id, **parameters},
        summary=_one_line(f"{name} down ({details or 'no details'}); {watched}"),
        sources={"incident_id": "monitorID and alertDateTime"},
    )


def _alert_time(fields: Mapping[str, str]) -> str:
    """``alertDateTime`` as unix seconds, or "" when the template leaves it out.

    Absent (not in the template, or still the literal placeholder) only makes
    the incident id and the duplicate check coarser: the alert still runs.
    A value that is there but not unix seconds means the template or a proxy
    rewrote it; it is refused so the incident id never silently loses it.

    Raises:
        AlertError: naming ``alertDateTime`` and the form expected.
    """
    when = fields.get("alertDateTime")
    if when is None or _PLACEHOLDER.fullmatch(when):
        return ""
    if _UNIX_SECONDS.fullmatch(when):
        return when
    raise AlertError(
        f"alertDateTime: got {when[:80]!r}; expected unix seconds such as "
        "1796380000 (UptimeRobot's *alertDateTime*), or leave it out of the template"
    )


def _required(
    fields: Mapping[str, str], name: str, pattern: re.Pattern[str], expected: str
) -> str:
    value = fields.get(name)
    if value is None:
        raise AlertError(
            f"{name}: missing; expected {expected} (put *{name}* in the "
            "UptimeRobot webhook template)"
        )
    if not pattern.fullmatch(value):
        raise AlertError(f"{name}: got {value[:80]!r}; expected {expected}")
    return value


def _runbook_for_monitor(
    url: str, environment: Environment
) -> tuple[str, dict[str, object], str]:
    """The runbook, its extra parameters, and what the monitor watches, in words."""
    parts = urlsplit(url) if "://" in url else None
    platform = urlsplit(environment.platform_url)
    if parts is None or parts.netloc.rpartition("@")[2] != platform.netloc:
        return "api-down", {}, "the monitor does not watch the platform's API"
    path = parts.path or "/"
    if path.rstrip("/") in WEBHOOK_PATHS:
        return "stripe-webhooks", {}, f"the monitor watches the webhook path {path}"
    problem = check_value("paths", [path])
    if problem:
        # The run would refuse it in its paths; dropping it would probe
        # everything but what the monitor saw fail.
        raise AlertError(f"monitorURL: its path maps to a bad api-down {problem}")
    return "api-down", {"probe_path": path}, f"the monitor watches {path}"


def map_stripe_event(event: Mapping[str, Any]) -> AlertRun | IgnoredAlert:
    """Decide what a verified Stripe event runs.

    Raises:
        AlertError: an event without a string ``id``, ``type`` or an object in
            ``data.object``; an event that starts a run whose
            ``data.object.customer`` is there but not a Stripe customer id.
    """
    event_id = event.get("id")
    kind = event.get("type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        shown = repr(event_id[:80] if isinstance(event_id, str) else event_id)[:90]
        raise AlertError(f"id: got {shown}; expected a Stripe event id (evt_...)")
    if not isinstance(kind, str) or not isinstance(obj, dict):
        raise AlertError(
            "type and data.object: expected a Stripe event with a type name and "
            "the object it is about"
        )

    if kind == "invoice.payment_failed":
        customer = _event_customer(obj)
        return _stripe_run(event_id, "stripe", customer, f"{kind} {obj.get('id')}")
    if kind == "checkout.session.completed" and obj.get("mode") == "subscription":
        customer = _event_customer(obj)
        run = _stripe_run(
            event_id, "payment-without-subscription", customer, f"{kind} (subscription)"
        )
        return dataclasses.replace(run, wait_for_platform=True)
    if kind == "checkout.session.completed":
        return IgnoredAlert(
            STRIPE, f"a checkout in {obj.get('mode')!r} mode: no subscription expected"
        )
    return IgnoredAlert(STRIPE, f"event type {kind!r} starts no runbook")


def _event_customer(obj: Mapping[str, Any]) -> str:
    """The event object's customer id; "" when the object names none (null).

    The id is held to the run's own ``customer`` rule (``_params``) and must
    be a Stripe id, not the email address that rule also takes.

    Raises:
        AlertError: a customer that is not ``cus_`` and Stripe's id characters,
            naming ``data.object.customer``.
    """
    customer = obj.get("customer")
    if customer is None:
        return ""
    if (
        isinstance(customer, str)
        and customer.startswith(CUSTOMER_PREFIX)
        and check_value("customer", customer) is None
    ):
        return customer
    shown = (
        repr(customer[:80]) if isinstance(customer, str) else json.dumps(customer)[:80]
    )
    raise AlertError(
        f"data.object.customer: got {shown}; expected a Stripe customer id: "
        f"{CUSTOMER_PREFIX} and 1-64 letters or digits, such as cus_Q3f9ZkT1aB7x"
    )


def _stripe_run(event_id: str, runbook: str, customer: str, what: str) -> AlertRun:
    who = customer or "no customer named"
    return AlertRun(
        source=STRIPE,
        key=f"{STRIPE}:{event_id}",
        runbook=runbook,
        parameters={"incident_id": event_id, "customer": customer},
        summary=_one_line(f"{what} for {who}"),
        sources={"incident_id": "id", "customer": "data.object.customer"},
    )


def mapping_refusal(run: AlertRun, error: ParameterError) -> str:
    """What to answer when the run would refuse the parameters an alert maps to.

    Each problem is the run's own message (the one ``runbook run`` gives for
    the same value), led by the alert field the parameter was made from.
    """
    lines = []
    for problem in error.problems:
        name = problem.partition(":")[0]
        field_name = run.sources.get(name)
        lead = f"{field_name}: " if field_name else ""
        lines.append(f"{lead}maps to a bad {run.runbook} parameter {problem}")
    return "; ".join(lines)


def notebook_parameters(
    run: AlertRun, specs: Mapping[str, ParameterSpec]
) -> dict[str, object]:
    """The parameters to run ``run.runbook`` with, always as a dry run.

    A monitored path joins the notebook's default probe paths when it is a
    valid path; ``apply`` is set to False whenever the notebook declares it, so
    the record shows that nothing could be applied.
    """
    values = {k: v for k, v in run.parameters.items() if k in specs}
    probe = run.parameters.get("probe_path")
    if "paths" in specs and isinstance(probe, str):
        default = specs["paths"].default
        paths = [str(p) for p in default] if isinstance(default, list) else []
        paths += [] if probe in paths or len(paths) >= MAX_PATHS else [probe]
        if check_value("paths", paths) is None:
            values["paths"] = paths
    values.pop("confirm", None)
    if "apply" in specs:
        values["apply"] = False
    return values
