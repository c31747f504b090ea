"""Scenarios of the stripe-webhooks runbook (PLATFORM.md 5 and 10.7).

At every reset the sandbox seeds a webhook endpoint and five recent events and
delivers them to the platform stand-in (``_webhookseed``); each scenario makes
those deliveries fail in its own way, so its events stay pending:

- ``wrong-webhook-secret`` (state): three hours ago the Worker secret
  ``STRIPE_WEBHOOK_SECRET`` was replaced with another endpoint's signing secret
  (a new version, deployed at 100 %); every delivery gets 400 "Invalid
  signature" and the log names the mismatch.
- ``endpoint-disabled`` (state): the endpoint's status is ``disabled``; Stripe
  delivers nothing and the platform logs nothing.
- ``signature-check-broken-in-handler`` (switch): the synchronous
  ``constructEvent`` throws "SubtleCryptoProvider cannot be used in a
  synchronous context" for every delivery, answered as 400 "Invalid signature".
- ``api-version-mismatch`` (state): the endpoint is pinned to
  ``2025-03-31.basil``; payloads lack the top-level periods and
  ``invoice.subscription``, the handler binds undefined and answers 500.
- ``handler-timeout`` (switch): the handler takes 1.6 times the sandbox's
  delivery timeout (1 s, scaled down from Stripe's) before answering; it still
  writes D1, but Stripe counts the deliveries as failed.
"""

from __future__ import annotations

from ._scenarios import Scenario, _FaultContext, _new_version, register_scenario
from ._state import World
from ._webhooks import SECRET_NAME, SLOW_SWITCH, SYNC_VERIFY_SWITCH
from ._webhookseed import BASIL, DELIVERY_TIMEOUT_S, ENDPOINT_SWITCH

RUNBOOK = "stripe-webhooks"
SLOW_FACTOR = 1.6


def _wrong_webhook_secret(ctx: _FaultContext) -> None:
    good = ctx.main.versions[-1]
    secrets = dict(good.secrets)
    secrets[SECRET_NAME] = "whsec_" + "".join(
        ctx.rng.choice("0123456789abcdef") for _ in range(32)
    )
    changed = _new_version(ctx.main, ctx.rng, ctx.now - 3 * 3600, "secret", secrets, "")
    changed.etag = good.etag
    ctx.state.details = {"version": changed.id, "previous_version": good.id}


def _endpoint_disabled(world: World, now: float) -> None:
    world.scenario.switches[ENDPOINT_SWITCH] = {"status": "disabled"}
    world.scenario.details = {"endpoint_status": "disabled"}


def _signature_check_broken(world: World, now: float) -> None:
    world.scenario.switches[SYNC_VERIFY_SWITCH] = True
    world.scenario.details = {"verification": "synchronous constructEvent"}


def _api_version_mismatch(world: World, now: float) -> None:
    world.scenario.switches[ENDPOINT_SWITCH] = {"api_version": BASIL}
    world.scenario.details = {"endpoint_api_version": BASIL}


def _handler_timeout(world: World, now: float) -> None:
    seconds = round(DELIVERY_TIMEOUT_S * SLOW_FACTOR, 2)
    world.scenario.switches[SLOW_SWITCH] = seconds
    world.scenario.details = {
        "handler_seconds": seconds,
        "delivery_timeout_seconds": DELIVERY_TIMEOUT_S,
    }


register_scenario(
    Scenario(
        "wrong-webhook-secret",
        RUNBOOK,
        "wrong-webhook-secret",
        "STRIPE_WEBHOOK_SECRET was replaced with another endpoint's secret; 400s.",
    ),
    fault=_wrong_webhook_secret,
)
register_scenario(
    Scenario(
        "endpoint-disabled",
        RUNBOOK,
        "endpoint-disabled",
        "The Stripe webhook endpoint is disabled; recent events were never delivered.",
    ),
    after_reset=_endpoint_disabled,
)
register_scenario(
    Scenario(
        "signature-check-broken-in-handler",
        RUNBOOK,
        "signature-check-broken-in-handler",
        "The handler's synchronous constructEvent throws for every delivery; 400s.",
    ),
    after_reset=_signature_check_broken,
)
register_scenario(
    Scenario(
        "api-version-mismatch",
        RUNBOOK,
        "api-version-mismatch",
        "The endpoint sends 2025-03-31.basil payloads; the handler answers 500.",
    ),
    after_reset=_api_version_mismatch,
)
register_scenario(
    Scenario(
        "handler-timeout",
        RUNBOOK,
        "handler-timeout",
        "The handler answers after Stripe's delivery timeout; deliveries stay pending.",
    ),
    after_reset=_handler_timeout,
)
