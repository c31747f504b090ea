"""One set of rules for runbook parameter values.

The same rules run twice: in the runner, before any kernel starts, on the values
given with ``-p`` and ``-f``; and in the notebook's setup cell, so that a plain
``papermill`` run is checked too. Rules go by parameter name (see ``NAME_RULES``);
a name without a rule is checked by its type, and every string by the generic
string rule, because papermill writes each value into the record's source.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from ._config import list_environments, where_environments_are
from ._errors import ConfigError, ParameterError

if TYPE_CHECKING:
    from ._notebook import ParameterSpec

SUPPORTED_TYPES = ("str", "int", "float", "bool", "list[str]")
MAX_TEXT_LENGTH = 200
MAX_PATHS = 20
MIN_LOOKBACK = datetime.timedelta(minutes=1)
MAX_LOOKBACK = datetime.timedelta(days=30)
# The most dead letters one queue-delays run may put back (one send batch).
MAX_MESSAGES = 100
MIN_WINDOW_MIN = 5
MAX_WINDOW_MIN = 24 * 60

_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_CUSTOMER_ID = re.compile(r"cus_[A-Za-z0-9]{1,64}")
# Digits are spelled [0-9]: a bare \d also matches other scripts' digits.
_API_VERSION = re.compile(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]\.[a-z]{1,20}")
_BACKUP_KEY = re.compile(r"backup-[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{10,16}\.sql\.gz")
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|\+00:00)"
)
_INCIDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_LOOKBACK_EXPECTED = (
    "a duration from 1m to 30d: a whole number and m, h or d (such as 6h)"
)
_FORBIDDEN_TEXT = frozenset("'\"`\\")
# Unicode categories a one-line value may not hold: control and format characters,
# and the line and paragraph separators (U+2028, U+2029) that end a line too.
_NOT_IN_ONE_LINE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE_WORDS = frozenset({"true", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "no", "0"})

Rule = Callable[[object], "str | None"]
"""A rule returns what was expected when the value breaks it, else None."""


def is_of_type(value: object, type_name: str) -> bool:
    """Tell whether a value already has a declared parameter type.

    ``bool`` is not accepted as an ``int`` or ``float``; an ``int`` is accepted as
    a ``float``.
    """
    if type_name == "list[str]":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if isinstance(value, bool):
        return type_name == "bool"
    if type_name == "float":
        return isinstance(value, (int, float))
    expected = {"str": str, "int": int, "bool": bool}.get(type_name)
    return expected is not None and isinstance(value, expected)


def _duration(value: object) -> datetime.timedelta | None:
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return datetime.timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})


def check_incident_id(value: object) -> str | None:
    """None for a valid incident id; else the form expected."""
    if isinstance(value, str) and _INCIDENT_ID.fullmatch(value):
        return None
    return "1-64 letters, digits, '.', '_' or '-' (such as INC-42)"


def _check_environment(value: object) -> str | None:
    try:
        known = list_environments()
    except ConfigError as error:
        return f"a known environment, but none could be listed ({error})"
    if value in known:
        return None
    if not known:
        return f"a name of an <env>.yaml file in {where_environments_are()}: none there"
    return "one of: " + ", ".join(known)


def _check_lookback(value: object) -> str | None:
    length = _duration(value)
    if length is not None and MIN_LOOKBACK <= length <= MAX_LOOKBACK:
        return None
    return _LOOKBACK_EXPECTED


def _check_window_min(value: object) -> str | None:
    if isinstance(value, int) and MIN_WINDOW_MIN <= value <= MAX_WINDOW_MIN:
        return None
    return f"whole minutes from {MIN_WINDOW_MIN} to {MAX_WINDOW_MIN} (such as 60)"


def _check_paths(value: object) -> str | None:
    expected = (
        f"a list of 1 to {MAX_PATHS} URL paths, each starting with '/' and "
        "without spaces, quotes, backslashes or '://' (such as ['/health'])"
    )
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_PATHS:
        return expected
    return None if all(_is_url_path(item) for item in value) else expected


def _is_url_path(item: object) -> bool:
    return (
        isinstance(item, str)
        and item.startswith("/")
        and len(item) <= MAX_TEXT_LENGTH
        and "://" not in item
        and not any(char.isspace() or char in _FORBIDDEN_TEXT for char in item)
        and not _has_control(item)
    )


def _check_client_ip(value: object) -> str | None:
    expected = "empty, or an IPv4 or IPv6 address without a %zone (such as 203.0.113.7)"
    if value == "":
        return None
    # ipaddress takes any text after '%' as an IPv6 zone: quotes, newlines and all.
    if not isinstance(value, str) or "%" in value:
        return expected
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return expected
    return None


def _check_user_id(value: object) -> str | None:
    if value == "" or (isinstance(value, str) and _USER_ID.fullmatch(value)):
        return None
    return "empty, or a user id: 1-64 letters, digits or '-' (a UUID)"


def _check_user_email(value: object) -> str | None:
    if value == "" or (
        isinstance(value, str)
        and len(value) <= MAX_TEXT_LENGTH
        and _EMAIL.fullmatch(value)
    ):
        return None
    return "empty, or one email address such as user@example.com"


def _check_customer(value: object) -> str | None:
    if value == "" or (
        isinstance(value, str)
        and (_CUSTOMER_ID.fullmatch(value) or _check_user_email(value) is None)
    ):
        return None
    return "empty, a Stripe customer id (cus_...) or one email address"


def _check_max_messages(value: object) -> str | None:
    if isinstance(value, int) and 1 <= value <= MAX_MESSAGES:
        return None
    return f"a whole number from 1 to {MAX_MESSAGES} (messages moved per run)"


def _check_requests_per_route(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
        return None
    return "a whole number of requests per route from 1 to 100 (such as 20)"


_RECORD_ID = re.compile(r"[0-9]{8}T[0-9A-Za-z._-]{0,119}")
_VERSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
MAX_SQL_TEXT = 4000
MAX_WRITE_ROWS = 1000
MAX_READ_ROWS = 5000
MIN_WATCH_S, MAX_WATCH_S = 5, 3600


def _check_record_id(value: object) -> str | None:
    if isinstance(value, str) and _RECORD_ID.fullmatch(value):
        return None
    return "a record id or a unique prefix of one, such as 20261204T1715"


MAX_REPORT_RECORDS = 20


def _check_record_ids(value: object) -> str | None:
    expected = (
        f"a list of 0 to {MAX_REPORT_RECORDS} record ids (or unique prefixes), each "
        "once, such as ['20261204T1715']"
    )
    if not isinstance(value, (list, tuple)) or len(value) > MAX_REPORT_RECORDS:
        return expected
    if len(set(value)) != len(value):
        return expected
    return None if all(_check_record_id(item) is None for item in value) else expected


def _check_version(value: object) -> str | None:
    if value == "" or (isinstance(value, str) and _VERSION_ID.fullmatch(value)):
        return None
    return "a Worker version id (letters, digits and dashes), or empty for the default"


def _check_sql(value: object) -> str | None:
    if value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_SQL_TEXT or _has_control(value):
        return f"one SQL statement on one line of at most {MAX_SQL_TEXT} characters"
    from ._readsecrets import refuse_secret_read
    from ._sqlguard import SQLRefusedError, classify_sql

    try:
        refuse_secret_read(classify_sql(value))
    except SQLRefusedError as error:
        return f"SQL the guard allows ({error.reason})"
    return None


def _check_max_rows(value: object) -> str | None:
    if isinstance(value, int) and 1 <= value <= MAX_WRITE_ROWS:
        return None
    return f"a whole number from 1 to {MAX_WRITE_ROWS}"


def _check_row_limit(value: object) -> str | None:
    if isinstance(value, int) and 1 <= value <= MAX_READ_ROWS:
        return None
    return f"a whole number of rows from 1 to {MAX_READ_ROWS}"


def _check_watch_s(value: object) -> str | None:
    if isinstance(value, int) and MIN_WATCH_S <= value <= MAX_WATCH_S:
        return None
    return f"a whole number of seconds from {MIN_WATCH_S} to {MAX_WATCH_S}"


def _check_api_version(value: object) -> str | None:
    if isinstance(value, str) and _API_VERSION.fullmatch(value):
        return None
    return "a Stripe API version: a date and a name, such as 2024-10-28.acacia"


def _check_backup_key(value: object) -> str | None:
    if value == "" or (isinstance(value, str) and _BACKUP_KEY.fullmatch(value)):
        return None
    return "empty (the newest fitting backup) or a key such as backup-2026-11-27-1795748400417.sql.gz"


def _check_age_days(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 365:
        return None
    return "a whole number of days from 0 to 365 (such as 7)"


def _check_incident_time(value: object) -> str | None:
    if value == "":
        return None
    if isinstance(value, str) and _ISO_TIME.fullmatch(value):
        try:
            datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return None
    return "empty (now) or an ISO 8601 time in UTC such as 2026-11-27T14:30:00Z"


_CHARGE_ID = re.compile(r"(ch|py|pi)_[A-Za-z0-9]{1,64}")
_SUBSCRIPTION_ID = re.compile(r"sub_[A-Za-z0-9]{1,64}")
STRIPE_OPERATIONS = ("", "refund", "cancel", "resend")
MAX_REFUND_CENTS = 10_000_000


def _check_operation(value: object) -> str | None:
    if value in STRIPE_OPERATIONS:
        return None
    return "one of refund, cancel, resend, or empty for reads only"


def _check_charge(value: object) -> str | None:
    if value == "" or (isinstance(value, str) and _CHARGE_ID.fullmatch(value)):
        return None
    return "empty, a Stripe charge id (ch_...) or PaymentIntent id (pi_...)"


def _check_subscription(value: object) -> str | None:
    if value == "" or (isinstance(value, str) and _SUBSCRIPTION_ID.fullmatch(value)):
        return None
    return "empty, or a Stripe subscription id (sub_...)"


def _check_amount_cents(value: object) -> str | None:
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= MAX_REFUND_CENTS
    ):
        return None
    return f"a whole number of cents from 0 (all that is left) to {MAX_REFUND_CENTS}"


def _check_recovery_dir(value: object) -> str | None:
    if value == "" or (
        isinstance(value, str) and check_text(value) is None and Path(value).is_dir()
    ):
        return None
    return "empty, or the path of an existing folder of files the uploaders sent back"


_SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
BREACH_STEPS = ("", "rotate-secret", "purge-sessions")


def _check_breach_step(value: object) -> str | None:
    if value in BREACH_STEPS:
        return None
    return "one of rotate-secret, purge-sessions, or empty for reads only"


def _check_secret_name(value: object) -> str | None:
    if value == "" or (isinstance(value, str) and _SECRET_NAME.fullmatch(value)):
        return None
    return "empty, or a Worker secret name in capitals such as JWT_SECRET"


def _check_apply(value: object) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def check_text(value: object) -> str | None:
    """Apply the generic rule for a string parameter.

    Returns:
        None when the value is a single line of at most 200 characters without
        control, quote or backslash characters; otherwise what was expected.
    """
    if (
        isinstance(value, str)
        and len(value) <= MAX_TEXT_LENGTH
        and not _has_control(value)
        and not _FORBIDDEN_TEXT.intersection(value)
    ):
        return None
    return (
        f"a single line of at most {MAX_TEXT_LENGTH} characters without quotes, "
        "backslashes or control characters"
    )


def is_one_line(text: str) -> bool:
    """True when the text has no control or format character and no line break."""
    return not _has_control(text)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) in _NOT_IN_ONE_LINE for char in text)


NAME_RULES: Mapping[str, tuple[str, Rule]] = MappingProxyType(
    {
        "incident_id": ("str", check_incident_id),
        "environment": ("str", _check_environment),
        "lookback": ("str", _check_lookback),
        "paths": ("list[str]", _check_paths),
        "window_min": ("int", _check_window_min),
        "apply": ("bool", _check_apply),
        "confirm": ("str", check_text),
        "client_ip": ("str", _check_client_ip),
        "user_id": ("str", _check_user_id),
        "user_email": ("str", _check_user_email),
        "max_messages": ("int", _check_max_messages),
        "customer": ("str", _check_customer),
        "requests_per_route": ("int", _check_requests_per_route),
        "backup_key": ("str", _check_backup_key),
        "age_days": ("int", _check_age_days),
        "incident_time": ("str", _check_incident_time),
        "record_id": ("str", _check_record_id),
        "record_ids": ("list[str]", _check_record_ids),
        "version": ("str", _check_version),
        "sql": ("str", _check_sql),
        "max_rows": ("int", _check_max_rows),
        "row_limit": ("int", _check_row_limit),
        "watch_s": ("int", _check_watch_s),
        "api_version": ("str", _check_api_version),
        "operation": ("str", _check_operation),
        "charge": ("str", _check_charge),
        "subscription": ("str", _check_subscription),
        "amount_cents": ("int", _check_amount_cents),
        "recovery_dir": ("str", _check_recovery_dir),
        "step": ("str", _check_breach_step),
        "secret_name": ("str", _check_secret_name),
    }
)
"""Parameter name to (declared type, rule). Other names get ``check_value``'s
type check and, for strings, ``check_text``."""


def check_value(name: str, value: object) -> str | None:
    """Check one parameter value against the rule for its name.

    Returns:
        None when the value is good, else one line naming the parameter, the
        value seen and what was expected.
    """
    if name in NAME_RULES:
        type_name, rule = NAME_RULES[name]
        expected = _type_problem(value, type_name) or rule(value)
    else:
        expected = _generic_problem(value)
    return _problem(name, value, expected) if expected else None


def _type_problem(value: object, type_name: str) -> str | None:
    if isinstance(value, tuple) and type_name == "list[str]":
        value = list(value)
    return None if is_of_type(value, type_name) else _a_type(type_name)


def _generic_problem(value: object) -> str | None:
    if isinstance(value, str):
        return check_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, (bool, int, float)):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        problems = [check_text(item) for item in value]
        return next((f"a list whose items are each {p}" for p in problems if p), None)
    return "a str, int, float, bool or list of str"


def _a_type(type_name: str) -> str:
    return {
        "str": "text (a str)",
        "int": "a whole number (an int)",
        "float": "a number (a float)",
        "bool": "true or false (a bool)",
        "list[str]": "a list of strings",
    }[type_name]


def _problem(name: str, value: object, expected: str) -> str:
    return f"{name}: got {_show(value)} — expected {expected}"


def _show(value: object) -> str:
    text = repr(value)
    if len(text) <= 60:
        return text
    return f"{text[:40]}… ({len(text)} characters)"


class Params(Mapping[str, Any]):
    """The validated parameters of one run: read-only, with attribute access.

    ``params.incident_id`` and ``params["incident_id"]`` read the same value. List
    values are kept as tuples so nothing can change them; ``as_dict()`` gives a
    plain copy with lists.
    """

    __slots__ = ("_values",)
    _values: Mapping[str, Any]

    def __init__(self, values: Mapping[str, object]) -> None:
        frozen = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        object.__setattr__(self, "_values", MappingProxyType(frozen))

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(self._values) or "none"
            raise AttributeError(
                f"no parameter {name!r} in this run; it has: {known}"
            ) from None

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"parameters are read-only; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"parameters are read-only; cannot delete {name!r}")

    def __repr__(self) -> str:
        return f"Params({dict(self._values)!r})"

    def as_dict(self) -> dict[str, object]:
        """Return a plain, mutable copy, with lists where the values are tuples."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()
        }


def validate_params(**values: object) -> Params:
    """Check a notebook's parameters and return them read-only.

    Call it in a notebook's setup cell with every parameter of its parameters
    cell, so that a run started by plain papermill is checked as strictly as one
    started by ``runbook run``.

    Returns:
        The same values as a read-only ``Params``.

    Raises:
        ParameterError: listing every value that breaks its rule, at once.
    """
    problems = [p for name, v in values.items() if (p := check_value(name, v))]
    if problems:
        raise ParameterError(problems)
    return Params(values)


def coerce_parameters(
    spec: Mapping[str, ParameterSpec],
    given: Mapping[str, object],
    *,
    raw: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """Turn given values into the types a notebook declares, and check them.

    Args:
        spec: the notebook's parameters, as ``read_parameters`` returns them.
        given: values by name; those named in ``raw`` are text from ``-p name
            value``, the rest already typed by a YAML parameter file.
        raw: the names whose value is command-line text.

    Returns:
        The given values, converted to their declared types. Defaults are not
        included, though they are checked along with the given values.

    Raises:
        ParameterError: listing every unknown name, unconvertible value and value
            that breaks its rule, at once.
    """
    problems = [_unknown(name, spec) for name in given if name not in spec]
    converted: dict[str, object] = {}
    for name, parameter in spec.items():
        if name in given:
            value = given[name]
            expected = _convert_into(converted, name, value, parameter, name in raw)
            problems += [_problem(name, value, expected)] if expected else []
        elif problem := check_value(name, parameter.default):
            problems.append(problem + " (the notebook's default; pass a value)")

    problems += [p for name, v in converted.items() if (p := check_value(name, v))]
    if problems:
        raise ParameterError(problems)
    return converted


def _convert_into(
    out: dict[str, object], name: str, value: object, spec: ParameterSpec, is_raw: bool
) -> str | None:
    try:
        if is_raw and isinstance(value, str):
            out[name] = _from_text(value, spec.type_name)
        else:
            out[name] = _from_yaml(value, spec.type_name)
    except _ConversionError as error:
        return str(error)
    return None


class _ConversionError(Exception):
    """A value cannot take its declared type; the message says what was expected."""


def _unknown(name: str, spec: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(spec), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    takes = ", ".join(sorted(spec)) or "no parameters"
    return f"unknown parameter {name!r}{hint} — this notebook takes: {takes}"


def _from_text(text: str, type_name: str) -> object:
    word = text.strip().lower()
    if type_name == "bool" and word in _TRUE_WORDS | _FALSE_WORDS:
        return word in _TRUE_WORDS
    if type_name == "int" and _INTEGER.fullmatch(text.strip()):
        return int(text)
    if type_name == "float" and _DECIMAL.fullmatch(text.strip()):
        return float(text)
    if type_name == "list[str]":
        return _list_from_text(text)
    if type_name == "str":
        return text
    hints = {
        "bool": "true or false (also yes/no or 1/0)",
        "int": "a whole number such as 30",
        "float": "a number such as 0.5",
    }
    raise _ConversionError(hints[type_name])


def _list_from_text(text: str) -> list[str]:
    if not text.strip().startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise _ConversionError(
            "a list such as [/health, /api/v1] or a comma-separated string"
        ) from error
    return _list_from_yaml(value)


def _from_yaml(value: object, type_name: str) -> object:
    if value is None:
        raise _ConversionError(
            f"{_a_type(type_name)}; give a value, or leave the name out to keep "
            "the default"
        )
    if type_name == "str":
        return _text_from_yaml(value)
    if type_name == "list[str]":
        return (
            _list_from_text(value) if isinstance(value, str) else _list_from_yaml(value)
        )
    if type_name == "float" and isinstance(value, (int, float)):
        return _float_from_yaml(value)
    if is_of_type(value, type_name):
        return value
    raise _ConversionError(_a_type(type_name))


def _float_from_yaml(value: float) -> float:
    if isinstance(value, bool):
        raise _ConversionError(_a_type("float"))
    if not math.isfinite(value):
        raise _ConversionError("a finite number (a float)")
    return float(value)


def _text_from_yaml(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise _ConversionError(
            "text; YAML reads yes, no, on, off, true and false as booleans, so "
            "quote the value, such as 'yes'"
        )
    if isinstance(value, (int, float)):
        raise _ConversionError(
            f"text; YAML read it as the number {value!r} (0x1F, 017, 1_000 and 12:30 "
            "are numbers too), so quote the value as it should read, such as 'INC-42'"
        )
    if isinstance(value, (datetime.date, datetime.datetime)):
        raise _ConversionError(
            f"text; YAML reads an unquoted date as a date, so quote it, such as "
            f"'{value.isoformat()}'"
        )
    raise _ConversionError("text (a str); quote the value in the YAML file")


def _list_from_yaml(value: object) -> list[str]:
    if not isinstance(value, list):
        raise _ConversionError(_a_type("list[str]"))
    items = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise _ConversionError(
                f"a list of strings, but item {item!r} is not text; quote it"
            )
        items.append(item)
    return items


def load_parameter_file(path: str | Path) -> dict[str, object]:
    """Read a parameter file: a flat YAML mapping of parameter names to values.

    Values keep the types YAML gives them (YAML 1.1: unquoted ``yes`` is a bool and
    ``2025-11-01`` a date); ``coerce_parameters`` then reports any that do not fit.
    An empty file means no parameters.

    Raises:
        ParameterError: when the file cannot be read or is not a flat mapping with
            string keys.
    """
    data = _read_yaml(Path(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError([_file_problem(path, f"got a {type(data).__name__}")])
    problems = [
        _file_problem(path, f"key {k!r} {why}") for k, why in _flat_problems(data)
    ]
    if problems:
        raise ParameterError(problems)
    return {str(key): value for key, value in data.items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice instead of keeping the last."""


def _construct_unique_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[object, object]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ParameterError([_file_problem(path, _read_problem(error))]) from error


def _file_problem(path: str | Path, problem: str) -> str:
    return (
        f"parameter file {str(path)!r}: {problem}; expected a flat YAML mapping "
        "such as 'incident_id: INC-42'"
    )


def _read_problem(error: Exception) -> str:
    mark = getattr(error, "problem_mark", None)
    if isinstance(error, yaml.YAMLError) and mark is not None:
        problem = getattr(error, "problem", None) or "syntax error"
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"not valid YAML at {where} ({problem})"
    return " ".join(str(error).split())


def _flat_problems(data: dict[object, object]) -> Iterator[tuple[object, str]]:
    for key, value in data.items():
        if not isinstance(key, str):
            yield key, "is not text"
        elif isinstance(value, dict):
            yield key, "holds a nested mapping"
