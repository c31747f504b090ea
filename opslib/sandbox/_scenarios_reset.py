"""Scenarios of the password-reset runbook: one fault each (PLATFORM.md 9, 10.3).

- ``mail-provider-unauthorized``: MailChannels refuses the Worker's sends, which
  carry no API key (401, "no active subscription"); the API still answers 200.
- ``email-vars-missing``: a deployment two hours ago dropped the EMAIL_* and
  FRONTEND_URL plain_text vars, so the sender falls back to a hard-coded address
  and the emailed link starts with ``undefined``.
- ``reset-token-consumed-by-precheck``: the code as committed; the reset page's
  ``GET /auth/verify-reset-token`` marks the token used, so the submit fails.
- ``reset-rate-limited``: the password-reset counters of 127.0.0.1 (the address a
  client on loopback has) are at the limit of 3 per hour.

Provider and code behaviour are switches of the stand-ins; the Worker version and
the KV counters are states, injected as such.
"""

from __future__ import annotations

import json

from ._mailchannels import REFUSE_SWITCH
from ._reset import CONSUME_SWITCH
from ._scenarios import Scenario, _FaultContext, _new_version, register_scenario
from ._state import World

RUNBOOK = "password-reset"
EMAIL_VARS = (
    "EMAIL_FROM_ADDRESS",
    "EMAIL_FROM_NAME",
    "EMAIL_ADMIN_ADDRESS",
    "EMAIL_REPLY_TO_ADDRESS",
    "FRONTEND_URL",
)
LIMITED_IP = "127.0.0.1"
RESET_LIMIT = 3
_LIMITED_FOR = 40 * 60
_LIMITED_PATHS = ("/auth/password-reset-request", "/auth/password-reset")


def _refuse_unauthenticated(world: World, now: float) -> None:
    world.scenario.switches[REFUSE_SWITCH] = True
    world.scenario.details = {"provider_status": 401}


def _drop_email_vars(ctx: _FaultContext) -> None:
    previous = ctx.main.versions[-1]
    message = "Move configuration to the dashboard"
    version = _new_version(
        ctx.main, ctx.rng, ctx.now - 2 * 3600, "upload", dict(previous.secrets), message
    )
    version.bindings = [
        b
        for b in version.bindings
        if not (b.get("type") == "plain_text" and b.get("name") in EMAIL_VARS)
    ]
    ctx.state.details = {"missing": list(EMAIL_VARS), "version": version.id}


def _consume_on_precheck(world: World, now: float) -> None:
    world.scenario.switches[CONSUME_SWITCH] = True
    world.scenario.details = {"route": "/auth/verify-reset-token"}


def _fill_reset_counters(world: World, now: float) -> None:
    sessions = world.namespace(world.environment.kv_namespaces["SESSIONS"])
    assert sessions is not None, "the SESSIONS namespace exists in this scenario"
    record = json.dumps(
        {"count": RESET_LIMIT, "resetAt": int((now + _LIMITED_FOR) * 1000)}
    ).encode()
    keys = [f"rate_limit:ip:{LIMITED_IP}:{p.replace('/', '_')}" for p in _LIMITED_PATHS]
    keys.append(f"rate_limit:endpoint:{LIMITED_IP}:{_LIMITED_PATHS[0]}")
    for key in keys:
        sessions.put(key, record, ttl=_LIMITED_FOR)
    world.scenario.details = {"ip": LIMITED_IP, "keys": keys}


register_scenario(
    Scenario(
        "mail-provider-unauthorized",
        RUNBOOK,
        "mail-provider-unauthorized",
        "MailChannels answers 401 to the Worker's sends without an API key.",
    ),
    after_reset=_refuse_unauthenticated,
)
register_scenario(
    Scenario(
        "email-vars-missing",
        RUNBOOK,
        "email-vars-missing",
        "A deployment 2 hours ago dropped the EMAIL_* and FRONTEND_URL vars.",
    ),
    fault=_drop_email_vars,
)
register_scenario(
    Scenario(
        "reset-token-consumed-by-precheck",
        RUNBOOK,
        "reset-token-consumed-by-precheck",
        "The reset page's token pre-check marks the token used (code as committed).",
    ),
    after_reset=_consume_on_precheck,
)
register_scenario(
    Scenario(
        "reset-rate-limited",
        RUNBOOK,
        "reset-rate-limited",
        "The password-reset counters of 127.0.0.1 are at 3 per hour.",
    ),
    after_reset=_fill_reset_counters,
)
