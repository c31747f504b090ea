"""The verdict of the "password reset not working" runbook.

Causes, in the order they are weighed: the Worker lacks its email vars,
MailChannels refuses the Worker's keyless sends (both break every reset, so they
outrank full counters, which refuse one address and may well be the operator's
own after a few runs), the password-reset rate limit is full, the reset page's
pre-check consumes the token, healthy, inconclusive. The reset request probe is
skipped when it would fill a counter; the flow is then judged without it. A full rate limit is repaired behind the gate by deleting
that IP's password-reset counters. For the other causes a locked-out user can be
let in with the manual workaround: a new PBKDF2 hash written behind the gate,
offered when the run names the affected user.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ._command import INCIDENT_PLACEHOLDER, Placeholder, runbook_command
from ._config import Environment
from ._finding import Finding, Status
from ._unreached import blind_advice, unreached_verdict
from ._verdict import Verdict, not_ok

RUNBOOK = "password-reset"
# Printed in the gated command instead of the address, which records scrub into
# a pseudonym such as <email:63fb162f> (a redirect when pasted in a shell).
USER_PLACEHOLDER = "'USER-EMAIL'"
_NEXT = {
    "reset-rate-limited": (
        "Wait until the counters reset (see resets_in_min), or delete that IP's "
        "password-reset counters from SESSIONS: the gated step does it with a "
        "before-image (by hand: `wrangler kv key delete --binding SESSIONS <key>` "
        "for rate_limit:ip:<ip>:_auth_password-reset-request and "
        "rate_limit:endpoint:<ip>:/auth/password-reset-request)."
    ),
    "email-vars-missing": (
        "Restore FRONTEND_URL and the EMAIL_* entries under [vars] in wrangler.toml "
        "and deploy; until then emailed links start with 'undefined' and the sender "
        "is a hard-coded fallback."
    ),
    "mail-provider-unauthorized": (
        "MailChannels stopped keyless sending from Workers in 2024: add an API key "
        "(X-Api-Key header from a MAILCHANNELS_API_KEY Worker secret), the "
        "_mailchannels domain-lockdown TXT record and SPF include, or move to another "
        "provider. No reset email reaches anyone until then."
    ),
    "reset-token-consumed-by-precheck": (
        "Make GET /auth/verify-reset-token check the token without marking it used "
        "and deploy; meanwhile point users at /password-reset.html, which posts "
        "without the pre-check."
    ),
}
_SUMMARY = {
    "reset-rate-limited": "Password-reset requests are refused by the IP rate limit.",
    "email-vars-missing": "The live Worker lacks the vars the reset email is built from.",
    "mail-provider-unauthorized": "MailChannels refuses the reset emails the Worker sends.",
    "reset-token-consumed-by-precheck": (
        "The reset page's pre-check uses the token up, so the submit fails with "
        "'Invalid or expired reset token'."
    ),
}


def diagnose_password_reset(
    findings: Iterable[Finding],
    *,
    environment: Environment,
    user_email: str = "",
    incident_id: str = "",
) -> Verdict:
    """Work out why password resets fail from the runbook's findings.

    Args:
        findings: the findings of the steps (missing ones count as unknown).
        environment: the environment diagnosed, named in the gated step.
        user_email: the locked-out user; the manual reset is offered only then.
        incident_id: repeated in the gated step's command.

    Returns:
        The verdict, with the gated manual reset when a cause was found and the
        affected user is known.
    """
    found = {f.name: f for f in findings}
    unreached = unreached_verdict(
        RUNBOOK,
        found.values(),
        systems="the platform, the Cloudflare API (KV, D1, Worker settings) or MailChannels",
    )
    if unreached is not None:
        return unreached
    cause = _cause(found)
    evidence, unknowns, blind = not_ok(found)
    if cause == "healthy":
        return Verdict(
            RUNBOOK,
            Status.WARN if unknowns else Status.OK,
            cause,
            "A reset request answers, stores a token, the pre-check keeps it, the "
            "email vars are set and MailChannels accepts the send." + blind,
            evidence,
            "No repair needed; ask the user to check spam and request a new link "
            "(each link works for 1 hour).",
            None,
            list(found.values()),
        )
    if cause == "inconclusive":
        return Verdict(
            RUNBOOK,
            Status.UNKNOWN,
            cause,
            "No checked cause explains the reported reset failures." + blind,
            evidence,
            "Watch `wrangler tail --format pretty` for 'Failed to send password reset "
            "email' while requesting a reset." + blind_advice(found.values()),
            None,
            list(found.values()),
        )
    tokens = found.get("reset-tokens")
    step = _manual_reset_step(environment, tokens, user_email, incident_id)
    clear = _clear_limits_step(environment, found.get("reset-limits"), incident_id)
    next_action = _NEXT[cause]
    if cause != "reset-rate-limited" and clear is not None:
        next_action += (
            f" Also full: the password-reset counters of {clear['ip']}; a re-run "
            "once the cause above is fixed offers clearing them."
        )
        clear = None
    if cause == "reset-rate-limited" and clear is not None:
        step = clear
        next_action += " Once they are gone, the user can request a new link."
    elif step is None:
        next_action += (
            " To let a locked-out user in now, re-run with -p user_email <address> "
            "to plan the manual reset."
        )
    else:
        next_action += (
            f" Meanwhile, {step['summary']}; in its command, {step['fill_in']}."
        )
    return Verdict(
        RUNBOOK,
        Status.FAIL,
        cause,
        _SUMMARY[cause],
        evidence,
        next_action,
        step,
        list(found.values()),
    )


def set_password_phrase(environment: Environment, user_id: str) -> str:
    """The confirm phrase that authorises the manual reset of one user."""
    return f"set password of user {user_id} in {environment.name}"


def _cause(found: Mapping[str, Finding]) -> str:
    def status(name: str) -> Status:
        return found[name].status if name in found else Status.UNKNOWN

    request = found.get("reset-request")
    if status("email-vars") is Status.FAIL:
        return "email-vars-missing"
    if status("mail-provider") is Status.FAIL:
        return "mail-provider-unauthorized"
    if status("reset-limits") is Status.FAIL or (
        request is not None and request.facts.get("rate_limited")
    ):
        return "reset-rate-limited"
    if status("reset-precheck") is Status.FAIL and found["reset-precheck"].facts.get(
        "consumed"
    ):
        return "reset-token-consumed-by-precheck"
    needed = ["email-vars", "mail-provider"]
    if request is None or not request.facts.get("skipped"):
        needed += ["reset-request", "reset-precheck"]
    if all(status(n) is Status.OK for n in needed):
        return "healthy"
    return "inconclusive"


def clear_reset_limits_phrase(environment: Environment, ip: str) -> str:
    """The confirm phrase that authorises clearing one IP's reset counters."""
    return f"clear password-reset limits of {ip} in {environment.name}"


def _clear_limits_step(
    environment: Environment, limits: Finding | None, incident_id: str
) -> dict[str, Any] | None:
    full = (limits.facts.get("at_limit") or []) if limits is not None else []
    ips = Counter(str(row["ip"]) for row in full if row.get("ip"))
    if not ips:
        return None
    ip = ips.most_common(1)[0][0]
    phrase = clear_reset_limits_phrase(environment, ip)
    command = runbook_command(
        RUNBOOK,
        environment.name,
        {"incident_id": incident_id or INCIDENT_PLACEHOLDER},
        confirm=phrase,
    )
    return {
        "action": "clear-reset-limits",
        "environment": environment.name,
        "ip": ip,
        "summary": f"delete the password-reset counters of {ip} in SESSIONS",
        "confirm": phrase,
        "command": command,
    }


def _manual_reset_step(
    environment: Environment,
    tokens: Finding | None,
    user_email: str,
    incident_id: str,
) -> dict[str, Any] | None:
    user_id = (tokens.facts.get("user_id") if tokens else None) or ""
    if not user_email or not user_id:
        return None
    phrase = set_password_phrase(environment, user_id)
    command = runbook_command(
        RUNBOOK,
        environment.name,
        {
            "incident_id": incident_id or INCIDENT_PLACEHOLDER,
            "user_email": Placeholder(USER_PLACEHOLDER.strip("'")),
        },
        confirm=phrase,
        prefix="RUNBOOK_NEW_PASSWORD='NEW-PASSWORD'",
    )
    return {
        "action": "set-password-hash",
        "environment": environment.name,
        "user_id": user_id,
        "summary": f"write a new password hash for user {user_id} (manual reset)",
        "confirm": phrase,
        "command": command,
        "fill_in": (
            f"replace {USER_PLACEHOLDER} with the address given as user_email (the "
            "record keeps addresses scrubbed) and NEW-PASSWORD with the new "
            "password, inside the single quotes"
        ),
    }
