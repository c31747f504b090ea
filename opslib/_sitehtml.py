"""The HTML pieces of the static archive: badges, the verdict block, the index page.

Everything a record holds is treated as hostile text: every value goes through
``html.escape`` before it reaches a page, attributes included, and the pages
carry a Content-Security-Policy that lets no script run but the index's own
filter, named by its hash.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
from collections.abc import Mapping, Sequence
from typing import Any

# A verdict's status, its word on the badge and its colours (text, background).
# The word is always shown: the colour only repeats it.
BADGES: Mapping[str, tuple[str, str, str]] = {
    "ok": ("OK", "#0b4f1c", "#c9f0d3"),
    "warn": ("WARN", "#5c3c00", "#ffe2a8"),
    "fail": ("FAIL", "#ffffff", "#b3261e"),
    "unknown": ("UNKNOWN", "#222222", "#d8d8d8"),
    "manual": ("MANUAL", "#0d2f63", "#cfe0ff"),
}
NO_VERDICT = ("NO VERDICT", "#222222", "#ffffff")
NO_VERDICT_KEY = "none"
# A record page runs no script at all; images are the notebook's own data URLs.
RECORD_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)
_GATE_WORDS = {
    "dry-run": "dry run, nothing changed",
    "not-needed": "nothing to apply",
    "refused": "refused, nothing changed",
    "applied": "APPLIED",
    "failed": "FAILED",
}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
table.records { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
table.records th, table.records td { border-bottom: 1px solid #ddd;
  padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
table.records th { background: #f3f3f3; position: sticky; top: 0; }
.badge { display: inline-block; padding: 0.1rem 0.45rem; border-radius: 0.3rem;
  font-weight: 700; font-size: 0.8rem; border: 1px solid #555; white-space: nowrap; }
.filters { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.filters label { font-size: 0.85rem; }
.verdict-block { border: 2px solid #444; border-radius: 0.4rem; padding: 0.8rem 1rem;
  margin: 0 0 1.5rem 0; background: #fafafa; font-family: system-ui, sans-serif; }
.verdict-block h1 { font-size: 1.3rem; margin: 0 0 0.5rem 0; }
.verdict-block dl { display: grid; grid-template-columns: max-content 1fr;
  gap: 0.2rem 1rem; margin: 0.5rem 0; }
.verdict-block dt { font-weight: 700; }
.verdict-block dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
code { overflow-wrap: anywhere; }
"""


def text(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute; None is empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def badge(status: object) -> str:
    """The verdict badge: the status word on its colour; ``NO VERDICT`` for none."""
    key = str(status or NO_VERDICT_KEY)
    word, colour, background = BADGES.get(key, NO_VERDICT)
    if key not in BADGES and key != NO_VERDICT_KEY:
        word = key.upper()
    return (
        f'<span class="badge verdict-{text(key)}" '
        f'style="color:{colour};background:{background}">{text(word)}</span>'
    )


def shown_time(value: object) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS UTC``; anything else as it is."""
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "")
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def one_line(item: object) -> str:
    """A piece of evidence or detail on one line."""
    if isinstance(item, Mapping):
        return ", ".join(f"{key}={value}" for key, value in item.items())
    return " ".join(str(item).split())


def verdict_block(sidecar: Mapping[str, Any], index_href: str) -> str:
    """The block at the top of a record page: the run and what it concluded."""
    verdict = sidecar.get("verdict") or {}
    status = verdict.get("status") if isinstance(verdict, Mapping) else None
    rows: list[tuple[str, str]] = [
        ("record", text(sidecar.get("id"))),
        ("runbook", text(sidecar.get("runbook"))),
        ("environment", text(sidecar.get("environment"))),
        ("incident", text(sidecar.get("incident_id") or "-")),
        ("started", text(shown_time(sidecar.get("started_at")))),
        ("run", text(sidecar.get("status"))),
    ]
    error = sidecar.get("error")
    if isinstance(error, Mapping):
        rows.append(
            ("error", text(f"{error.get('ename')}: {one_line(error.get('evalue'))}"))
        )
    if isinstance(verdict, Mapping) and verdict:
        rows += _verdict_rows(verdict)
    else:
        rows.append(("verdict", "none: the run did not reach one"))
    rows.append(("applied actions", _actions_html(sidecar.get("actions") or [])))
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return (
        '<section class="verdict-block" id="verdict">'
        f'<p><a href="{text(index_href)}">&larr; all records</a></p>'
        f"<h1>Verdict {badge(status)} "
        f"<code>{text(verdict.get('cause') if verdict else '-')}</code></h1>"
        f"<dl>{items}</dl></section>"
    )


def _verdict_rows(verdict: Mapping[str, Any]) -> list[tuple[str, str]]:
    evidence = verdict.get("evidence") or []
    listed = "".join(f"<li>{text(one_line(item))}</li>" for item in evidence)
    step = verdict.get("gated_step")
    if isinstance(step, Mapping):
        step_text = step.get("command") or one_line(step)
    else:
        step_text = one_line(step) if step else "-"
    return [
        ("status", badge(verdict.get("status"))),
        ("cause", f"<code>{text(verdict.get('cause'))}</code>"),
        ("summary", text(verdict.get("summary"))),
        ("evidence", f"<ul>{listed}</ul>" if listed else "-"),
        ("next action", text(verdict.get("next_action") or "-")),
        ("gated step", f"<code>{text(step_text)}</code>"),
    ]


def _actions_html(actions: Sequence[Any]) -> str:
    results = [
        a for a in actions if isinstance(a, Mapping) and a.get("kind") == "result"
    ]
    if not results:
        return "none"
    items = []
    for result in results:
        outcome = str(result.get("outcome"))
        line = (
            f"{result.get('action')}: {_GATE_WORDS.get(outcome, outcome)}: "
            f"{one_line(result.get('detail'))}"
        )
        who = result.get("operator")
        if outcome == "applied" and who:
            line += f" (by {who} at {shown_time(result.get('at'))})"
        after = result.get("after")
        if isinstance(after, Mapping):
            line += f"; after: [{after.get('status')}] {after.get('summary')}"
        items.append(f"<li>{text(line)}</li>")
    return f"<ul>{''.join(items)}</ul>"


# The filter works from file:// with no server: rows carry their values as data
# attributes, the text box matches every word against a row's text.
FILTER_SCRIPT = """
(function () {
  var box = document.getElementById("filter-text");
  var selects = Array.prototype.slice.call(
    document.querySelectorAll("select[data-column]"));
  var rows = Array.prototype.slice.call(
    document.querySelectorAll("#records tbody tr"));
  var count = document.getElementById("shown-count");
  function apply() {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (row) {
      var rowText = row.textContent.toLowerCase();
      var keep = words.every(function (w) { return rowText.indexOf(w) >= 0; });
      selects.forEach(function (select) {
        var column = select.getAttribute("data-column");
        if (select.value && row.getAttribute("data-" + column) !== select.value) {
          keep = false;
        }
      });
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " records shown";
  }
  box.addEventListener("input", apply);
  selects.forEach(function (select) { select.addEventListener("change", apply); });
  document.getElementById("filter-clear").addEventListener("click", function () {
    box.value = "";
    selects.forEach(function (select) { select.value = ""; });
    apply();
  });
  apply();
})();
"""
# The columns a select filters on: the row attribute and its label.
FILTER_COLUMNS = (
    ("runbook", "Runbook"),
    ("environment", "Environment"),
    ("verdict", "Verdict"),
    ("status", "Run"),
)


def script_hash(script: str) -> str:
    """The CSP source naming an inline script by its SHA-256."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def index_page(rows: Sequence[Mapping[str, str]], title: str) -> str:
    """The archive's index: one row per record as given (newest first), filters.

    Each row maps ``id``, ``href`` (empty for no page), ``time``, ``runbook``,
    ``environment``, ``incident_id``, ``status``, ``verdict``, ``cause`` and
    ``summary`` to plain text.
    """
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src {script_hash(FILTER_SCRIPT)}; base-uri 'none'; "
        "form-action 'none'"
    )
    body = "".join(_index_row(row) for row in rows)
    selects = "".join(_select(rows, column, label) for column, label in FILTER_COLUMNS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{text(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{text(title)}</h1>"
        f"<p>{len(rows)} records, newest first. Each links to its executed "
        "notebook with the verdict at the top.</p>"
        '<div class="filters"><label>Filter '
        '<input id="filter-text" type="search" placeholder="words in any column" '
        'autocomplete="off"></label>'
        f'{selects}<button id="filter-clear" type="button">Clear</button>'
        '<span id="shown-count" aria-live="polite"></span></div>'
        '<table class="records" id="records"><thead><tr>'
        "<th>Time</th><th>Runbook</th><th>Environment</th><th>Incident</th>"
        "<th>Run</th><th>Verdict</th><th>Cause</th><th>Summary</th>"
        f"</tr></thead><tbody>{body}</tbody></table>"
        f"<script>{FILTER_SCRIPT}</script></body></html>\n"
    )


def _index_row(row: Mapping[str, str]) -> str:
    attributes = "".join(
        f' data-{column}="{text(row.get(column))}"' for column, _ in FILTER_COLUMNS
    )
    time = text(row.get("time"))
    if row.get("href"):
        time = f'<a href="{text(row["href"])}">{time}</a>'
    cells = [
        time,
        text(row.get("runbook")),
        text(row.get("environment")),
        text(row.get("incident_id")),
        text(row.get("status")),
        badge(row.get("verdict")),
        f"<code>{text(row.get('cause'))}</code>" if row.get("cause") else "-",
        text(row.get("summary")),
    ]
    return (
        f'<tr id="r-{text(row.get("id"))}"{attributes}>'
        + "".join(f"<td>{cell}</td>" for cell in cells)
        + "</tr>"
    )


def _select(rows: Sequence[Mapping[str, str]], column: str, label: str) -> str:
    values = sorted({row.get(column) or "" for row in rows} - {""})
    options = "".join(
        f'<option value="{text(value)}">{text(_option_word(column, value))}</option>'
        for value in values
    )
    return (
        f'<label>{text(label)} <select data-column="{text(column)}">'
        f'<option value="">all</option>{options}</select></label>'
    )


def _option_word(column: str, value: str) -> str:
    if column != "verdict":
        return value
    if value == NO_VERDICT_KEY:
        return NO_VERDICT[0]
    return BADGES[value][0] if value in BADGES else value.upper()
