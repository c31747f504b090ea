"""The scrubber: secrets by value and encoding, credential patterns, emails."""

from __future__ import annotations

import base64
import copy
import json
import urllib.parse
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from opslib._scrub import Scrubber

TOKEN = "cfTok3n/With+Slash=x"
KEY = "rk_test_51Habcdefgh"


@pytest.fixture
def scrubber() -> Scrubber:
    return Scrubber(
        {"CLOUDFLARE_API_TOKEN": TOKEN, "STRIPE_API_KEY": KEY}, pseudonym_key=b"k"
    )


@pytest.mark.parametrize(
    "form",
    [
        TOKEN,
        urllib.parse.quote(TOKEN, safe=""),
        urllib.parse.quote_plus(TOKEN),
        json.dumps(TOKEN)[1:-1],
    ],
)
def test_scrub_text_replaces_a_secret_and_its_encodings(
    scrubber: Scrubber, form: str
) -> None:
    assert scrubber.scrub_text(f"sent {form} today") == (
        "sent [redacted:CLOUDFLARE_API_TOKEN] today"
    )


@pytest.mark.parametrize("prefix", [b"", b"u:", b"us:", b"use:"])
@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
def test_scrub_text_finds_a_secret_inside_longer_base64(
    scrubber: Scrubber, prefix: bytes, alphabet: str
) -> None:
    encode = base64.b64encode if alphabet == "standard" else base64.urlsafe_b64encode
    encoded = encode(prefix + TOKEN.encode() + b"!tail").decode()

    scrubbed = scrubber.scrub_text(f"blob {encoded} end")

    left, right = scrubbed[5:-4].split("[redacted:CLOUDFLARE_API_TOKEN]")
    # every base64 character that depends on the secret alone is gone
    assert len(encoded) - len(left) - len(right) >= len(TOKEN) * 4 // 3 - 3


def test_scrub_text_ignores_secret_values_shorter_than_six_characters() -> None:
    scrubber = Scrubber({"R2_ACCESS_KEY_ID": "abc12"})

    assert scrubber.scrub_text("abc12 stays") == "abc12 stays"
    assert scrubber.secret_names == frozenset()


def test_scrub_text_prefers_the_longer_of_two_overlapping_secrets() -> None:
    scrubber = Scrubber([("SHORT", "abcdef"), ("LONG", "abcdefghij")])

    assert (
        scrubber.scrub_text("abcdefghij abcdef") == "[redacted:LONG] [redacted:SHORT]"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Authorization: Bearer eyJhbGciOi.J9x",
            "Authorization: Bearer [redacted:authorization]",
        ),
        (
            "{'authorization': 'Token abc123'}",
            "{'authorization': 'Token [redacted:authorization]'}",
        ),
        ("curl -H 'Bearer abc.def~ghi'", "curl -H 'Bearer [redacted:token]'"),
        ('{"X-Auth-Key": "0123456789abcdef"}', '{"X-Auth-Key": "[redacted:x-auth]"}'),
        ("X-Auth-Email: ops@example.com", "X-Auth-Email: [redacted:x-auth]"),
        (
            "Set-Cookie: session_id=abc; HttpOnly; Path=/",
            "Set-Cookie: [redacted:cookie]",
        ),
        ("cookie: a=1; b=2\nnext", "cookie: [redacted:cookie]\nnext"),
        ("Cookie: 9f8e7d6c5b4a\nnext", "Cookie: [redacted:cookie]\nnext"),
        (
            "{'Cookie': 'session_id=s3cr3t; theme=dark'}",
            "{'Cookie': '[redacted:cookie]'}",
        ),
        ("cookie=session_id=abc", "cookie=[redacted:cookie]"),
        (
            "cookie: no session cookie to inspect (the login did not set one)",
            "cookie: no session cookie to inspect (the login did not set one)",
        ),
        (
            "cookie: session cookie as expected: path=/; max-age=1800",
            "cookie: session cookie as expected: path=/; max-age=1800",
        ),
        (
            "GET /me?session_id=9f8e7d&x=1",
            "GET /me?session_id=[redacted:session_id]&x=1",
        ),
        ('{"session_id": "9f8e7d"}', '{"session_id": "[redacted:session_id]"}'),
        ("keys sk_" + "live_4eC39HqLyjWDarjt", "keys [redacted:stripe-key]"),
        (
            "rk_" + "live_12345678 whsec_abcdefgh1",
            "[redacted:stripe-key] [redacted:stripe-key]",
        ),
        ("pk_test_12345678 is public", "pk_test_12345678 is public"),
        ("sk_test_short", "sk_test_short"),
    ],
)
def test_scrub_text_removes_credentials_whatever_their_value(
    scrubber: Scrubber, text: str, expected: str
) -> None:
    assert scrubber.scrub_text(text) == expected


def test_scrub_text_keeps_the_scheme_and_names_a_known_secret(
    scrubber: Scrubber,
) -> None:
    assert scrubber.scrub_text(f"Authorization: Bearer {TOKEN}") == (
        "Authorization: Bearer [redacted:CLOUDFLARE_API_TOKEN]"
    )


def test_scrub_text_gives_one_address_one_pseudonym(scrubber: Scrubber) -> None:
    text = "Alice@Example.org wrote; alice@example.org again; bob@example.org."

    scrubbed = scrubber.scrub_text(text)

    first, second, third = (
        word.strip(";.") for word in scrubbed.split() if "<" in word
    )
    assert first == second == scrubber.pseudonym("alice@example.org")
    assert third != first
    assert first.startswith("<email:") and len(first) == len("<email:12345678>")
    assert "@" not in scrubbed


def test_pseudonyms_differ_between_scrubbers_with_their_own_keys() -> None:
    assert Scrubber().pseudonym("a@example.com") != Scrubber().pseudonym(
        "a@example.com"
    )


def test_scrub_text_escapes_the_pseudonym_in_html(scrubber: Scrubber) -> None:
    assert scrubber.scrub_text("<b>a@example.com</b>", is_html=True) == (
        f"<b>&lt;email:{scrubber.pseudonym('a@example.com')[7:-1]}&gt;</b>"
    )


def test_scrub_text_is_idempotent(scrubber: Scrubber) -> None:
    text = f"Set-Cookie: session_id=x1\nBearer {TOKEN} for a@example.com {KEY}"

    once = scrubber.scrub_text(text)

    assert scrubber.scrub_text(once) == once


def test_scrub_obj_walks_keys_lists_and_credential_fields(scrubber: Scrubber) -> None:
    data = {
        "a@example.com": [TOKEN, 3, None, {"Cookie": "theme=dark"}],
        "text/html": "<i>b@example.com</i>",
        "nested": ({"password": "hunter2", "ok": True},),
    }

    scrubbed = scrubber.scrub_obj(data)

    assert scrubbed == {
        scrubber.pseudonym("a@example.com"): [
            "[redacted:CLOUDFLARE_API_TOKEN]",
            3,
            None,
            {"Cookie": "[redacted:cookie]"},
        ],
        "text/html": f"<i>{scrubber.pseudonym('b@example.com', is_html=True)}</i>",
        "nested": [{"password": "[redacted:password]", "ok": True}],
    }


def _notebook_with_secrets() -> dict[str, object]:
    nb = new_notebook()
    nb.metadata["papermill"] = {"parameters": {"note": f"key {KEY}"}}
    code = new_code_cell(f"token = '{TOKEN}'")
    code.outputs = [
        new_output("stream", name="stdout", text=f"Bearer {TOKEN}\n"),
        new_output(
            "display_data",
            data={
                "text/plain": "c@example.com",
                "text/html": f"<p>{TOKEN}</p>",
                "application/json": {"owner": "d@example.com", "key": KEY},
                "image/png": base64.b64encode(b"png" + TOKEN.encode()).decode(),
            },
        ),
        new_output(
            "error",
            ename="AuthError",
            evalue=f"refused {TOKEN}",
            traceback=[f"\x1b[31mAuthError\x1b[0m: refused {TOKEN} for e@example.com"],
        ),
    ]
    code.metadata["note"] = f"by f@example.com with {KEY}"
    nb.cells = [new_markdown_cell(f"Contact g@example.com, key {KEY}"), code]
    return nb


def test_scrub_notebook_scrubs_sources_outputs_and_metadata(scrubber: Scrubber) -> None:
    nb = _notebook_with_secrets()
    before = copy.deepcopy(nb)

    scrubbed = scrubber.scrub_notebook(nb)

    text = json.dumps(scrubbed)
    assert TOKEN not in text and KEY not in text and "@example.com" not in text
    assert text.count("[redacted:CLOUDFLARE_API_TOKEN]") == 6
    assert (
        scrubbed.cells[1].outputs[2].evalue == "refused [redacted:CLOUDFLARE_API_TOKEN]"
    )
    assert (
        scrubbed.metadata.papermill.parameters.note == "key [redacted:STRIPE_API_KEY]"
    )
    assert nb == before


def test_from_environment_gathers_variables_and_dotenv_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environments = tmp_path / "parameters" / "environments"
    environments.mkdir(parents=True)
    (tmp_path / ".env").write_text(
        "STRIPE_API_KEY=from-dotenv-1\nUNRELATED=plainvalue\n"
    )
    extra = tmp_path / "sandbox.env"
    extra.write_text("CLOUDFLARE_API_TOKEN=from-sandbox-file\n")
    environ = {
        "RUNBOOK_ENVIRONMENTS": str(environments),
        "CLOUDFLARE_API_TOKEN": "from-variable",
        "HOME": "/home/nobody",
    }

    scrubber = Scrubber.from_environment(environ, extra_files=[extra])

    text = "from-variable from-dotenv-1 from-sandbox-file plainvalue /home/nobody"
    assert scrubber.scrub_text(text) == (
        "[redacted:CLOUDFLARE_API_TOKEN] [redacted:STRIPE_API_KEY] "
        "[redacted:CLOUDFLARE_API_TOKEN] plainvalue /home/nobody"
    )


def test_extended_adds_secrets_and_keeps_pseudonyms(scrubber: Scrubber) -> None:
    wider = scrubber.extended({"R2_SECRET_ACCESS_KEY": "r2-secret-value"})

    assert wider.scrub_text(f"r2-secret-value {TOKEN}") == (
        "[redacted:R2_SECRET_ACCESS_KEY] [redacted:CLOUDFLARE_API_TOKEN]"
    )
    assert wider.pseudonym("a@example.com") == scrubber.pseudonym("a@example.com")


def test_hashes_and_tokens_are_redacted_by_key(scrubber: Scrubber) -> None:
    hashed = "ab" * 48
    data = {
        "before": {"password_hash": hashed, "email_verified": 1},
        "token": "f" * 64,
        "worker": {"secret": "STRIPE_WEBHOOK_SECRET", "enabled": True},
    }

    scrubbed = scrubber.scrub_obj(data)

    assert hashed not in str(scrubbed)
    assert scrubbed["before"]["email_verified"] == 1
    assert scrubbed["token"] == "[redacted:token]"
    # A "secret" key names a secret (such as a Worker secret's name): kept.
    assert scrubbed["worker"] == {"secret": "STRIPE_WEBHOOK_SECRET", "enabled": True}
