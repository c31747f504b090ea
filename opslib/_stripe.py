"""A thin Stripe client for the ops library: the stripe SDK's ``StripeClient``.

Set up once per environment: the key from ``STRIPE_API_KEY`` (a restricted key
with Read on Customers, Subscriptions and Checkout Sessions is enough to
diagnose), the base URL from the environment's ``stripe_api_url``, the SDK's
httpx client in sync mode (no requests-based client), telemetry off before the
first call (no id file under the home folder, no telemetry header), and one
retry on connection errors, 409 and 5xx. Every SDK exception becomes one of
opslib's :class:`ServiceError` kinds, so a check turns it into ``unknown``.

Reads, with the writes of gated actions only: resending an event to an
endpoint and re-enabling an endpoint (stripe-webhooks), refunding a charge and
cancelling a subscription (the stripe procedure). Each write is called by an
applier behind the gate, never by a check.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import stripe

from ._config import MISSING_FILE_HINT, Environment
from ._errors import APIError, AuthError, RateLimitError, ServiceError, UnreachableError
from ._http import rate_limit_wait

logger = logging.getLogger(__name__)

KEY_VARIABLE = "STRIPE_API_KEY"
MAX_NETWORK_RETRIES = 1
PAGE_SIZE = 100
MAX_ITEMS = 5000
T = TypeVar("T")


class StripeReader:
    """Read-only Stripe calls for one environment.

    Args:
        environment: the environment whose ``stripe_api_url`` and key to use.
        timeout: seconds per request.

    Raises:
        AuthError: when no key is set, and UnreachableError when the environment
            names no ``stripe_api_url`` (both on the first call, so a check turns
            them into an unknown finding). There is no default URL.
    """

    def __init__(
        self, environment: Environment, *, timeout: float | None = None
    ) -> None:
        stripe.enable_telemetry = False
        self.environment = environment
        self._key = environment.secret(KEY_VARIABLE) or ""
        self._http = stripe.HTTPXClient(
            timeout=environment.timeout(timeout, 20.0), allow_sync_methods=True
        )
        self._sdk: stripe.StripeClient | None = None

    @property
    def _client(self) -> stripe.StripeClient:
        """The SDK client, made on first use (only once the key and URL exist)."""
        if self._sdk is None:
            self._sdk = stripe.StripeClient(
                self._key,
                base_addresses={"api": self.environment.stripe_api_url},
                http_client=self._http,
                max_network_retries=MAX_NETWORK_RETRIES,
            )
        return self._sdk

    def active_subscriptions(self, *, customer: str = "") -> list[dict[str, Any]]:
        """Every subscription with status active (up to 5,000), oldest id first."""
        params: stripe.params.SubscriptionListParams = {
            "status": "active",
            "limit": PAGE_SIZE,
        }
        if customer:
            params["customer"] = customer
        return self._collect(lambda: self._client.v1.subscriptions.list(params=params))

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """One customer, or None when Stripe has no such customer."""
        try:
            return _plain(
                self._call(lambda: self._client.v1.customers.retrieve(customer_id))
            )
        except APIError as error:
            if error.status_code == 404:
                return None
            raise

    def customers_by_email(self, email: str) -> list[dict[str, Any]]:
        """Customers whose email is exactly ``email`` (Stripe compares case-sensitively)."""
        params: stripe.params.CustomerListParams = {"email": email, "limit": PAGE_SIZE}
        return self._collect(lambda: self._client.v1.customers.list(params=params))

    def checkout_sessions(self, subscription_id: str) -> list[dict[str, Any]]:
        """The checkout sessions that created ``subscription_id``, newest first."""
        params: stripe.params.checkout.SessionListParams = {
            "subscription": subscription_id,
            "limit": 10,
        }
        page = self._call(lambda: self._client.v1.checkout.sessions.list(params=params))
        return [_plain(item) for item in page.data]

    def payment_intents(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The account's PaymentIntents, up to ``limit`` (Stripe lists newest first).

        Not filtered by customer on Stripe's side: the one-time analysis payment
        may carry no customer, so callers filter on customer or metadata.
        """
        params: stripe.params.PaymentIntentListParams = {"limit": PAGE_SIZE}
        items = self._collect(
            lambda: self._client.v1.payment_intents.list(params=params), limit
        )
        return items

    def subscriptions(self, customer: str) -> list[dict[str, Any]]:
        """Every subscription of a customer whatever its status, newest first."""
        params: stripe.params.SubscriptionListParams = {
            "customer": customer,
            "status": "all",
            "limit": PAGE_SIZE,
        }
        return self._collect(lambda: self._client.v1.subscriptions.list(params=params))

    def subscription(self, subscription_id: str) -> dict[str, Any] | None:
        """One subscription whatever its status, or None when Stripe has none."""
        return self._maybe(
            lambda: self._client.v1.subscriptions.retrieve(subscription_id)
        )

    def invoices(self, **filters: str) -> list[dict[str, Any]]:
        """Invoices, newest first, filtered by ``customer``, ``subscription`` or ``status``."""
        params: Any = {**filters, "limit": PAGE_SIZE}
        return self._collect(lambda: self._client.v1.invoices.list(params=params))

    def charges(self, customer: str) -> list[dict[str, Any]]:
        """The customer's charges, newest first."""
        params: stripe.params.ChargeListParams = {
            "customer": customer,
            "limit": PAGE_SIZE,
        }
        return self._collect(lambda: self._client.v1.charges.list(params=params))

    def charge(self, charge_id: str) -> dict[str, Any] | None:
        """One charge (with ``amount_refunded``), or None when Stripe has none."""
        return self._maybe(lambda: self._client.v1.charges.retrieve(charge_id))

    def payment_intent(self, intent_id: str) -> dict[str, Any] | None:
        """One PaymentIntent (with ``latest_charge``), or None when Stripe has none."""
        return self._maybe(lambda: self._client.v1.payment_intents.retrieve(intent_id))

    def create_refund(
        self, charge_id: str, amount: int, *, idempotency_key: str = ""
    ) -> dict[str, Any]:
        """Refund ``amount`` cents of a charge (a write that cannot be undone).

        ``idempotency_key``, given, is sent as Stripe's ``Idempotency-Key``:
        Stripe answers a second request with the same key with the first refund
        instead of making another. Without it the SDK picks a random key.
        """
        params: stripe.params.RefundCreateParams = {
            "charge": charge_id,
            "amount": amount,
        }
        options: stripe.RequestOptions = (
            {"idempotency_key": idempotency_key} if idempotency_key else {}
        )
        return _plain(
            self._call(
                lambda: self._client.v1.refunds.create(params=params, options=options)
            )
        )

    def cancel_subscription(self, subscription_id: str) -> dict[str, Any]:
        """Cancel a subscription now (a write; Stripe cannot reactivate it)."""
        return _plain(
            self._call(lambda: self._client.v1.subscriptions.cancel(subscription_id))
        )

    def cancel_at_period_end(
        self, subscription_id: str, cancel: bool
    ) -> dict[str, Any]:
        """Set or clear ``cancel_at_period_end`` of a subscription (a write)."""
        params: stripe.params.SubscriptionUpdateParams = {
            "cancel_at_period_end": cancel
        }
        return _plain(
            self._call(
                lambda: self._client.v1.subscriptions.update(
                    subscription_id, params=params
                )
            )
        )

    def webhook_endpoints(self) -> list[dict[str, Any]]:
        """Every webhook endpoint of the account (Stripe allows 16), no secrets."""
        params: stripe.params.WebhookEndpointListParams = {"limit": PAGE_SIZE}
        return self._collect(
            lambda: self._client.v1.webhook_endpoints.list(params=params)
        )

    def undelivered_events(
        self, since: int, *, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Events created at or after ``since`` that some endpoint has not acknowledged.

        Stripe keeps events for 30 days and lists them newest first.
        """
        params: stripe.params.EventListParams = {
            "delivery_success": False,
            "created": {"gte": since},
            "limit": PAGE_SIZE,
        }
        return self._collect(lambda: self._client.v1.events.list(params=params), limit)

    def event(self, event_id: str) -> dict[str, Any]:
        """One event, with its current ``pending_webhooks``."""
        return _plain(self._call(lambda: self._client.v1.events.retrieve(event_id)))

    def retry_event(self, event_id: str, endpoint_id: str) -> dict[str, Any]:
        """Resend an event to one endpoint now (``POST /v1/events/{id}/retry``).

        A write: the endpoint's handler runs again. The SDK has no method for
        this route, so it goes through ``raw_request``. Stripe does not say
        whether a restricted key may call it; a refusal (403) raises
        ``AuthError``, which the gate records as a failed action.
        """
        response = self._call(
            lambda: self._client.raw_request(
                "post", f"/v1/events/{event_id}/retry", webhook_endpoint=endpoint_id
            )
        )
        body: dict[str, Any] = json.loads(response.body or "{}")
        return body

    def enable_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """Re-enable a disabled webhook endpoint (a write)."""
        params: stripe.params.WebhookEndpointUpdateParams = {"disabled": False}
        return _plain(
            self._call(
                lambda: self._client.v1.webhook_endpoints.update(
                    endpoint_id, params=params
                )
            )
        )

    def _maybe(self, function: Callable[[], Any]) -> dict[str, Any] | None:
        try:
            return _plain(self._call(function))
        except APIError as error:
            if error.status_code == 404:
                return None
            raise

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()  # type: ignore[no-untyped-call]

    def _collect(
        self, first_page: Callable[[], Any], limit: int = MAX_ITEMS
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = self._call(first_page)
        for item in self._call(lambda: _iterate(page, limit)):
            items.append(item)
            if len(items) >= limit:
                logger.warning("stripe list stopped early items=%s", len(items))
                break
        return items

    def _call(self, function: Callable[[], T]) -> T:
        if not self.environment.stripe_api_url:
            raise UnreachableError(
                f"stripe: environment {self.environment.name!r} names no "
                "stripe_api_url; add it to its YAML file",
                system="stripe",
            )
        if not self._key:
            hint = ""
            if self.environment.secrets_file:
                hint = f" in {self.environment.secrets_file} ({MISSING_FILE_HINT})"
            raise AuthError(
                f"stripe: {KEY_VARIABLE} is not set{hint}; set it to a restricted "
                "key with Read on Customers, Subscriptions and Checkout Sessions",
                system="stripe",
                url=self.environment.stripe_api_url,
            )
        try:
            return function()
        except stripe.StripeError as error:
            raise _translate(error, self.environment.stripe_api_url) from error


def _iterate(page: Any, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for item in page.auto_paging_iter():
        found.append(_plain(item))
        if len(found) >= limit:
            break
    return found


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain dicts and lists (metadata included)."""
    result: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return result


def _translate(error: stripe.StripeError, url: str) -> ServiceError:
    status = error.http_status
    message = (
        f"stripe: {type(error).__name__} (HTTP {status}): {error.user_message or error}"
    )
    context: dict[str, Any] = {
        "system": "stripe",
        "url": url,
        "status_code": status,
        "request_id": error.request_id,
    }
    if isinstance(error, stripe.APIConnectionError):
        # The SDK's text is a support notice; the cause is in its last bracket.
        cause = re.search(r"\(Network error: ([^)]*)\)", str(error))
        reason = cause.group(1) if cause else str(error).splitlines()[0]
        return UnreachableError(f"stripe: no answer from {url} ({reason})", **context)
    if str(error).startswith("Invalid response body from API"):
        return APIError(
            f"stripe: HTTP {status} with a body that is not JSON; cut short in "
            "transit, or an error page in front of the API?",
            **context,
        )
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return AuthError(message + "; check the key's permissions", **context)
    if isinstance(error, stripe.RateLimitError):
        wait = rate_limit_wait(
            "Stripe", _header(error, "retry-after"), "back off and retry in a minute"
        )
        return RateLimitError(f"{message}; {wait}", **context)
    return APIError(message, **context)


def _header(error: stripe.StripeError, name: str) -> str:
    """A header of the answer behind ``error`` (any case), empty when absent."""
    for key, value in (error.headers or {}).items():
        if str(key).lower() == name:
            return str(value)
    return ""
