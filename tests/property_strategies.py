"""Generators for the property tests of runbook parameters and of the gate.

Every generator here knows by its own construction whether what it makes is valid:
the valid values are built from the forms the rules document (``opslib._params``),
the invalid ones by breaking a form on purpose (a wrong type, a hostile character,
a number out of range, an id of the wrong shape). Nothing here asks the code under
test which values it accepts.
"""

from __future__ import annotations

import datetime
import ipaddress
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "parameters" / "examples"

# 200 examples per property; the same ones on every machine and every run.
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

LETTERS_DIGITS = string.ascii_letters + string.digits
# Characters no parameter value may hold: quotes, backslash, control and format
# characters, and the Unicode line and paragraph separators.
HOSTILE_CHARS = (
    "'",
    '"',
    "`",
    "\\",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u200b",
    "\u200e",
    "\u202e",
    "\u2066",
    "\ufeff",
)
# Look-alikes and other scripts' digits: fine in free text, never in an id.
LOOK_ALIKES = (
    "\u0430",  # Cyrillic a
    "\u0441",  # Cyrillic es
    "\u03bf",  # Greek omicron
    "\uff11",  # full-width 1
    "\u0662",  # Arabic-Indic 2
    "\u00e9",  # e with acute
    "\u0131",  # dotless i
)
SPACES = (" ", "\u00a0", "\u2003", "\u3000")
MAX_TEXT = 200


@dataclass(frozen=True)
class Given:
    """One value a run is given, and whether the rules must accept it.

    Attributes:
        name: the parameter name as given.
        value: the value: text for ``-p``, else as a YAML file would type it.
        raw: True for ``-p name value`` text.
        valid: what the generator built: an acceptable value or a broken one.
        phase: which check must report it: 0 the environment conflict, 1 the
            parameter rules, 2 the record lookup in the archive.
    """

    name: str
    value: object
    raw: bool
    valid: bool
    phase: int = 1


def text_of(alphabet: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(alphabet), min_size=min_size, max_size=max_size)


def lead_and_rest(first: str, rest: str, longest: int) -> st.SearchStrategy[str]:
    """An id: one character of ``first``, then up to ``longest - 1`` of ``rest``."""
    return st.builds(
        lambda a, b: a + b, text_of(first, 1, 1), text_of(rest, 0, longest - 1)
    )


def inject(
    base: st.SearchStrategy[str], chars: tuple[str, ...]
) -> st.SearchStrategy[str]:
    """Put one of ``chars`` somewhere inside a value drawn from ``base``."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        text = draw(base)
        where = draw(st.integers(0, len(text)))
        return text[:where] + draw(st.sampled_from(chars)) + text[where:]

    return build()


def inside(
    base: st.SearchStrategy[str], chars: tuple[str, ...]
) -> st.SearchStrategy[str]:
    """Like ``inject``, but strictly between two characters of the value."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        text = draw(base.filter(lambda t: len(t) >= 2))
        where = draw(st.integers(1, len(text) - 1))
        return text[:where] + draw(st.sampled_from(chars)) + text[where:]

    return build()


def too_long(base: st.SearchStrategy[str], longest: int) -> st.SearchStrategy[str]:
    """A value from ``base`` padded past ``longest`` characters with its own text."""
    return base.filter(bool).map(
        lambda t: (t * (longest // len(t) + 2))[: longest + 1 + len(t)]
    )


def free_text(max_size: int = MAX_TEXT) -> st.SearchStrategy[str]:
    """Text the generic rule accepts: one line, no quotes, backslashes or controls."""
    return st.text(
        st.characters(
            exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
            exclude_characters="'\"`\\",
        ),
        max_size=max_size,
    )


# ---- valid values, by parameter name -------------------------------------------

INCIDENT_ID = lead_and_rest(LETTERS_DIGITS, LETTERS_DIGITS + "._-", 64)
USER_ID = lead_and_rest(LETTERS_DIGITS, LETTERS_DIGITS + "-", 64)
SECRET_NAME = lead_and_rest(
    string.ascii_uppercase, string.ascii_uppercase + string.digits + "_", 64
)
RECORD_ID = st.builds(
    lambda d, t: d + "T" + t,
    text_of(string.digits, 8, 8),
    text_of(LETTERS_DIGITS + "._-", 0, 119),
)
LABEL = text_of(LETTERS_DIGITS + "-", 1, 20)
EMAIL = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    text_of(LETTERS_DIGITS + "._%+-", 1, 30),
    st.lists(LABEL, min_size=2, max_size=3),
)


@st.composite
def lookbacks(draw: st.DrawFn) -> str:
    unit, most = draw(st.sampled_from([("m", 30 * 24 * 60), ("h", 30 * 24), ("d", 30)]))
    return f"{draw(st.integers(1, most))}{unit}"


IPV4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
IPV6 = st.builds(
    lambda n, full: (lambda a: a.exploded if full else a.compressed)(
        ipaddress.IPv6Address(n)
    ),
    st.integers(0, 2**128 - 1),
    st.booleans(),
)
# A URL path: '/', then characters that are neither spaces, quotes, backslashes,
# controls nor ':' (so never '://'), nor ',' (so a -p list splits where meant).
PATH_CHAR = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Zs"),
    exclude_characters="'\"`\\:,[]",
)
URL_PATH = st.builds(lambda t: "/" + t, st.text(PATH_CHAR, max_size=60))
BACKUP_KEY = st.builds(
    lambda y, m, d, ms: f"backup-{y}-{m}-{d}-{ms}.sql.gz",
    text_of(string.digits, 4, 4),
    text_of(string.digits, 2, 2),
    text_of(string.digits, 2, 2),
    text_of(string.digits, 10, 16),
)


@st.composite
def iso_times(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(datetime.datetime(2000, 1, 1), datetime.datetime(2099, 12, 31))
    )
    text = moment.strftime("%Y-%m-%dT%H:%M")
    precision = draw(st.sampled_from(["minutes", "seconds", "fraction"]))
    if precision != "minutes":
        text += moment.strftime(":%S")
    if precision == "fraction":
        text += "." + moment.strftime("%f")[: draw(st.integers(1, 6))]
    return text + draw(st.sampled_from(["Z", "+00:00"]))


API_VERSION = st.builds(
    lambda y, m, d, name: f"20{y}-{m}-{d}.{name}",
    text_of(string.digits, 2, 2),
    st.builds(lambda a, b: a + b, text_of("01", 1, 1), text_of(string.digits, 1, 1)),
    st.builds(lambda a, b: a + b, text_of("0123", 1, 1), text_of(string.digits, 1, 1)),
    text_of(string.ascii_lowercase, 1, 20),
)
TABLES = ("users", "manuscripts", "subscriptions", "payment_history")
COLUMNS = ("id", "email", "role", "status", "user_id")
SQL_VALUE = text_of(LETTERS_DIGITS + " @.-", 0, 20)
SQL_WRITE = st.one_of(
    st.builds(
        lambda t, c, v, w, x: f"UPDATE {t} SET {c} = '{v}' WHERE {w} = '{x}'",
        st.sampled_from(TABLES),
        st.sampled_from(COLUMNS),
        SQL_VALUE,
        st.sampled_from(COLUMNS),
        SQL_VALUE,
    ),
    st.builds(
        lambda t, c, n: f"DELETE FROM {t} WHERE {c} = {n}",
        st.sampled_from(TABLES),
        st.sampled_from(COLUMNS),
        st.integers(0, 10**6),
    ),
    st.builds(
        lambda t, c, v: f"INSERT INTO {t} ({c}) VALUES ('{v}')",
        st.sampled_from(TABLES),
        st.sampled_from(COLUMNS),
        SQL_VALUE,
    ),
    st.builds(
        lambda i, t, c: f"CREATE INDEX idx_{i} ON {t} ({c})",
        text_of(string.ascii_lowercase, 1, 12),
        st.sampled_from(TABLES),
        st.sampled_from(COLUMNS),
    ),
)


def optional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.just(""), strategy)


def prefixed(prefix: str) -> st.SearchStrategy[str]:
    return st.builds(lambda t: prefix + t, text_of(LETTERS_DIGITS, 1, 64))


def valid_values(recovery_dir: str) -> dict[str, st.SearchStrategy[object]]:
    """Strategies of acceptable typed values, by parameter name."""
    return {
        "incident_id": INCIDENT_ID,
        "environment": st.just("sandbox"),
        "lookback": lookbacks(),
        "paths": st.lists(URL_PATH, min_size=1, max_size=20),
        "window_min": st.integers(5, 24 * 60),
        "apply": st.booleans(),
        "confirm": free_text(),
        "client_ip": optional(st.one_of(IPV4, IPV6)),
        "user_id": optional(USER_ID),
        "user_email": optional(EMAIL),
        "max_messages": st.integers(1, 100),
        "customer": st.one_of(st.just(""), prefixed("cus_"), EMAIL),
        "requests_per_route": st.integers(1, 100),
        "backup_key": optional(BACKUP_KEY),
        "age_days": st.integers(0, 365),
        "incident_time": optional(iso_times()),
        "record_id": RECORD_ID,
        "version": optional(USER_ID),
        "sql": optional(SQL_WRITE),
        "max_rows": st.integers(1, 1000),
        "row_limit": st.integers(1, 5000),
        "watch_s": st.integers(5, 3600),
        "api_version": API_VERSION,
        "operation": st.sampled_from(["", "refund", "cancel", "resend"]),
        "charge": st.one_of(st.just(""), *(prefixed(p) for p in ("ch_", "py_", "pi_"))),
        "subscription": optional(prefixed("sub_")),
        "amount_cents": st.integers(0, 10_000_000),
        "recovery_dir": st.sampled_from(["", recovery_dir]),
        "step": st.sampled_from(["", "rotate-secret", "purge-sessions"]),
        "secret_name": optional(SECRET_NAME),
    }


def valid_by_type(type_name: str) -> st.SearchStrategy[object]:
    """Values for a name without a rule of its own: its type, the generic rule."""
    return {
        "str": free_text(),
        "int": st.integers(-(10**9), 10**9),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "bool": st.booleans(),
        "list[str]": st.lists(
            free_text(40).filter(
                lambda t: (
                    t == t.strip() and "," not in t and t and not t.startswith("[")
                )
            ),
            max_size=5,
        ),
    }[type_name]


# ---- broken values, by parameter name ------------------------------------------

ID_BREAKERS = HOSTILE_CHARS + LOOK_ALIKES + SPACES + ("/", "@", "#", ":", ";")


def broken_id(good: st.SearchStrategy[str], longest: int) -> st.SearchStrategy[str]:
    """An id of the wrong shape: a foreign character inside, or too long."""
    return st.one_of(inject(good, ID_BREAKERS), too_long(good, longest))


def out_of(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))


def hostile_text(
    good: st.SearchStrategy[str], longest: int = MAX_TEXT
) -> st.SearchStrategy[str]:
    return st.one_of(inject(good, HOSTILE_CHARS), too_long(good, longest))


def broken_values(
    recovery_dir: str, missing_dir: str, a_file: str
) -> dict[str, st.SearchStrategy[object]]:
    """Strategies of typed values of the right type that break the name's rule."""
    return {
        "incident_id": st.one_of(
            st.just(""),
            broken_id(INCIDENT_ID, 64),
            st.builds(lambda c, t: c + t, st.sampled_from("._-"), INCIDENT_ID),
        ),
        "lookback": st.one_of(
            st.sampled_from(
                ["", "0m", "0h", "0d", "06h", "6H", "6 h", "1w", "90s", "6", "h"]
            ),
            st.builds(lambda n: f"{n}d", st.integers(31, 10**5)),
            st.builds(lambda n: f"{n}h", st.integers(721, 10**5)),
            st.builds(lambda n: f"{n}m", st.integers(43201, 999_999)),
            inject(lookbacks(), HOSTILE_CHARS + LOOK_ALIKES + SPACES),
        ),
        "paths": st.one_of(
            st.just([]),
            st.lists(URL_PATH, min_size=21, max_size=30),
            st.builds(
                lambda good, bad, where: good[:where] + [bad] + good[where:],
                st.lists(URL_PATH, max_size=5),
                st.one_of(
                    URL_PATH.map(lambda p: "health" + p),
                    inject(URL_PATH.map(lambda p: p + "x"), HOSTILE_CHARS + SPACES),
                    URL_PATH.map(lambda p: p + "://evil.example"),
                    too_long(URL_PATH, MAX_TEXT),
                ),
                st.integers(0, 5),
            ),
        ),
        "window_min": out_of(5, 24 * 60),
        "confirm": hostile_text(free_text()),
        "client_ip": st.one_of(
            st.sampled_from(
                [
                    "256.1.1.1",
                    "1.2.3",
                    "1.2.3.4.5",
                    "::g",
                    "localhost",
                    "fe80::1%eth0",
                    " 1.2.3.4",
                    "1.2.3.4 ",
                ]
            ),
            st.builds(lambda ip, zone: f"{ip}%{zone}", IPV6, free_text(30)),
            inject(IPV4, HOSTILE_CHARS + LOOK_ALIKES + SPACES),
        ),
        "user_id": st.one_of(
            broken_id(USER_ID, 64),
            USER_ID.map(lambda u: "-" + u),
            inject(USER_ID, ("_", ".")),
        ),
        "user_email": st.one_of(
            st.sampled_from(
                [
                    "user",
                    "user@",
                    "@example.com",
                    "a@b",
                    "a@@example.com",
                    "a@example..com",
                ]
            ),
            inject(EMAIL, HOSTILE_CHARS + LOOK_ALIKES + SPACES + ("<", ">", ",")),
            st.builds(lambda e: "a" * MAX_TEXT + e, EMAIL),
        ),
        "max_messages": out_of(1, 100),
        "customer": st.one_of(
            st.sampled_from(["cus_", "cust_1", "CUS_1", "cus_1-2", "cus 1"]),
            inject(prefixed("cus_"), HOSTILE_CHARS + LOOK_ALIKES + SPACES + ("-", "_")),
            prefixed("cus_").map(lambda c: c + "x" * 65),
        ),
        "requests_per_route": out_of(1, 100),
        "backup_key": st.one_of(
            BACKUP_KEY.map(lambda k: k.removesuffix(".gz")),
            BACKUP_KEY.map(lambda k: "s" + k),
            BACKUP_KEY.map(lambda k: k.replace("-", "/", 1)),
            BACKUP_KEY.map(lambda k: k.replace("2", "\u0662")).filter(
                lambda k: "\u0662" in k
            ),
            inject(BACKUP_KEY, HOSTILE_CHARS + SPACES),
        ),
        "age_days": out_of(0, 365),
        "incident_time": st.one_of(
            st.sampled_from(
                [
                    "2026-02-30T10:00Z",
                    "2026-11-27T24:00Z",
                    "2026-13-01T10:00Z",
                    "2026-11-27 14:30Z",
                    "2026-11-27T14:30",
                    "2026-11-27T14:30+01:00",
                    "2026-11-27",
                    "now",
                ]
            ),
            iso_times()
            .map(lambda t: t.replace("2", "\u0662"))
            .filter(lambda t: "\u0662" in t),
            inject(iso_times(), HOSTILE_CHARS + SPACES),
        ),
        "record_id": st.one_of(
            st.sampled_from(
                ["", "T", "2026120T1715", "20261204", "x20261204T1", "2026-12-04T1715"]
            ),
            broken_id(RECORD_ID, 128),
        ),
        "version": st.one_of(
            broken_id(USER_ID, 64),
            USER_ID.map(lambda u: "-" + u),
            inject(USER_ID, ("_", ".")),
        ),
        "sql": st.one_of(
            st.sampled_from(
                [
                    "DROP TABLE users",
                    "UPDATE users SET role = 'admin'",
                    "DELETE FROM users",
                    "DELETE FROM users WHERE 1=1",
                    "SELECT 1; DROP TABLE users",
                    "ATTACH DATABASE 'x.db' AS x",
                    "VACUUM",
                    "PRAGMA foreign_keys = OFF",
                    "INSERT OR REPLACE INTO users (id) VALUES ('a')",
                    "DELETE FROM sqlite_master WHERE name = 'users'",
                    "ALTER TABLE users ADD COLUMN x TEXT",
                    "not sql at all",
                ]
            ),
            inside(SQL_WRITE, tuple(c for c in HOSTILE_CHARS if c not in "'\"`\\")),
            SQL_WRITE.map(lambda s: s + " AND id = id" * 400),
        ),
        "max_rows": out_of(1, 1000),
        "row_limit": out_of(1, 5000),
        "watch_s": out_of(5, 3600),
        "api_version": st.one_of(
            st.sampled_from(
                [
                    "",
                    "2024-10-28",
                    "2024-10-28.",
                    "1999-10-28.acacia",
                    "2024-10-28.Acacia",
                    "2024-1-28.acacia",
                    "2024-10-28.acacia2",
                ]
            ),
            API_VERSION.map(lambda v: v + "x" * 21),
            inject(API_VERSION, HOSTILE_CHARS + LOOK_ALIKES + SPACES),
        ),
        "operation": st.one_of(
            st.sampled_from(
                [
                    "Refund",
                    "refund ",
                    " cancel",
                    "delete",
                    "refunds",
                    "resend\n",
                    "r\u0435fund",
                ]
            ),
            free_text(20).filter(lambda t: t not in ("", "refund", "cancel", "resend")),
        ),
        "charge": st.one_of(
            st.sampled_from(["ch_", "pi_", "cus_123", "ch-123", "re_123"]),
            inject(prefixed("ch_"), HOSTILE_CHARS + LOOK_ALIKES + SPACES + ("-", "_")),
        ),
        "subscription": st.one_of(
            st.sampled_from(["sub_", "sub-1", "SUB_1", "si_123"]),
            inject(prefixed("sub_"), HOSTILE_CHARS + LOOK_ALIKES + SPACES + ("-", "_")),
        ),
        "amount_cents": out_of(0, 10_000_000),
        "recovery_dir": st.one_of(
            st.sampled_from(
                [missing_dir, a_file, recovery_dir + "'", recovery_dir + "\n"]
            ),
        ),
        "step": st.one_of(
            st.sampled_from(
                ["rotate", "Rotate-secret", "purge-sessions ", "drop-everything"]
            ),
            free_text(20).filter(
                lambda t: t not in ("", "rotate-secret", "purge-sessions")
            ),
        ),
        "secret_name": st.one_of(
            st.sampled_from(["jwt_secret", "1ABC", "_JWT", "JWT-SECRET"]),
            broken_id(SECRET_NAME, 64),
            inject(SECRET_NAME, tuple(string.ascii_lowercase)),
        ),
    }


def broken_by_type(type_name: str) -> st.SearchStrategy[object]:
    """Typed values that no conversion turns into ``type_name``."""
    not_text = st.one_of(
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
        st.dates(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.lists(st.integers(), max_size=2),
    )
    return {
        "str": not_text,
        "int": st.one_of(
            free_text(10),
            st.floats(),
            st.booleans(),
            st.none(),
            st.lists(st.integers(), max_size=2),
        ),
        "float": st.one_of(
            free_text(10), st.booleans(), st.none(), st.lists(st.floats(), max_size=2)
        ),
        "bool": st.one_of(
            st.integers(),
            st.floats(),
            st.sampled_from(["true", "false", "yes", "no"]),
            st.none(),
            st.lists(st.booleans(), max_size=2),
        ),
        "list[str]": st.one_of(
            st.integers(),
            st.booleans(),
            st.none(),
            st.dictionaries(
                st.text(max_size=3), st.text(max_size=3), min_size=1, max_size=2
            ),
            st.lists(
                st.one_of(
                    st.none(),
                    st.floats(),
                    st.booleans(),
                    st.lists(st.text(max_size=2), max_size=1),
                ),
                min_size=1,
                max_size=3,
            ),
        ),
    }[type_name]


def broken_raw(type_name: str) -> st.SearchStrategy[str]:
    """Command-line text that does not read as ``type_name`` (none for str)."""
    return {
        "int": st.one_of(
            st.sampled_from(
                [
                    "",
                    " ",
                    "1.5",
                    "1e3",
                    "0x10",
                    "1_000",
                    "ten",
                    "\uff11",
                    "\u0662",
                    "--1",
                    "1-",
                ]
            ),
            st.builds(
                lambda n, c: f"{n}{c}{n}",
                st.integers(0, 999),
                st.sampled_from(("a", ".", "_", ",", "e", "\u0662", "'", " ")),
            ),
        ),
        "float": st.sampled_from(["", "one", "1,5", "nan!", "0x1p3"]),
        "bool": st.one_of(
            st.sampled_from(
                [
                    "",
                    "tru",
                    "maybe",
                    "on",
                    "off",
                    "y",
                    "n",
                    "2",
                    "-1",
                    "\uff54rue",
                    "true!",
                    "t r u e",
                ]
            ),
        ),
    }[type_name]


# ---- text forms for -p ---------------------------------------------------------

BOOL_WORDS = {True: ("true", "yes", "1"), False: ("false", "no", "0")}


@st.composite
def as_raw(draw: st.DrawFn, value: object, type_name: str) -> str:
    """Command-line text that reads back as ``value`` of ``type_name``."""
    pad = draw(st.sampled_from(["", " ", "  "]))
    if type_name == "bool":
        assert isinstance(value, bool)
        word = draw(st.sampled_from(BOOL_WORDS[value]))
        return pad + draw(st.sampled_from([word, word.upper(), word.title()])) + pad
    if type_name == "int":
        sign = (
            draw(st.sampled_from(["", "+"]))
            if isinstance(value, int) and value >= 0
            else ""
        )
        return pad + sign + str(value) + pad
    if type_name == "float":
        return repr(value)
    if type_name == "list[str]":
        assert isinstance(value, list)
        return ",".join(value)
    assert isinstance(value, str)
    return value


# ---- confirm phrases and their near misses ------------------------------------

VERBS = (
    "rollback",
    "repair",
    "clear",
    "delete",
    "restore",
    "re-enqueue",
    "set password",
    "undo d1-write of record",
)
TARGET = text_of(LETTERS_DIGITS + "-_./@", 1, 40)
ENVIRONMENT_NAMES = st.one_of(
    st.sampled_from(["sandbox", "staging", "production"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True),
)
# Latin letters and a character that looks the same.
LOOK_ALIKE_OF = {
    "a": "\u0430",
    "c": "\u0441",
    "e": "\u0435",
    "i": "\u0456",
    "o": "\u043e",
    "p": "\u0440",
    "x": "\u0445",
    "y": "\u0443",
    "s": "\u0455",
}


def phrase_for(environment: str) -> st.SearchStrategy[str]:
    """A confirm phrase in the shape every plan uses: verb, target, environment."""
    return st.builds(
        lambda verb, target: f"{verb} {target} in {environment}",
        st.sampled_from(VERBS),
        TARGET,
    )


@dataclass(frozen=True)
class Miss:
    """A text typed where the phrase was asked for, and how it was made."""

    text: str
    kind: str
    hostile: bool  # holds a character or a length no parameter value may have


@st.composite
def near_misses(draw: st.DrawFn, phrase: str) -> Miss:
    """Text that differs from ``phrase`` only a little, and never equals it."""
    kind = draw(
        st.sampled_from(
            [
                "case",
                "outer-space",
                "inner-space",
                "look-alike",
                "prefix",
                "suffix",
                "leading",
                "invisible",
                "newline",
                "other-environment",
            ]
        )
    )
    hostile = False
    if kind == "case":
        how = draw(
            st.sampled_from([str.upper, str.title, str.swapcase, str.capitalize])
        )
        text = how(phrase)
    elif kind == "outer-space":
        space = draw(st.sampled_from(SPACES))
        text = draw(
            st.sampled_from([space + phrase, phrase + space, space + phrase + space])
        )
    elif kind == "inner-space":
        spaces = [i for i, char in enumerate(phrase) if char == " "]
        where = draw(st.sampled_from(spaces))
        space = draw(st.sampled_from(("  ",) + SPACES[1:]))
        text = phrase[:where] + space + phrase[where + 1 :]
    elif kind == "look-alike":
        spots = [i for i, char in enumerate(phrase) if char in LOOK_ALIKE_OF]
        where = draw(st.sampled_from(spots))
        text = phrase[:where] + LOOK_ALIKE_OF[phrase[where]] + phrase[where + 1 :]
    elif kind == "prefix":
        text = phrase[: draw(st.integers(0, len(phrase) - 1))]
    elif kind == "suffix":
        text = phrase + draw(st.sampled_from([".", "!", " now", "s", " please"]))
    elif kind == "leading":
        text = draw(st.sampled_from(["yes ", "ok ", "confirm ", "I "])) + phrase
    elif kind == "invisible":
        where = draw(st.integers(0, len(phrase)))
        char = draw(st.sampled_from(["\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad"]))
        text, hostile = phrase[:where] + char + phrase[where:], True
    elif kind == "newline":
        text = phrase + draw(st.sampled_from(["\n", "\r\n", "\u2028", "\x00"]))
        hostile = True
    else:
        other = draw(
            ENVIRONMENT_NAMES.filter(lambda name: not phrase.endswith(f" in {name}"))
        )
        text = phrase.rsplit(" in ", 1)[0] + f" in {other}"
    return Miss(text, kind, hostile or len(text) > MAX_TEXT)


def go_together(runbook: str, specs: Mapping[str, Any], givens: list[Given]) -> bool:
    """Whether the valid values among ``givens`` also meet the runbook's rules
    across parameters (an operation with its target, one write at a time), which
    the runner checks after each value's own rules."""
    from opslib._errors import ParameterError
    from opslib._params import coerce_parameters
    from opslib._runner import check_paired_parameters

    valid = [g for g in givens if g.valid and g.name in specs]
    raw = frozenset(g.name for g in valid if g.raw)
    try:
        values = coerce_parameters(specs, {g.name: g.value for g in valid}, raw=raw)
        check_paired_parameters(runbook, specs, values)
    except ParameterError:
        return False
    return True
