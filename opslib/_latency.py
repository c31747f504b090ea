"""Response times of the platform from a bounded, concurrent, anonymous probe.

:func:`check_latency` sends ``requests_per_route`` anonymous GETs to each route,
at most ``concurrency`` at a time, and stops sending at a hard deadline; no request
logs in, so the probe measures what the edge, the Worker's middleware and the
router cost before authentication. Signed-in routes such as the manuscript list
answer 401 here before reaching D1, so a slow D1 query does not show in this
probe: the query-plan step (``_queryplan``) looks for that.

:func:`plot_latency` draws the histogram of every probe's time, per route.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._config import Environment
from ._finding import Finding, Status, check
from ._platform import PlatformClient, Probe

logger = logging.getLogger(__name__)

P95_LIMIT_MS = 3000.0
DEFAULT_PATHS = ("/manuscripts", "/auth/me", "/payments/subscription")
MAX_REQUESTS = 200
MAX_CONCURRENCY = 8
# A route's first answer this slow, and this many times its median, looks like
# an isolate starting (a cold start) rather than the route itself.
COLD_FIRST_MS = 1000.0
COLD_FIRST_RATIO = 5.0


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile ``share`` (0..1) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def route_stats(probes: Sequence[Probe]) -> list[dict[str, Any]]:
    """Count, errors, the first answer's time and p50/p95/p99 (ms) per route,
    slowest p95 first; ``probes`` are in the order they were sent.

    Routes that never answered come last; their percentiles are NaN.
    """
    by_path: dict[str, list[Probe]] = {}
    for probe in probes:
        by_path.setdefault(probe.path, []).append(probe)
    rows = []
    for path, group in by_path.items():
        times = [p.elapsed_ms for p in group if p.status_code is not None]
        rows.append(
            {
                "route": path,
                "requests": len(group),
                "answered": len(times),
                "5xx": sum(p.is_server_error for p in group),
                "first_ms": round(times[0], 1) if times else math.nan,
                "p50_ms": round(percentile(times, 0.50), 1),
                "p95_ms": round(percentile(times, 0.95), 1),
                "p99_ms": round(percentile(times, 0.99), 1),
            }
        )
    return sorted(rows, key=lambda r: (not r["answered"], -r["p95_ms"]))


def cold_routes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Routes whose first answer was slow while the rest were fast.

    A new isolate loads the script before its first request, so on a version
    that is slow to start the first requests pay seconds and the rest do not.
    """
    return [
        r["route"]
        for r in rows
        if r["answered"] > 1
        and r["first_ms"] >= COLD_FIRST_MS
        and r["first_ms"] >= COLD_FIRST_RATIO * r["p50_ms"]
    ]


def run_probes(
    environment: Environment,
    paths: Sequence[str],
    *,
    requests_per_route: int,
    concurrency: int,
    deadline_s: float,
) -> list[Probe]:
    """Send the anonymous GETs, interleaved by route, until done or the deadline.

    Requests not yet started at the deadline are not sent; each request also has
    its own timeout, so the call returns within about ``deadline_s`` plus that.
    """
    order = [path for _ in range(requests_per_route) for path in paths]
    stop_at = time.monotonic() + deadline_s
    client = PlatformClient(environment, timeout=min(10.0, deadline_s))

    def one(path: str) -> Probe | None:
        if time.monotonic() >= stop_at:
            return None
        return client.probe(path)

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(one, order))
    finally:
        client.close()
    return [probe for probe in results if probe is not None]


@check("latency")
def check_latency(
    environment: Environment,
    paths: Sequence[str] = DEFAULT_PATHS,
    *,
    requests_per_route: int = 20,
    concurrency: int = 4,
    deadline_s: float = 60.0,
) -> Finding:
    """Probe each route and compare its p95 with the 3 s limit (PLATFORM.md 10.5).

    Args:
        environment: whose platform to probe.
        paths: the routes, requested anonymously with GET.
        requests_per_route: requests per route (at most 200 in all).
        concurrency: requests in flight at once (1 to 8).
        deadline_s: no request starts after this many seconds.
    """
    count = max(1, min(requests_per_route, MAX_REQUESTS // max(1, len(paths))))
    workers = max(1, min(concurrency, MAX_CONCURRENCY))
    probes = run_probes(
        environment,
        paths,
        requests_per_route=count,
        concurrency=workers,
        deadline_s=deadline_s,
    )
    rows = route_stats(probes)
    facts: dict[str, Any] = {
        "routes": rows,
        "times": {
            path: [p.elapsed_ms for p in probes if p.path == path] for path in paths
        },
        "sent": len(probes),
        "planned": count * len(paths),
    }
    answered = [r for r in rows if r["answered"]]
    if not answered:
        reasons = sorted({p.body for p in probes if p.status_code is None and p.body})
        facts["errors"] = reasons
        why = f": {'; '.join(reasons[:3])}" if reasons else ""
        text = f"no probe was answered by {environment.platform_url}{why}"
        return Finding("latency", Status.UNKNOWN, text, rows, facts)
    slow = [r for r in answered if r["p95_ms"] > P95_LIMIT_MS]
    facts["slow_routes"] = [r["route"] for r in slow]
    facts["cold_routes"] = cold_routes(answered)
    worst = answered[0]
    if slow:
        summary = (
            f"{len(slow)} route(s) over the 3 s p95 limit; worst {worst['route']} "
            f"p95 {worst['p95_ms']:.0f} ms"
        )
        return Finding("latency", Status.FAIL, summary, rows, facts)
    silent = [r["route"] for r in rows if not r["answered"]]
    cut = "" if len(probes) == facts["planned"] else " (deadline cut the probe short)"
    cut += f" (no answer from {', '.join(silent)})" if silent else ""
    summary = (
        f"every route under the 3 s p95 limit; slowest {worst['route']} "
        f"p95 {worst['p95_ms']:.0f} ms over {len(probes)} requests{cut}"
    )
    if facts["cold_routes"]:
        summary += "; the first answer was slow and the rest fast on " + ", ".join(
            facts["cold_routes"]
        )
    status = Status.OK if not cut and not facts["cold_routes"] else Status.WARN
    return Finding("latency", status, summary, rows, facts)


@dataclass(frozen=True)
class LatencyHistogram:
    """A rendered latency histogram.

    Attributes:
        png: the chart as PNG bytes.
        routes: the routes drawn.
    """

    png: bytes
    routes: Sequence[str]

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        return f"LatencyHistogram(routes={len(self.routes)}, png={len(self.png)} bytes)"


def plot_latency(latency: Finding) -> LatencyHistogram:
    """Draw the response-time histogram of the probe, one colour per route."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    times: Mapping[str, Sequence[float]] = latency.facts.get("times") or {}
    figure, axes = pyplot.subplots(figsize=(9, 3.2))
    drawn = [path for path, values in times.items() if values]
    if drawn:
        axes.hist([list(times[p]) for p in drawn], bins=20, label=drawn, stacked=True)
        axes.legend(fontsize=8)
    slowest = max((max(v) for v in times.values() if v), default=0.0)
    if slowest >= P95_LIMIT_MS / 2:
        axes.axvline(P95_LIMIT_MS, color="red", linestyle="--", linewidth=1)
        axes.set_xlabel("response time (ms); red: the 3 s p95 limit")
    else:
        axes.set_xlabel("response time (ms); all far below the 3 s p95 limit")
    axes.set_ylabel("requests")
    axes.set_title("Anonymous probe response times")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    pyplot.close(figure)
    return LatencyHistogram(buffer.getvalue(), tuple(drawn))
