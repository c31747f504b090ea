"""The verdict of a runbook none of whose steps could look.

When every finding is ``unknown`` (wrong URLs, no network path, refused
credentials), a runbook knows nothing about the incident and must not word its
verdict as if it had seen the failure. :func:`unreached_verdict` says what could
not be reached, with the errors the steps met, and to fix access first.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._finding import Finding, Status
from ._verdict import Verdict

REASONS_SHOWN = 3


def unreached_verdict(
    runbook: str, findings: Iterable[Finding], *, systems: str
) -> Verdict | None:
    """The ``unknown`` verdict when no step could look; None when one could.

    Args:
        runbook: the runbook's name.
        findings: the steps' findings.
        systems: what the steps read, for the summary (such as "the platform
            and the Cloudflare API").
    """
    found = list(findings)
    if not found or any(f.status is not Status.UNKNOWN for f in found):
        return None
    reasons = list(dict.fromkeys(f"{f.name}: {_first_line(f.summary)}" for f in found))
    shown = "; ".join(reasons[:REASONS_SHOWN])
    if len(reasons) > REASONS_SHOWN:
        shown += f"; {len(reasons) - REASONS_SHOWN} more in the evidence"
    return Verdict(
        runbook,
        Status.UNKNOWN,
        "inconclusive",
        f"Nothing could be checked: no step could reach or read {systems} "
        f"({shown}). No failure was observed either way.",
        [str(f) for f in found],
        access_advice(found)
        + " The runbook names a cause only from what it could see.",
        None,
        found,
    )


def access_advice(findings: Iterable[Finding]) -> str:
    """What to do before re-running, given the checks that could not look.

    A rate limit is not an access problem: sending the operator to check
    tokens and the network after a 429 wastes the minutes the API asked to
    wait. The wait itself is in each rate-limited finding's summary.

    Args:
        findings: the findings; only the ``unknown`` ones are read.
    """
    blind = [f for f in findings if f.status is Status.UNKNOWN]
    limited = [f.name for f in blind if f.facts.get("error") == "RateLimitError"]
    others = [f.name for f in blind if f.name not in limited]
    wait = (
        f"{', '.join(limited)} met a rate limit: wait as long as its evidence says "
        "the API asked"
    )
    if limited and not others:
        return f"{wait}, then re-run."
    fix = (
        "fix access (the environment's URLs, the network path from this machine "
        "and the credentials in its secrets file)"
    )
    if limited:
        return f"For {', '.join(others)}, {fix}; {wait}. Then re-run."
    return f"{fix[0].upper()}{fix[1:]}, then re-run."


def _first_line(text: str, limit: int = 160) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"
