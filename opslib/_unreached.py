"""The verdict of a runbook none of whose steps could look.

When every finding is ``unknown`` (wrong URLs, no network path, refused
credentials, a rate limit, a service failing on its side), a runbook knows
nothing about the incident and must not word its verdict as if it had seen the
failure. :func:`unreached_verdict` says what could not be reached, with the
errors the steps met, and what to do about each (:func:`access_advice`).
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


def fault_kind(finding: Finding) -> str:
    """What stopped a check from looking, as the advice groups it.

    ``rate-limit`` (a 429: wait as asked), ``server`` (the service answered 5xx,
    or with a body that could not be read: it failed on its side) or ``access``
    (no connection, a timeout, refused credentials, a wrong URL: fix access).
    Read from the error class and HTTP status the check recorded.
    """
    error = finding.facts.get("error")
    status = finding.facts.get("status_code")
    if error == "RateLimitError" or status == 429:
        return RATE_LIMIT
    if error == "APIError" and not (isinstance(status, int) and 400 <= status < 500):
        return SERVER
    return ACCESS


RATE_LIMIT = "rate-limit"
SERVER = "server"
ACCESS = "access"
_ADVICE = {
    ACCESS: (
        "fix access (the environment's URLs, the network path from this machine "
        "and the credentials in its secrets file)"
    ),
    SERVER: (
        "the service failed on its side (a 5xx answer or one that could not be "
        "read): check its status page and retry in a few minutes; access is not "
        "the problem"
    ),
    RATE_LIMIT: "wait as long as its evidence says the API asked",
}


def access_advice(findings: Iterable[Finding], *, access: str = "") -> str:
    """What to do before re-running, given the checks that could not look.

    The advice follows what stopped each check (:func:`fault_kind`): a rate
    limit is waited out for as long as the API asked (the wait is in the
    finding's summary), a server-side failure is the service's to mend (its
    status page says more; a retry shortly after often reads it), and only an
    unreachable system or refused credentials is an access problem. Sending the
    operator to check tokens after a 429 or a 503 wastes the time the service
    needs.

    A finding that records no error (a step skipped because the one it needs
    could not look) adds no advice of its own when another finding names one.

    Args:
        findings: the findings; only the ``unknown`` ones are read.
        access: what the runbook's credentials need, added to the access
            advice only (such as "STRIPE_API_KEY needs Read on Events").
    """
    blind = [f for f in findings if f.status is Status.UNKNOWN]
    # A step skipped because an earlier one could not look records no error of its
    # own; the earlier step's error is what to act on.
    caused = [f for f in blind if f.facts.get("error")] or blind
    groups: dict[str, list[str]] = {}
    for finding in caused:
        groups.setdefault(fault_kind(finding), []).append(finding.name)
    if not groups:
        groups[ACCESS] = []
    parts = []
    for kind in (ACCESS, SERVER, RATE_LIMIT):
        names = ", ".join(dict.fromkeys(groups.get(kind, [])))
        if kind not in groups:
            continue
        if kind == RATE_LIMIT:
            parts.append(f"{names} met a rate limit: {_ADVICE[kind]}")
        else:
            advice = _ADVICE[kind]
            if kind == ACCESS and access:
                advice = f"{advice[:-1]}; {access})"
            parts.append(advice if len(groups) == 1 else f"for {names}, {advice}")
    text = "; ".join(parts)
    if set(groups) != {RATE_LIMIT}:  # else it starts with a check's name, kept as is
        text = f"{text[0].upper()}{text[1:]}"
    return f"{text}. Then re-run."


def blind_advice(findings: Iterable[Finding]) -> str:
    """:func:`access_advice` as a sentence to add to a next action, when a check
    could not look; "" when every check looked."""
    blind = [f for f in findings if f.status is Status.UNKNOWN]
    if not blind:
        return ""
    names = ", ".join(dict.fromkeys(f.name for f in blind))
    return f" For what could not be checked ({names}): {access_advice(blind)}"


def _first_line(text: str, limit: int = 160) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"
