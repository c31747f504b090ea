"""The Cloudflare status page stand-in: Statuspage v2 JSON (CLOUDFLARE.md section 8).

Products are children of the group "Cloudflare Sites and Services"; data centres sit
under region groups. In every scenario a few data centres are under maintenance or
re-routed, so the page indicator is "minor" even when every product is fine: a
runbook has to judge Workers by its own component. In the cloudflare-outage
scenario Workers is in major_outage with an unresolved incident naming it.
"""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime
from typing import Any

from ._http import Request, Response
from ._state import World
from ._statusdata import (
    DAY,
    HOUR,
    MAINTENANCE,
    PAGE_ID,
    PRODUCTS,
    PRODUCTS_GROUP,
    REGIONS,
    REROUTED,
    SEVERITY,
)


class StatusPageApp:
    """Request handler of the status page stand-in.

    Args:
        world: the shared sandbox state.
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, request: Request) -> Response:
        """Answer a GET under /api/v2."""
        if self.world.take_fault("status_page_500"):
            return Response.text(
                500,
                "<html><body>Internal Server Error</body></html>",
                "text/html; charset=utf-8",
            )
        page = StatusPage(
            self.world.scenario.name == "cloudflare-outage", self.world.started_at
        )
        documents = {
            "/api/v2/status.json": page.status_document,
            "/api/v2/summary.json": page.summary,
            "/api/v2/components.json": page.components_document,
            "/api/v2/incidents.json": page.incidents_document,
            "/api/v2/incidents/unresolved.json": page.unresolved_document,
            "/api/v2/scheduled-maintenances.json": page.maintenances_document,
        }
        build = documents.get(request.path) if request.method == "GET" else None
        if build is None:
            return Response.json(404, {"error": "Not found"})
        return Response.json(200, build())


class StatusPage:
    """The page's content for one scenario, dated around ``started_at``.

    Args:
        outage: True for the cloudflare-outage scenario.
        started_at: when the scenario started, epoch seconds.
    """

    def __init__(self, outage: bool, started_at: float) -> None:
        self.outage = outage
        self.now = started_at
        self.rng = random.Random("statuspage")
        self.components = self._build_components()
        self.by_name = {c["name"]: c for c in self.components}
        self.unresolved = self._unresolved()
        self.resolved = self._resolved()
        self.maintenances = self._maintenances()

    def page(self) -> dict[str, Any]:
        """The ``page`` object shared by every document."""
        return {
            "id": PAGE_ID,
            "name": "Cloudflare",
            "url": "https://www.cloudflarestatus.com",
            "time_zone": "Etc/UTC",
            "updated_at": _time(self.now - 300),
        }

    def status(self) -> dict[str, str]:
        """The page indicator: minor from data-centre noise, major in an outage."""
        if self.outage:
            return {"indicator": "major", "description": "Partial System Outage"}
        return {"indicator": "minor", "description": "Minor Service Outage"}

    def status_document(self) -> dict[str, Any]:
        """``status.json``."""
        return {"page": self.page(), "status": self.status()}

    def components_document(self) -> dict[str, Any]:
        """``components.json``."""
        return {"page": self.page(), "components": self.components}

    def incidents_document(self) -> dict[str, Any]:
        """``incidents.json``: unresolved first, then the recent resolved ones."""
        return {"page": self.page(), "incidents": self.unresolved + self.resolved}

    def unresolved_document(self) -> dict[str, Any]:
        """``incidents/unresolved.json``."""
        return {"page": self.page(), "incidents": self.unresolved}

    def maintenances_document(self) -> dict[str, Any]:
        """``scheduled-maintenances.json``."""
        return {"page": self.page(), "scheduled_maintenances": self.maintenances}

    def summary(self) -> dict[str, Any]:
        """``summary.json``: everything a dashboard needs in one document."""
        active = [m for m in self.maintenances if m["status"] != "completed"]
        return {
            "page": self.page(),
            "status": self.status(),
            "components": self.components,
            "incidents": self.unresolved,
            "scheduled_maintenances": active,
        }

    def _id(self) -> str:
        return "".join(
            self.rng.choice(string.ascii_lowercase + string.digits) for _ in range(12)
        )

    def _component(
        self,
        name: str,
        position: int,
        group_id: str | None,
        status: str = "operational",
    ) -> dict[str, Any]:
        return {
            "id": self._id(),
            "name": name,
            "status": status,
            "created_at": _time(self.now - 900 * DAY),
            "updated_at": _time(self.now - self.rng.uniform(1, 40) * HOUR),
            "position": position,
            "description": None,
            "showcase": False,
            "start_date": None,
            "group_id": group_id,
            "page_id": PAGE_ID,
            "group": False,
            "only_show_if_degraded": False,
        }

    def _group(
        self, name: str, position: int, children: list[str]
    ) -> list[dict[str, Any]]:
        group = self._component(name, position, None)
        group.update(group=True, components=[])
        members = [
            self._component(child, index, group["id"], self._status_of(child))
            for index, child in enumerate(children, start=1)
        ]
        group["components"] = [m["id"] for m in members]
        group["status"] = max((m["status"] for m in members), key=SEVERITY.index)
        return [group, *members]

    def _status_of(self, name: str) -> str:
        if name in MAINTENANCE:
            return "under_maintenance"
        if name in REROUTED:
            return "partial_outage"
        if name == "Workers" and self.outage:
            return "major_outage"
        return "operational"

    def _build_components(self) -> list[dict[str, Any]]:
        components = self._group(PRODUCTS_GROUP, 1, list(PRODUCTS))
        for position, (region, centres) in enumerate(REGIONS.items(), start=2):
            components += self._group(region, position, list(centres))
        return components

    def _incident(
        self,
        name: str,
        status: str,
        impact: str,
        started: float,
        updates: list[tuple[str, float, str]],
        component: str,
    ) -> dict[str, Any]:
        incident_id = self._id()
        affected = self.by_name[component]
        new_status = "major_outage" if status != "resolved" else "operational"
        items = [
            self._update(incident_id, kind, when, body, component, new_status)
            for kind, when, body in sorted(updates, key=lambda u: -u[1])
        ]
        resolved = status in ("resolved", "postmortem")
        return {
            "id": incident_id,
            "name": name,
            "status": status,
            "impact": impact,
            "created_at": _time(started),
            "updated_at": _time(max(u[1] for u in updates)),
            "started_at": _time(started),
            "monitoring_at": None,
            "resolved_at": _time(max(u[1] for u in updates)) if resolved else None,
            "shortlink": f"https://stspg.io/{incident_id[:8]}",
            "page_id": PAGE_ID,
            "incident_updates": items,
            "components": [affected],
        }

    def _update(
        self,
        incident_id: str,
        kind: str,
        when: float,
        body: str,
        component: str,
        new_status: str,
    ) -> dict[str, Any]:
        """One incident update; product names carry the group prefix."""
        label = (
            f"{PRODUCTS_GROUP} - {component}" if component in PRODUCTS else component
        )
        affected = {
            "code": self.by_name[component]["id"],
            "name": label,
            "old_status": "operational",
            "new_status": new_status,
        }
        return {
            "id": self._id(),
            "status": kind,
            "body": body,
            "incident_id": incident_id,
            "created_at": _time(when),
            "updated_at": _time(when),
            "display_at": _time(when),
            "affected_components": [affected],
            "deliver_notifications": True,
            "custom_tweet": None,
            "tweet_id": None,
        }

    def _unresolved(self) -> list[dict[str, Any]]:
        if not self.outage:
            return []
        start = self.now - 35 * 60
        label = f"{PRODUCTS_GROUP} - Workers"
        first = (
            f"Cloudflare is investigating elevated errors affecting {label}. "
            "Requests may fail with 5xx responses."
        )
        second = (
            f"The cause of the errors affecting {label} has been identified and a "
            "fix is being rolled out."
        )
        return [
            self._incident(
                "Workers requests failing with 5xx errors",
                "identified",
                "major",
                start,
                [
                    (
                        "investigating",
                        start,
                        first,
                    ),
                    (
                        "identified",
                        start + 15 * 60,
                        second,
                    ),
                ],
                "Workers",
            )
        ]

    def _resolved(self) -> list[dict[str, Any]]:
        rows = (
            (
                "Increased latency in Frankfurt, Germany - (FRA)",
                2.2,
                "Frankfurt, Germany - (FRA)",
            ),
            ("Workers KV elevated error rates", 6.5, "Workers KV"),
            ("Dashboard login issues", 12.1, "Dashboard"),
        )
        incidents = []
        for name, days, component in rows:
            start = self.now - days * DAY
            incidents.append(
                self._incident(
                    name,
                    "resolved",
                    "minor",
                    start,
                    [
                        ("investigating", start, "We are investigating this issue."),
                        (
                            "resolved",
                            start + 2 * HOUR,
                            "This incident has been resolved.",
                        ),
                    ],
                    component,
                )
            )
        return incidents

    def _maintenances(self) -> list[dict[str, Any]]:
        items = []
        for index, centre in enumerate(MAINTENANCE):
            start = self.now - (index + 1) * HOUR
            items.append(
                self._maintenance(
                    f"{centre} datacenter maintenance", "in_progress", start, centre
                )
            )
        upcoming = self.now + 2 * DAY
        items.append(
            self._maintenance(
                "Tokyo, Japan - (NRT) datacenter maintenance",
                "scheduled",
                upcoming,
                "Tokyo, Japan - (NRT)",
            )
        )
        return items

    def _maintenance(
        self, name: str, status: str, start: float, centre: str
    ) -> dict[str, Any]:
        component = self.by_name[centre]
        return {
            "id": self._id(),
            "name": name,
            "status": status,
            "impact": "maintenance",
            "created_at": _time(start - 3 * DAY),
            "updated_at": _time(start),
            "started_at": _time(start),
            "scheduled_for": _time(start),
            "scheduled_until": _time(start + 4 * HOUR),
            "monitoring_at": None,
            "resolved_at": None,
            "shortlink": "https://stspg.io/" + self._id()[:8],
            "page_id": PAGE_ID,
            "components": [component],
            "incident_updates": [
                {
                    "id": self._id(),
                    "status": status,
                    "created_at": _time(start),
                    "body": "We will be performing scheduled maintenance in "
                    + centre
                    + ".",
                    "affected_components": [
                        {
                            "code": component["id"],
                            "name": centre,
                            "old_status": "operational",
                            "new_status": "under_maintenance",
                        }
                    ],
                }
            ],
        }


def _time(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
