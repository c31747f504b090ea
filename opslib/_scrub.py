"""Scrubbing: no secret and no raw email address ever lands in a record.

A ``Scrubber`` knows the secret values a run could see and replaces them, in any
text, with ``[redacted:NAME]``. It also removes what looks like a credential
whatever its value (bearer tokens, Cloudflare's X-Auth headers, cookies, Stripe
keys) and turns every email address into a pseudonym such as ``<email:1f3a9c2e>``.
The runner passes every executed notebook and every sidecar through it before
anything is written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import os
import re
import secrets as _random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import SECRET_VARIABLES, find_environments_dir

if TYPE_CHECKING:  # nbformat costs ~1 s to import; runs import it lazily
    import nbformat

logger = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 6
"""Secret values shorter than this are not scrubbed by value: too likely to match
ordinary text. The pattern rules below still catch the usual credentials."""

# A header or field whose value is a credential, in text, JSON or a Python repr:
# ``X-Auth-Key: v``, ``"X-Auth-Key": "v"``, ``session_id=v``.
_FIELD = r"""(?P<lead>\b{names}["']?\s*[:=]\s*["']?{scheme})(?P<value>{value})"""
_TOKEN_VALUE = r"""[^\s"',;&\]\[]+"""
_FIELD_RULES = (
    ("authorization", "Authorization", r"(?:(?:Bearer|Basic|Token|Digest)\s+)?+"),
    ("cookie", "(?:Set-Cookie|Cookie)", ""),
    ("x-auth", "X-Auth-(?:Key|Email)", ""),
    ("session_id", "session_id", ""),
)
# A cookie header's value: name=value pairs up to the end of the line or quote, or
# one bare token standing alone there. Prose after "cookie:" (a check's message,
# such as "no session cookie to inspect") is neither, and is left as it is.
_COOKIE_VALUE = (
    r"""[^\s=;"',]+=[^"'\r\n]*"""
    r"""|[^\s"',;=]+(?=[ \t]*(?:["'\r\n]|$))"""
)
_BEARER = re.compile(r"\b(?P<lead>Bearer\s+)(?P<value>[A-Za-z0-9\-._~+/]+=*)", re.I)
_STRIPE_KEY = re.compile(r"\b(?:(?:sk|rk)_(?:live|test)|whsec)_[A-Za-z0-9]{8,}")
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"\.[A-Za-z]{2,}(?![\w-])"
)
SCRUB_TOKEN = re.compile(
    r"<email:[0-9a-f]{8}>|&lt;email:[0-9a-f]{8}&gt;|\[redacted:[^\]\s]+\]"
)
"""Any token a ``Scrubber`` writes in place of a value: an email pseudonym (also
HTML-escaped) or a ``[redacted:NAME]`` mark. Such a token in a value an operator
pastes back (a parameter, a printed command) stands for a value the record hides."""
_BASE64_SKIP = (0, 2, 3)
_HTML_KEYS = frozenset({"text/html", "image/svg+xml"})
_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "set-cookie",
        "x-auth-key",
        "x-auth-email",
        "session_id",
        "password",
        "password_hash",
        "token",
    }
)


def _field_pattern(names: str, scheme: str, value: str) -> re.Pattern[str]:
    return re.compile(_FIELD.format(names=names, scheme=scheme, value=value), re.I)


_FIELDS = tuple(
    (
        label,
        _field_pattern(
            names, scheme, _COOKIE_VALUE if label == "cookie" else _TOKEN_VALUE
        ),
    )
    for label, names, scheme in _FIELD_RULES
)


class Scrubber:
    """Remove secrets, credentials and email addresses from text and notebooks.

    Args:
        secrets: variable name to secret value, or (name, value) pairs when one
            name may have several values. Values shorter than ``MIN_SECRET_LENGTH``
            (6) characters are ignored: they would match ordinary text. Each value
            is also found URL-encoded, JSON- or repr-escaped and base64-encoded
            (at any alignment inside a longer base64 string).
        pseudonym_key: key of the email pseudonyms. The same address maps to the
            same pseudonym for one key; by default a random key per scrubber, so
            pseudonyms are stable within a record but cannot be linked across
            records or reversed from a list of addresses.
    """

    def __init__(
        self,
        secrets: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        pseudonym_key: bytes | None = None,
    ) -> None:
        pairs = list(secrets.items() if isinstance(secrets, Mapping) else secrets)
        self._pairs = [(n, v) for n, v in pairs if v and len(v) >= MIN_SECRET_LENGTH]
        self._key = (
            pseudonym_key if pseudonym_key is not None else _random.token_bytes(16)
        )
        self._names_by_form = _forms_by_name(self._pairs)
        self._secret_pattern = _alternation(self._names_by_form)
        logger.debug(
            "scrubber ready names=%s forms=%d",
            sorted({name for name, _ in self._pairs}),
            len(self._names_by_form),
        )

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        extra_files: Iterable[str | Path] = (),
    ) -> Scrubber:
        """Build a scrubber from every secret variable a run could see.

        Reads each name in ``SECRET_VARIABLES`` from ``environ`` (default
        ``os.environ``), from the ``.env`` file at the project root and from each
        dotenv file in ``extra_files`` (such as the sandbox's secrets file). All
        values found are kept, even when two sources disagree.
        """
        environ = os.environ if environ is None else environ
        pairs = [
            (name, environ[name]) for name in SECRET_VARIABLES if environ.get(name)
        ]
        root = find_environments_dir(environ=environ).parent.parent
        for path in (root / ".env", *map(Path, extra_files)):
            pairs += _dotenv_secrets(path)
        return cls(pairs)

    def extended(
        self, secrets: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> Scrubber:
        """Return a scrubber that also knows these secrets, with the same key."""
        more = list(secrets.items() if isinstance(secrets, Mapping) else secrets)
        return Scrubber([*self._pairs, *more], pseudonym_key=self._key)

    @property
    def secret_names(self) -> frozenset[str]:
        """The names of the secrets scrubbed by value."""
        return frozenset(name for name, _ in self._pairs)

    def scrub_text(self, text: str, *, is_html: bool = False) -> str:
        """Return the text with secrets, credentials and emails replaced.

        Args:
            text: any text.
            is_html: escape the email pseudonym's angle brackets, for HTML or SVG.
        """
        if self._secret_pattern is not None:
            text = self._secret_pattern.sub(self._redact_secret, text)
        for label, pattern in _FIELDS:
            text = pattern.sub(_redact_field(label), text)
        text = _BEARER.sub(_redact_field("token"), text)
        text = _STRIPE_KEY.sub("[redacted:stripe-key]", text)
        return _EMAIL.sub(lambda match: self.pseudonym(match[0], is_html=is_html), text)

    def pseudonym(self, email: str, *, is_html: bool = False) -> str:
        """Return the stable pseudonym of an email address, such as <email:1f3a9c2e>."""
        digest = hmac.new(self._key, email.lower().encode(), hashlib.sha256).hexdigest()
        name = f"<email:{digest[:8]}>"
        return html.escape(name) if is_html else name

    def scrub_obj(self, obj: Any, *, is_html: bool = False) -> Any:
        """Return a scrubbed copy of JSON-like data: dicts (keys too), lists, strings.

        Values under credential-like keys (``Authorization``, ``Cookie``,
        ``X-Auth-Key``, ``session_id``, ``password`` ...) are replaced whole.
        Values under the ``text/html`` and ``image/svg+xml`` keys of a MIME bundle
        are scrubbed as HTML.
        """
        if isinstance(obj, str):
            return self.scrub_text(obj, is_html=is_html)
        if isinstance(obj, Mapping):
            return {
                self.scrub_text(str(key)): self._scrub_entry(str(key), value, is_html)
                for key, value in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            return [self.scrub_obj(item, is_html=is_html) for item in obj]
        return obj

    def _scrub_entry(self, key: str, value: Any, is_html: bool) -> Any:
        if key.lower() in _SENSITIVE_KEYS and isinstance(value, str):
            return f"[redacted:{key.lower()}]"
        return self.scrub_obj(value, is_html=is_html or key in _HTML_KEYS)

    def scrub_notebook(self, nb: Mapping[str, Any]) -> nbformat.NotebookNode:
        """Return a scrubbed copy of a notebook.

        Every cell source, every output (streams, every MIME type of display data,
        JSON bundles, tracebacks, error names and values), all cell and notebook
        metadata (papermill's parameters included) and attachments are scrubbed.
        """
        scrubbed = self.scrub_obj(nb)
        import nbformat

        return nbformat.from_dict(scrubbed)  # type: ignore[no-untyped-call,no-any-return]

    def _redact_secret(self, match: re.Match[str]) -> str:
        return f"[redacted:{self._names_by_form[match[0]]}]"


def scrub_tokens(value: object) -> list[str]:
    """The scrubber's tokens found in a value (text, or lists and dicts of it)."""
    if isinstance(value, str):
        return SCRUB_TOKEN.findall(value)
    if isinstance(value, Mapping):
        return [t for k, v in value.items() for t in scrub_tokens([k, v])]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in scrub_tokens(item)]
    return []


def _redact_field(label: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return f"{match['lead']}[redacted:{label}]"

    return replace


def _forms_by_name(pairs: list[tuple[str, str]]) -> dict[str, str]:
    forms: dict[str, str] = {}
    for name, value in pairs:
        for form in _encoded_forms(value):
            forms.setdefault(form, name)
    return forms


def _encoded_forms(value: str) -> set[str]:
    from urllib.parse import quote, quote_plus

    forms = {value, quote(value, safe=""), quote_plus(value)}
    forms |= {json.dumps(value)[1:-1], repr(value)[1:-1]}
    forms |= _base64_cores(value.encode())
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _base64_cores(data: bytes) -> set[str]:
    """Return the base64 characters that depend on ``data`` alone, at each alignment.

    Inside a longer base64 string the secret may start at any byte offset modulo
    3; the characters that mix in neighbouring bytes are left out of each form.
    """
    cores = set()
    for shift, skip in enumerate(_BASE64_SKIP):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        core = encoded[skip : (len(data) + shift) * 8 // 6]
        cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def _alternation(forms: Mapping[str, str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(re.escape(form) for form in ordered))


def _dotenv_secrets(path: Path) -> list[tuple[str, str]]:
    from dotenv import dotenv_values

    if not path.is_file():
        return []
    values = dotenv_values(path)
    return [(k, v) for k, v in values.items() if k in SECRET_VARIABLES and v]
