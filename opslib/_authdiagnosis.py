"""The verdict of the "authentication broken" runbook.

Causes are weighed in this order: SESSIONS KV refusing writes (no session can be
created and the rate limiter throws), login rate limits, unverified accounts, a
CORS allow-list missing an origin, JWT_SECRET missing (named, but it never breaks
cookie logins), healthy, inconclusive. Two causes carry a gated repair: clearing
one IP's login counters, and marking one account verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._auth import login_counter_keys
from ._command import INCIDENT_PLACEHOLDER, runbook_command
from ._config import Environment
from ._finding import Finding, Status
from ._unreached import blind_advice, unreached_verdict
from ._verdict import Verdict

RUNBOOK = "auth-broken"
JWT_NOTE = (
    "JWT_SECRET plays no part in cookie sessions: regenerating or rotating it "
    "neither fixes nor breaks logins."
)


def clear_limits_phrase(environment: Environment, ip: str) -> str:
    """The confirm phrase that authorises clearing one IP's login counters."""
    return f"clear login rate limits of {ip} in {environment.name}"


def verify_account_phrase(environment: Environment, user_id: str) -> str:
    """The confirm phrase that authorises marking one account verified."""
    return f"mark user {user_id} verified in {environment.name}"


def diagnose_auth_broken(
    findings: Iterable[Finding],
    *,
    environment: Environment,
    incident_id: str = "",
    client_ip: str = "",
    user_id: str = "",
) -> Verdict:
    """Work out why logins fail from the runbook's findings.

    Args:
        findings: the steps' findings (any order; missing ones count as unknown).
        environment: the environment diagnosed, named in the gated step.
        incident_id: the incident, repeated in the gated step's command.
        client_ip: an IP a user reported; preferred when several are limited.
        user_id: the account the operator asked to mark verified; named in the
            gated step instead of the newest unverified one.

    Returns:
        The verdict; a gated step only for rate limits or unverified accounts.
    """
    found = {f.name: f for f in findings}
    unreached = unreached_verdict(
        RUNBOOK, found.values(), systems="the platform or the Cloudflare API"
    )
    if unreached is not None:
        return unreached
    ctx = _Context(found, environment, incident_id)
    status, facts = ctx.status, ctx.facts

    if status("sessions-kv") is Status.FAIL:
        return ctx.make(
            Status.FAIL,
            "kv-sessions-unavailable",
            "The SESSIONS KV namespace refuses writes: no session can be created and "
            f"the rate limiter throws, so logins answer {facts('login').get('login')}.",
            "Check Workers KV on the Cloudflare status page and dashboard; if the "
            "namespace was replaced, bind the right id and deploy. " + JWT_NOTE,
        )
    limited = list(facts("rate-limits").get("limited_ips") or [])
    if limited or facts("login").get("login") == 429:
        return _rate_limited(ctx, limited, client_ip)
    if status("unverified") is Status.FAIL:
        return _unverified(ctx, user_id)
    if status("cors") is Status.FAIL:
        refused = ", ".join(facts("cors").get("refused") or []) or "an unlisted origin"
        return ctx.make(
            Status.FAIL,
            "cors-origin-missing",
            f"The platform's CORS allow-list does not allow {refused}; browsers there "
            "drop every answer, so logins fail although the API works.",
            "Add the origin to src/config/cors-config.js (with credentials) and "
            "deploy; re-run this runbook to see every origin allowed.",
        )
    login_works = status("login") is Status.OK or _spared_and_working(ctx)
    if login_works and status("jwt-secret") is Status.WARN:
        return ctx.make(
            Status.WARN,
            "jwt-secret-missing",
            "JWT_SECRET is missing from the live Worker, but cookie logins work: "
            "a missing JWT_SECRET does not break cookie sessions.",
            "Restore it with `wrangler secret put JWT_SECRET --name "
            f"{environment.worker_name}` (a secret edit is a deployment) for the "
            "email-preference endpoints that verify Bearer tokens. " + JWT_NOTE,
        )
    if _spared_and_working(ctx):
        return ctx.make(
            Status.WARN,
            "healthy",
            "No IP is at the login limit and the test account's last login worked; "
            "this run did not log in, to spare its own address's login attempts "
            f"(they reset in {facts('login').get('resets_in_s', 0)} s)." + ctx.blind,
            "No repair needed; re-run after the reset for a full login probe. "
            + JWT_NOTE,
        )
    if status("login") is Status.OK and status("cookie") is Status.OK:
        level = Status.WARN if ctx.unknowns else Status.OK
        return ctx.make(
            level,
            "healthy",
            "The test account logs in and its session works." + ctx.blind,
            "No repair needed. Sessions last 30 minutes after login whatever the "
            "activity (the cookie's Max-Age); " + JWT_NOTE,
        )
    login_unknown = status("login") is Status.UNKNOWN
    return ctx.make(
        Status.UNKNOWN if login_unknown else Status.FAIL,
        "inconclusive",
        (
            "The login probe could not be judged, and no checked cause shows."
            if login_unknown
            else "Logins fail but no checked cause explains it."
        )
        + ctx.blind,
        "Watch the login route with `wrangler tail --format pretty`, check the test "
        "account's password and row in D1. "
        + JWT_NOTE
        + blind_advice(ctx.found.values()),
    )


def _spared_and_working(ctx: _Context) -> bool:
    """The probe was skipped to spare the login limit, and its last login worked."""
    login = ctx.facts("login")
    return bool(login.get("skipped") and login.get("last_probe_ok"))


def _rate_limited(ctx: _Context, limited: list[str], client_ip: str) -> Verdict:
    ip = client_ip if client_ip in limited else (limited[0] if limited else "")
    if not ip:
        return ctx.make(
            Status.FAIL,
            "login-rate-limited",
            "Login answers 429 but no counter at the limit was found in SESSIONS.",
            "The counters may have expired already (5 or 15 minute windows); wait, "
            "or re-run with client_ip set to the address users log in from.",
        )
    phrase = clear_limits_phrase(ctx.environment, ip)
    step = {
        "action": "clear-rate-limits",
        "environment": ctx.environment.name,
        "ip": ip,
        "keys": list(login_counter_keys(ip)),
        "confirm": phrase,
        "command": ctx.command({"client_ip": ip}, phrase),
    }
    return ctx.make(
        Status.FAIL,
        "login-rate-limited",
        f"Logins from {ip} are rate-limited (5 per 15 minutes per IP, shared "
        f"behind NAT); {len(limited)} IP(s) at the limit.",
        f"Clear the login counters of {ip} (gated), or wait for the window to end.",
        step,
    )


def _unverified(ctx: _Context, asked: str) -> Verdict:
    user_ids = list(ctx.facts("unverified").get("user_ids") or [])
    user_id = asked or user_ids[0]
    phrase = verify_account_phrase(ctx.environment, user_id)
    step = {
        "action": "verify-account",
        "environment": ctx.environment.name,
        "user_id": user_id,
        "confirm": phrase,
        "command": ctx.command({"user_id": user_id}, phrase),
    }
    return ctx.make(
        Status.FAIL,
        "unverified-accounts",
        f"{len(user_ids)} accounts with email_verified = 0 keep trying to log in; the "
        "platform answers 403 until they verify, and it never sends the email.",
        "Confirm each account's owner (support ticket), then mark it verified one "
        "at a time (gated); the lasting fix is sending the verification email.",
        step,
    )


class _Context:
    """The findings by name, and how to build this runbook's verdicts."""

    def __init__(
        self, found: Mapping[str, Finding], environment: Environment, incident_id: str
    ) -> None:
        self.found = found
        self.environment = environment
        self.incident_id = incident_id
        self.unknowns = [n for n, f in found.items() if f.status is Status.UNKNOWN]
        self.blind = (
            f" Could not check: {', '.join(self.unknowns)}." if self.unknowns else ""
        )

    def status(self, name: str) -> Status:
        return self.found[name].status if name in self.found else Status.UNKNOWN

    def facts(self, name: str) -> Mapping[str, Any]:
        return self.found[name].facts if name in self.found else {}

    def command(self, target: Mapping[str, str], phrase: str) -> str:
        incident = {"incident_id": self.incident_id or INCIDENT_PLACEHOLDER}
        return runbook_command(
            RUNBOOK, self.environment.name, {**incident, **target}, confirm=phrase
        )

    def make(
        self,
        status: Status,
        cause: str,
        summary: str,
        next_action: str,
        gated_step: Mapping[str, Any] | None = None,
    ) -> Verdict:
        evidence = [str(f) for f in self.found.values() if f.status is not Status.OK]
        findings = list(self.found.values())
        return Verdict(
            RUNBOOK, status, cause, summary, evidence, next_action, gated_step, findings
        )
