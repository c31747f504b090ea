"""``runbook site``: the archive as static HTML pages, to read in any browser.

::

    records-site/
      index.html             every record, newest first, with an in-page filter
      records/<id>.html      the executed notebook, the verdict block at the top
      .site.json             what was built, so a rebuild redoes only new records

The pages need no server and fetch nothing: they open from ``file://``. Record
content is treated as hostile: values are escaped, nbconvert sanitises the
notebook's HTML and Markdown, and a Content-Security-Policy forbids every
script on a record page (the index allows only its own filter, by hash).

Records are written once, so a record page, once built by this version of the
site, is kept as it is; a rebuild renders the records that have no page, rewrites
the index only when it changed and removes the pages of records gone from the
archive. Building twice in a row writes nothing the second time.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import RunError
from ._notebook import parse_notebook
from ._records import archive_dir, list_records
from ._sitehtml import NO_VERDICT_KEY, RECORD_CSP, STYLE, index_page, shown_time
from ._sitehtml import verdict_block

logger = logging.getLogger(__name__)

# Raise when a page's shape changes: every record page is rebuilt once.
SITE_VERSION = "1"
MANIFEST_NAME = ".site.json"
PAGES_DIR = "records"
_ALL_RECORDS = 1_000_000_000
_PAGE_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# nbconvert's lab template, less everything it would fetch from the network
# (require.js, MathJax, Mermaid, widget managers), with the policy and the
# verdict block added. Its own CSS is inlined and holds data URLs only.
_TEMPLATE_NAME = "opslib-record.html.j2"
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head -%}
<meta http-equiv="Content-Security-Policy" content="{{ resources.opslib_csp }}">
{{ super() }}
{%- endblock html_head -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">{{ resources.opslib_style }}</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.opslib_verdict }}
{%- endblock body_header -%}
"""


@dataclass
class SiteReport:
    """What a build did, for the person who asked for it."""

    out: Path
    records: int = 0
    written: list[str] = field(default_factory=list)
    kept: int = 0
    removed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    index_written: bool = False

    def lines(self) -> list[str]:
        """A few plain lines: counts, problems and where to open the site."""
        lines = [
            f"{self.records} records: {len(self.written)} pages written, "
            f"{self.kept} unchanged, {len(self.removed)} removed; index "
            + ("written" if self.index_written else "unchanged"),
        ]
        lines += [f"could not render: {problem}" for problem in self.unreadable]
        lines.append(f"open {(self.out / 'index.html').as_uri()}")
        return lines


def default_site_dir(records_dir: str | Path) -> Path:
    """Where a site goes unless told: ``<archive>-site`` beside the archive."""
    root = archive_dir(records_dir)
    return root.with_name(f"{root.name}-site")


def build_site(
    records_dir: str | Path, out_dir: str | Path | None = None
) -> SiteReport:
    """Write (or bring up to date) the static HTML archive of ``records_dir``.

    Args:
        records_dir: the archive folder.
        out_dir: the site folder (default: ``default_site_dir(records_dir)``); it
            must not be inside the archive.

    Returns:
        What was written, kept and removed. A record whose notebook cannot be
        read or rendered is listed in ``unreadable`` and in the index, unlinked.

    Raises:
        RunError: when the archive is missing, the site folder lies inside it, or
            a page cannot be written.
    """
    root = archive_dir(records_dir)
    if not root.is_dir():
        raise RunError(f"--records: got {str(root)!r}, expected an archive folder")
    out = archive_dir(out_dir) if out_dir is not None else default_site_dir(root)
    if out == root or root in out.parents:
        raise RunError(
            f"--out: got {str(out)!r}, expected a folder outside the archive "
            f"{str(root)!r}, so pages never mix with records"
        )
    report = SiteReport(out=out)
    built = _read_manifest(out)
    pages = out / PAGES_DIR
    rows: list[dict[str, str]] = []
    for index_row in list_records(root, limit=_ALL_RECORDS):
        sidecar = _sidecar(root, index_row)
        name = page_name(str(sidecar.get("id") or index_row.get("id")))
        page = pages / f"{name}.html"
        if name in built and page.is_file():
            report.kept += 1
        elif _render_record(root, sidecar, page, report):
            report.written.append(name)
        rows.append(_row(sidecar, f"{PAGES_DIR}/{name}.html" if page.is_file() else ""))
    report.records = len(rows)
    report.removed = _remove_stale(pages, {row["id"] for row in rows})
    report.index_written = write_if_changed(
        out / "index.html", index_page(rows, "Incident records")
    )
    names = sorted(
        name
        for name in (page_name(r["id"]) for r in rows)
        if (pages / f"{name}.html").is_file()
    )
    write_if_changed(
        out / MANIFEST_NAME,
        json.dumps({"site_version": SITE_VERSION, "pages": names}, indent=1) + "\n",
    )
    return report


def page_name(record_id: str) -> str:
    """The file name (without ``.html``) of a record's page: the id, made safe."""
    name = _UNSAFE.sub("-", record_id).strip(".") or "record"
    return name[:200]


def _read_manifest(out: Path) -> set[str]:
    try:
        data = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("site_version") != SITE_VERSION:
        return set()
    return {str(name) for name in data.get("pages") or []}


def _sidecar(root: Path, index_row: Mapping[str, Any]) -> dict[str, Any]:
    """The record's sidecar beside its notebook, else what the index knows."""
    path = root / str(index_row.get("record_path") or "")
    try:
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning(
            "no readable sidecar for record %s (%s)", index_row.get("id"), error
        )
        return dict(index_row)
    return data if isinstance(data, dict) else dict(index_row)


def _row(sidecar: Mapping[str, Any], href: str) -> dict[str, str]:
    verdict = sidecar.get("verdict")
    verdict = verdict if isinstance(verdict, Mapping) else {}
    return {
        "id": str(sidecar.get("id") or ""),
        "href": href,
        "time": shown_time(sidecar.get("started_at")),
        "runbook": str(sidecar.get("runbook") or ""),
        "environment": str(sidecar.get("environment") or ""),
        "incident_id": str(sidecar.get("incident_id") or ""),
        "status": str(sidecar.get("status") or ""),
        "verdict": str(
            verdict.get("status") or sidecar.get("verdict_status") or NO_VERDICT_KEY
        ),
        "cause": str(verdict.get("cause") or sidecar.get("cause") or ""),
        "summary": str(verdict.get("summary") or ""),
    }


def _render_record(
    root: Path, sidecar: Mapping[str, Any], page: Path, report: SiteReport
) -> bool:
    """Render one record's page; False (and a line in the report) when it cannot."""
    record_path = root / str(sidecar.get("record_path") or "")
    try:
        nb = parse_notebook(record_path.read_text(encoding="utf-8"))
        body = render_notebook(nb, sidecar, title=str(sidecar.get("id")))
    except Exception as error:  # noqa: BLE001 - any unreadable record is reported
        report.unreadable.append(
            f"{sidecar.get('id')}: {type(error).__name__}: {error}"
        )
        return False
    write_if_changed(page, body)
    return True


def render_notebook(nb: Any, sidecar: Mapping[str, Any], *, title: str) -> str:
    """One record page: the notebook through nbconvert, the verdict block on top."""
    exporter = _exporter()
    resources = {
        "metadata": {"name": title},
        "opslib_csp": RECORD_CSP,
        "opslib_style": STYLE,
        "opslib_verdict": verdict_block(sidecar, "../index.html"),
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return str(body)


@functools.lru_cache(maxsize=1)
def _exporter() -> Any:
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        template_name="lab",
        template_file=_TEMPLATE_NAME,
        extra_loaders=[jinja2.DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        sanitize_html=True,
        exclude_anchor_links=True,
    )
    exporter.register_filter("clean_html", clean_html)  # type: ignore[no-untyped-call]
    return exporter


# nbconvert's own cleaner escapes headings, paragraphs and table headers, which
# every Markdown cell and table has; this one keeps them and still lets no
# script, style sheet, frame, form or event handler through.
_SAFE_TAGS = frozenset(
    {
        *("a", "abbr", "b", "blockquote", "br", "caption", "code", "col"),
        *("colgroup", "dd", "del", "details", "div", "dl", "dt", "em", "figcaption"),
        *("figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins"),
        *("kbd", "li", "mark", "ol", "p", "pre", "s", "small", "span", "strong"),
        *("sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead"),
        *("tr", "u", "ul"),
    }
)
_SAFE_ATTRIBUTES = {
    "*": ["class", "id", "title", "align", "style"],
    "a": ["href"],
    "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan"],
    "th": ["colspan", "rowspan", "scope"],
    "table": ["border"],
    "ol": ["start"],
}


def clean_html(element: object) -> str:
    """Sanitise notebook HTML: safe tags kept, anything else shown as text."""
    import bleach  # type: ignore[import-untyped]
    from bleach.css_sanitizer import CSSSanitizer  # type: ignore[import-untyped]

    source = element.decode() if isinstance(element, bytes) else str(element)
    return str(
        bleach.clean(
            source,
            tags=_SAFE_TAGS,
            attributes=_SAFE_ATTRIBUTES,
            protocols={"http", "https", "mailto", "data"},
            css_sanitizer=CSSSanitizer(),
        )
    )


def _remove_stale(pages: Path, ids: set[str]) -> list[str]:
    """Remove the pages of records no longer in the archive; return their names."""
    keep = {page_name(record_id) for record_id in ids}
    removed = []
    for page in sorted(pages.glob("*.html")) if pages.is_dir() else []:
        if _PAGE_NAME.fullmatch(page.stem) and page.stem not in keep:
            page.unlink()
            removed.append(page.stem)
    return removed


def write_if_changed(path: Path, content: str) -> bool:
    """Write ``content`` atomically unless the file holds it already.

    Returns:
        True when the file was written.

    Raises:
        RunError: when the file cannot be written.
    """
    data = content.encode("utf-8")
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            "wb", dir=path.parent, prefix=f".{path.name}.", delete=False
        )
        try:
            with handle:
                handle.write(data)
            os.chmod(handle.name, 0o644)
            os.replace(handle.name, path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise RunError(
            f"could not write {str(path)!r} ({error}); check that the site folder "
            "is writable and has space"
        ) from error
    return True
