"""Pictures and tables of the high-error-rate runbook, from the route-errors finding.

:func:`plot_error_rate` draws the 5xx rate and, apart from it, the 429 share per
time bucket, with the deployments of the window marked; the returned object shows
itself as a PNG in a notebook, so the executed record keeps the image.
:func:`error_breakdown` is the route x version x status count table.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ._finding import Finding

BUCKET_MIN = 5


@dataclass(frozen=True)
class ErrorRatePlot:
    """A rendered error-rate chart.

    Attributes:
        png: the chart as PNG bytes.
        buckets: the plotted rows (start, requests, 5xx rate, 429 share).
    """

    png: bytes
    buckets: Sequence[Mapping[str, Any]]

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        return f"ErrorRatePlot(buckets={len(self.buckets)}, png={len(self.png)} bytes)"


def error_buckets(
    route_errors: Finding, *, bucket_min: int = BUCKET_MIN
) -> list[dict[str, Any]]:
    """Requests, 5xx rate and 429 share per bucket of ``bucket_min`` minutes."""
    events = route_errors.facts.get("events") or []
    start = float(route_errors.facts.get("window_start") or 0)
    end = float(route_errors.facts.get("window_end") or 0)
    if not events or end <= start:
        return []
    width = bucket_min * 60
    count = max(1, int((end - start) // width) + 1)
    rows = [
        {"start": start + i * width, "requests": 0, "5xx": 0, "429": 0}
        for i in range(count)
    ]
    for event in events:
        row = rows[min(count - 1, max(0, int((event["at"] - start) // width)))]
        row["requests"] += 1
        row["5xx"] += event["status"] >= 500
        row["429"] += event["status"] == 429
    for row in rows:
        total = row["requests"] or 1
        row["5xx_rate"] = row["5xx"] / total
        row["429_share"] = row["429"] / total
    return rows


def plot_error_rate(
    route_errors: Finding,
    deployments: Finding | None = None,
    *,
    bucket_min: int = BUCKET_MIN,
) -> ErrorRatePlot:
    """Draw the 5xx rate and the 429 share over the window, deployments marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates, pyplot

    rows = error_buckets(route_errors, bucket_min=bucket_min)
    to_num = dates.date2num
    times = to_num([_moment(r["start"]) for r in rows])  # type: ignore[no-untyped-call]
    figure, axes = pyplot.subplots(figsize=(9, 3.2))
    # A bucket without requests has no rate: leave a gap rather than draw 0 %.
    seen = [r["requests"] > 0 for r in rows]
    failed = [r["5xx_rate"] * 100 if s else math.nan for r, s in zip(rows, seen)]
    limited = [r["429_share"] * 100 if s else math.nan for r, s in zip(rows, seen)]
    axes.plot(times, failed, marker="o", label="5xx %")
    axes.plot(times, limited, linestyle="--", label="429 %")
    for deployment in (
        deployments.facts.get("deployments") if deployments else None
    ) or []:
        moment = float(to_num(_moment(deployment["at"])))  # type: ignore[no-untyped-call]
        axes.axvline(moment, color="red", linewidth=1)
        axes.annotate(
            f"deploy {deployment['version'][:8]}",
            (moment, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            fontsize=8,
        )
    axes.xaxis_date()
    axes.set_ylabel(f"% of requests per {bucket_min} min")
    axes.set_xlabel("time (UTC)")
    axes.legend(loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    pyplot.close(figure)
    return ErrorRatePlot(buffer.getvalue(), rows)


def error_breakdown(route_errors: Finding) -> Any:
    """Return a pandas table: requests per route, version and status class."""
    import pandas as pd  # type: ignore[import-untyped]

    events = route_errors.facts.get("events") or []
    frame = pd.DataFrame(
        [
            {
                "route": e["route"],
                "version": e["version"][:8],
                "status": _status_class(e["status"]),
            }
            for e in events
        ],
        columns=["route", "version", "status"],
    )
    if frame.empty:
        return frame
    table = frame.pivot_table(
        index=["route", "version"], columns="status", aggfunc="size", fill_value=0
    )
    return table


def _status_class(status: int) -> str:
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)
