"""``runbook site``: the static HTML archive, built from real runs on the sandbox
and looked at in headless Chromium as a person would.

Three cheap runs of the database procedure make the archive: a read-only one
after a hostile account (markup and script in its id and role) was put into
D1, a planned write whose SQL carries the same kind of markup into the verdict,
and one more read-only run. The browser opens ``index.html`` from file://,
reads what is shown, types into the filter, follows a link to a record page and
checks that nothing supplied by a record ran.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from browser_helpers import Browser, chromium_path
from click.testing import CliRunner

from opslib import CloudflareClient, load_environment, run_notebook
from opslib._cli import main
from opslib._finding import Status
from opslib._records import append_index
from opslib._site import build_site, page_name, render_notebook
from opslib._sitehtml import BADGES, index_page
from opslib._notebook import parse_notebook

FAILING = Path(__file__).parent / "notebooks" / "raises_in_second_cell.ipynb"
MARK = "PWNED"
HOSTILE_ROLE = f"<script>console.log('{MARK}-role');document.title='{MARK}'</script>"
HOSTILE_ID = f"u-<img src=x onerror=\"console.log('{MARK}-img')\">"
HOSTILE_SQL = (
    "UPDATE users SET full_name = "
    f"'<script>console.log(\"{MARK}-sql\")</script>' WHERE role = 'admin'"
)


def _d1(env, sql, params=()):
    client = CloudflareClient(env)
    try:
        return client.d1_query(sql, list(params), read_only=False)
    finally:
        client.close()


@pytest.fixture(scope="module")
def archive(sandbox, tmp_path_factory):
    """An archive of three real runs, one of them showing a hostile D1 row."""
    sandbox.reset("healthy")
    env = load_environment("sandbox")
    newest = _d1(env, "SELECT MAX(created_at) AS t FROM users")[0]["results"][0]["t"]
    _d1(
        env,
        "INSERT INTO users (id, email, password_hash, role, created_at) "
        "VALUES (?, ?, 'x', ?, ?)",
        (HOSTILE_ID, "hostile@example.com", HOSTILE_ROLE, newest + 1),
    )
    root = tmp_path_factory.mktemp("site") / "records"
    failed = run_notebook(FAILING, environment="sandbox", records_dir=root)
    assert failed.status == "failed" and failed.verdict is None
    runs = [
        {"incident_id": "CHG-101"},
        {"incident_id": "CHG-102", "sql": HOSTILE_SQL},
        {"incident_id": "CHG-103"},
    ]
    try:
        for parameters in runs:
            record = run_notebook(
                "database",
                parameters=parameters,
                environment="sandbox",
                records_dir=root,
            )
            assert record.status == "succeeded", record.error
    finally:
        sandbox.reset("healthy")
    return root


@pytest.fixture(scope="module")
def site(archive):
    report = build_site(archive)
    assert not report.unreadable
    return report


@pytest.fixture(scope="module")
def browser():
    running = Browser(chromium_path())
    try:
        yield running
    finally:
        running.close()


def _sidecars(root):
    found = [json.loads(p.read_text()) for p in root.glob("*/*/*.json")]
    return sorted(found, key=lambda s: s["started_at"], reverse=True)


def _verdict(sidecar, key):
    return (sidecar["verdict"] or {}).get(key)


def _badge_word(sidecar):
    return (
        BADGES[_verdict(sidecar, "status")][0] if sidecar["verdict"] else "NO VERDICT"
    )


VISIBLE_ROWS = """
Array.from(document.querySelectorAll('#records tbody tr'))
  .filter(row => row.offsetParent !== null)
  .map(row => Array.from(row.cells).map(cell => cell.innerText.trim()))
"""


def _leaving(urls):
    """The URLs among these that are not the machine's own files or inline data."""
    return [url for url in urls if not url.startswith(("file:", "data:"))]


def test_index_shows_every_record_newest_first_with_badge_words(
    archive, site, browser, tmp_path
):
    browser.events.clear()
    browser.open(site.out / "index.html")
    assert browser.requested_urls() and not _leaving(browser.requested_urls())
    rows = browser.evaluate(VISIBLE_ROWS)
    sidecars = _sidecars(archive)

    assert [row[3] for row in rows] == [s["incident_id"] for s in sidecars]
    assert [row[4] for row in rows] == [s["status"] for s in sidecars]
    assert [row[5] for row in rows] == [_badge_word(s) for s in sidecars]
    assert [row[7] for row in rows] == [_verdict(s, "summary") or "" for s in sidecars]
    assert "NO VERDICT" in [row[5] for row in rows]
    assert browser.evaluate("document.getElementById('shown-count').innerText") == (
        f"{len(sidecars)} of {len(sidecars)} records shown"
    )
    kept = site.out / "index.png"
    browser.screenshot(tmp_path / "index.png", kept)
    print(f"screenshot of the index: {kept}")
    assert kept.read_bytes().startswith(b"\x89PNG")


def test_typing_in_the_filter_hides_the_rows_without_the_words(archive, site, browser):
    browser.open(site.out / "index.html")
    sidecars = _sidecars(archive)
    planned = [s for s in sidecars if _verdict(s, "cause") == "write-planned"]
    assert 0 < len(planned) < len(sidecars)

    browser.type_text("#filter-text", "write-planned")
    rows = browser.evaluate(VISIBLE_ROWS)
    assert [row[3] for row in rows] == [s["incident_id"] for s in planned]
    assert browser.evaluate("document.getElementById('shown-count').innerText") == (
        f"{len(planned)} of {len(sidecars)} records shown"
    )

    browser.type_text("#filter-text", " no-such-word")
    assert browser.evaluate(VISIBLE_ROWS) == []

    browser.evaluate("document.getElementById('filter-clear').click()")
    assert len(browser.evaluate(VISIBLE_ROWS)) == len(sidecars)


def test_a_select_keeps_one_verdict(archive, site, browser):
    browser.open(site.out / "index.html")
    sidecars = _sidecars(archive)
    options = browser.evaluate(
        "Array.from(document.querySelector('select[data-column=verdict]').options)"
        ".map(o => [o.value, o.text])"
    )
    statuses = sorted({_verdict(s, "status") or "none" for s in sidecars})
    assert options == [["", "all"]] + [
        [s, BADGES[s][0] if s in BADGES else "NO VERDICT"] for s in statuses
    ]

    browser.evaluate(
        "const s = document.querySelector('select[data-column=verdict]');"
        "s.value = 'ok'; s.dispatchEvent(new Event('change'));"
    )
    rows = browser.evaluate(VISIBLE_ROWS)
    assert [row[3] for row in rows] == [
        s["incident_id"] for s in sidecars if _verdict(s, "status") == "ok"
    ]


def _record_page(site, sidecar):
    return site.out / "records" / f"{page_name(sidecar['id'])}.html"


def test_record_page_has_the_verdict_on_top_and_hostile_values_as_text(
    archive, site, browser, tmp_path
):
    sidecars = _sidecars(archive)
    planned = next(s for s in sidecars if _verdict(s, "cause") == "write-planned")
    browser.open(site.out / "index.html")
    browser.events.clear()
    link = browser.evaluate(
        f"document.querySelector('#r-{planned['id']} a').getAttribute('href')"
    )
    start = len(browser.events)
    browser.evaluate(f"document.querySelector('#r-{planned['id']} a').click()")
    browser.wait_for_event("Page.loadEventFired", since=start)
    assert browser.evaluate("location.href") == (site.out / link).as_uri()
    assert not _leaving(browser.requested_urls())

    shown = browser.evaluate("document.body.innerText")
    head = shown[: shown.index("Database work")]
    assert f"Verdict {BADGES['warn'][0]} write-planned" in head
    assert planned["verdict"]["summary"] in head
    assert "dry run, nothing changed" in head
    assert f'<script>console.log("{MARK}-sql")</script>' in head
    # The hostile account, in the notebook's table of recent registrations.
    assert HOSTILE_ROLE in shown
    assert HOSTILE_ID in shown
    top = browser.evaluate(
        "[document.getElementById('verdict').getBoundingClientRect().top,"
        " document.querySelector('.jp-Cell').getBoundingClientRect().top]"
    )
    assert top[0] < top[1]

    assert browser.evaluate("document.scripts.length") == 0
    assert browser.evaluate("document.images.length") == 0
    assert MARK not in browser.evaluate("document.title")
    assert not [text for text in browser.console_texts() if MARK in text]
    browser.screenshot(tmp_path / "record.png")


def test_a_failed_run_shows_no_verdict_and_its_error_on_top(archive, site, browser):
    failed = next(s for s in _sidecars(archive) if s["status"] == "failed")
    browser.open(_record_page(site, failed))
    shown = browser.evaluate("document.body.innerText")
    head = shown[: shown.index("In [")]
    assert "Verdict NO VERDICT" in head
    assert "none: the run did not reach one" in head
    assert f"{failed['error']['ename']}: {failed['error']['evalue']}" in head


def test_record_page_runs_no_notebook_javascript(archive, site, browser, tmp_path):
    """Script in a notebook's outputs is cleaned out; script that gets past the
    cleaning anyway is stopped by the page's Content-Security-Policy."""
    sidecar = _sidecars(archive)[0]
    nb = parse_notebook((archive / sidecar["record_path"]).read_text())
    nb.cells.append(
        {
            "id": "hostile-code",
            "cell_type": "code",
            "metadata": {},
            "source": "x",
            "execution_count": 99,
            "outputs": [
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {
                        "text/html": f"<b>kept</b><script>console.log('{MARK}-html')"
                        f"</script><img src=x onerror=\"console.log('{MARK}-on')\">",
                        "text/plain": "x",
                    },
                },
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"application/javascript": f"console.log('{MARK}-js')"},
                },
            ],
        }
    )
    nb.cells.append(
        {
            "id": "hostile-markdown",
            "cell_type": "markdown",
            "metadata": {},
            "source": f"**md** <script>console.log('{MARK}-md')</script>",
        }
    )
    page = render_notebook(parse_notebook(json.dumps(nb)), sidecar, title="t")
    cleaned = tmp_path / "cleaned.html"
    cleaned.write_text(page)
    browser.events.clear()
    browser.open(cleaned)
    assert browser.evaluate("document.scripts.length") == 0
    shown = browser.evaluate("document.body.innerText")
    assert "kept" in shown and "md" in shown
    assert not [text for text in browser.console_texts() if MARK in text]

    forced = tmp_path / "forced.html"
    forced.write_text(
        page.replace("<main>", f"<main><script>console.log('{MARK}-csp')</script>", 1)
    )
    browser.events.clear()
    browser.open(forced)
    assert browser.evaluate("document.scripts.length") == 1
    texts = browser.console_texts()
    assert not [text for text in texts if MARK in text]
    assert any("Content Security Policy" in text for text in texts), texts


def test_rebuilding_writes_nothing_and_removes_pages_of_gone_records(archive, site):
    before = {p: p.read_bytes() for p in site.out.rglob("*.html")}
    again = build_site(archive)
    assert (again.written, again.removed, again.index_written) == ([], [], False)
    assert again.kept == len(_sidecars(archive))
    assert {p: p.read_bytes() for p in site.out.rglob("*.html")} == before

    gone = site.out / "records" / "20200101T000000Z-api-down-0000.html"
    gone.write_text("old")
    assert build_site(archive).removed == [gone.stem]
    assert not gone.exists()


def test_a_new_record_gets_its_page_and_the_others_are_kept(archive, tmp_path):
    root = tmp_path / "records"
    *older, newest = sorted(_sidecars(archive), key=lambda s: s["started_at"])

    def add(sidecar):
        for suffix in (".ipynb", ".json"):
            source = (archive / sidecar["record_path"]).with_suffix(suffix)
            target = root / source.relative_to(archive)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        append_index(root, sidecar)

    for sidecar in older:
        add(sidecar)
    first = build_site(root)
    assert sorted(first.written) == sorted(page_name(s["id"]) for s in older)
    add(newest)
    second = build_site(root)
    assert second.written == [page_name(newest["id"])]
    assert second.kept == len(older)
    assert second.index_written


def test_cli_builds_into_out_and_refuses_a_folder_inside_the_archive(archive, tmp_path):
    out = tmp_path / "pages"
    result = CliRunner().invoke(
        main, ["site", "--records", str(archive), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"{len(_sidecars(archive))} records" in result.output
    assert (out / "index.html").is_file()

    inside = CliRunner().invoke(
        main, ["site", "--records", str(archive), "--out", str(archive / "pages")]
    )
    assert inside.exit_code == 2
    assert "--out" in inside.output and "outside the archive" in inside.output
    assert not (archive / "pages").exists()


def test_an_unreadable_record_is_listed_unlinked_and_the_build_says_so(
    archive, tmp_path
):
    root = tmp_path / "records"
    shutil.copytree(archive, root)
    broken = _sidecars(root)[1]
    (root / broken["record_path"]).write_text("{not a notebook")
    out = tmp_path / "pages"

    result = CliRunner().invoke(
        main, ["site", "--records", str(root), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert f"could not render: {broken['id']}" in result.output
    index = (out / "index.html").read_text()
    assert f'id="r-{broken["id"]}"' in index
    assert f"records/{page_name(broken['id'])}.html" not in index
    assert not (out / "records" / f"{page_name(broken['id'])}.html").exists()
    others = [s for s in _sidecars(root) if s["id"] != broken["id"]]
    assert all(f"records/{page_name(s['id'])}.html" in index for s in others)


def test_every_verdict_status_has_a_badge_word():
    for status in Status:
        word = BADGES[status.value][0]
        assert word and status.value.upper().startswith(word[:2])


def test_index_escapes_every_value():
    hostile = "<script>x()</script>\"'><b onmouseover=y()>"
    row = {
        key: hostile
        for key in (
            "id",
            "href",
            "time",
            "runbook",
            "environment",
            "incident_id",
            "status",
            "verdict",
            "cause",
            "summary",
        )
    }
    page = index_page([row], hostile)
    assert "<script>x()" not in page and "<b onmouseover" not in page
    assert len(re.findall("<script>", page)) == 1
    assert page.count("&lt;script&gt;x()&lt;/script&gt;") >= 10


def test_a_missing_chromium_fails_the_browser_tests_saying_how_to_install_it(
    monkeypatch,
):
    import browser_helpers

    monkeypatch.setattr(browser_helpers, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(browser_helpers.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        browser_helpers.chromium_path()
