"""The backlog of each queue over time: is it growing, steady or draining?

History comes from the GraphQL Analytics dataset ``queueBacklogAdaptiveGroups``
(average messages per minute, CLOUDFLARE.md section 7); the last few minutes lag
behind. The trend compares the last hour with the hour before it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment
from ._finding import Finding, Status, check
from ._time import parse_duration, utcnow

logger = logging.getLogger(__name__)

# Below this change per hour a queue counts as steady.
STEADY_PER_HOUR = 5.0
_QUERY = """query QueueBacklog($accountTag: string!, $queueId: string!,
  $start: string!, $end: string!) {
  viewer { accounts(filter: {accountTag: $accountTag}) {
    queueBacklogAdaptiveGroups(limit: 10000, orderBy: [datetimeMinute_ASC],
      filter: {queueId: $queueId, datetime_geq: $start, datetime_leq: $end}) {
      avg { messages bytes }
      dimensions { datetimeMinute }
    }
  } }
}"""


@check("backlog-trend")
def check_backlog_trend(environment: Environment, *, lookback: str = "6h") -> Finding:
    """Read each platform queue's backlog history and say where it is heading.

    Args:
        environment: names the account and the queues.
        lookback: how far back to read, such as "6h" (the dataset keeps 31 days).
    """
    end = utcnow()
    start = end - parse_duration(lookback)
    client = CloudflareClient(environment)
    try:
        series = {
            name: _series(client, environment.account_id, name, start, end)
            for name in environment.queues.values()
        }
    finally:
        client.close()

    rows = [_trend_row(name, points) for name, points in series.items()]
    growing = [row["queue"] for row in rows if row["trend"] == "growing"]
    draining = [row["queue"] for row in rows if row["trend"] == "draining"]
    trends = {row["queue"]: row for row in rows}
    facts: dict[str, Any] = {
        "series": {
            name: [(t.isoformat(), n) for t, n in s] for name, s in series.items()
        },
        "trend": trends,
        "growing": growing,
        "draining": draining,
    }
    if growing:
        text = "growing: " + ", ".join(_describe(trends[n]) for n in growing)
        return Finding("backlog-trend", Status.WARN, text, rows, facts)
    if draining:
        text = "draining: " + ", ".join(_describe(trends[n]) for n in draining)
        return Finding("backlog-trend", Status.OK, text, rows, facts)
    return Finding(
        "backlog-trend", Status.OK, f"steady over the last {lookback}", rows, facts
    )


class BacklogPlot:
    """A drawn backlog history; Jupyter shows it as an inline PNG.

    Attributes:
        figure: the matplotlib Figure, for saving or further drawing.
    """

    def __init__(self, figure: Any) -> None:
        self.figure = figure

    def to_png(self) -> bytes:
        """Render the figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def __repr__(self) -> str:
        return f"BacklogPlot(lines={len(self.figure.axes[0].lines)})"


def plot_backlog(trend: Finding) -> BacklogPlot:
    """Draw the backlog history of a ``backlog-trend`` finding, one line per queue.

    Returns:
        The plot; its ``figure`` is a matplotlib Figure (no pyplot state is used).
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2), dpi=100)
    axes = figure.add_subplot()
    for name, points in (trend.facts.get("series") or {}).items():
        times = [datetime.fromisoformat(moment) for moment, _ in points]
        axes.plot(times, [count for _, count in points], label=name)  # type: ignore[arg-type]
    axes.set_ylabel("messages waiting")
    axes.set_title("Queue backlog (queueBacklogAdaptiveGroups)")
    axes.grid(alpha=0.3)
    if trend.facts.get("series"):
        axes.legend(loc="upper left", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    return BacklogPlot(figure)


def _series(
    client: CloudflareClient,
    account_id: str,
    name: str,
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, float]]:
    queue = client.find_queue(name)
    if queue is None:
        return []
    variables = {
        "accountTag": account_id,
        "queueId": queue["queue_id"],
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    data = client.graphql(_QUERY, variables)
    accounts = (data.get("viewer") or {}).get("accounts") or [{}]
    groups = accounts[0].get("queueBacklogAdaptiveGroups") or []
    return [
        (
            datetime.fromisoformat(g["dimensions"]["datetimeMinute"]),
            float((g.get("avg") or {}).get("messages") or 0),
        )
        for g in groups
    ]


def _trend_row(name: str, points: Sequence[tuple[datetime, float]]) -> dict[str, Any]:
    if not points:
        return {
            "queue": name,
            "now": None,
            "peak": None,
            "per_hour": None,
            "trend": "unknown",
            "eta_min": None,
        }
    last_time, now = points[-1]
    hour_ago = _at(points, last_time - timedelta(hours=1))
    per_hour = round(now - hour_ago, 1)
    trend = "steady"
    if per_hour > STEADY_PER_HOUR:
        trend = "growing"
    elif per_hour < -STEADY_PER_HOUR:
        trend = "draining"
    eta = round(now / -per_hour * 60) if trend == "draining" else None
    return {
        "queue": name,
        "now": round(now),
        "peak": round(max(count for _, count in points)),
        "per_hour": per_hour,
        "trend": trend,
        "eta_min": eta,
    }


def _at(points: Sequence[tuple[datetime, float]], moment: datetime) -> float:
    before = [count for when, count in points if when <= moment]
    return before[-1] if before else points[0][1]


def _describe(row: Mapping[str, Any]) -> str:
    text = f"{row['queue']} {row['now']} now ({row['per_hour']:+g}/h)"
    if row.get("eta_min") is not None:
        text += f", empty in about {row['eta_min']} min"
    return text
