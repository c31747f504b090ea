"""Client for Cloudflare's public status page (Statuspage v2 JSON, no auth).

The page-wide indicator is often "minor" only because some data centres are in
maintenance; health is judged by the product components under the group
"Cloudflare Sites and Services" and by unresolved incidents naming them.
"""

from __future__ import annotations

import logging
from typing import Any

from ._config import Environment
from ._errors import APIError
from ._http import HttpClient

logger = logging.getLogger(__name__)

PRODUCTS_GROUP = "Cloudflare Sites and Services"


class StatusPageClient:
    """Reads the status page of the environment's ``status_page_url``."""

    def __init__(
        self, environment: Environment, *, timeout: float | None = None
    ) -> None:
        self._http = HttpClient(
            "statuspage",
            environment.status_page_url,
            timeout=environment.timeout(timeout, 10.0),
        )

    def summary(self) -> dict[str, Any]:
        """Return ``summary.json``: page status, all components, open incidents."""
        response = self._http.request("GET", "summary.json")
        if not response.is_success:
            raise APIError(
                f"statuspage: HTTP {response.status_code} for summary.json",
                system="statuspage",
                url=str(response.url),
                status_code=response.status_code,
            )
        try:
            payload: dict[str, Any] = response.json()
        except ValueError as error:
            raise APIError(
                "statuspage: summary.json is not JSON",
                system="statuspage",
                url=str(response.url),
                status_code=response.status_code,
            ) from error
        return payload

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def product_components(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the components that sit under the products group."""
    components = summary.get("components") or []
    group_ids = {c.get("id") for c in components if c.get("name") == PRODUCTS_GROUP}
    return [c for c in components if c.get("group_id") in group_ids]
