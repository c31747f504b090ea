"""Wall and CPU time of the platform stand-in's invocations, and its isolates.

Workers report two times per invocation (CLOUDFLARE.md sections 3 and 7): CPU
time, what the isolate computed, and wall time, from the start to the answer,
which also holds every wait on I/O (D1, KV, an outbound fetch to Stripe). The
stand-in itself answers in microseconds, so it adds what the real Worker spends:

- CPU: a few milliseconds per request for routing, session checks and JSON;
- isolate start-up: a request that finds no warm isolate of its version in its
  data centre starts one, which costs the version's start-up time in CPU and in
  wall time (``Version.startup_ms``; the versions API reports it as
  ``startup_time_ms``). An isolate stays warm for ``IDLE_S`` after its last
  request and serves one request at a time, so concurrent requests start more;
- outbound calls: a handler that calls an outside service waits for its answer
  (``NORMAL_WAIT_MS``), unless the switch ``external_latency``
  (``{"service": name, "wait_ms": [low, high]}``) slows that service down.

Live requests really take that long: the modelled time is slept after the
world lock is released, so a probe feels it and other requests are not held up.
Replayed requests (history, ``_invocations``) are recorded with their times and
never sleep. The replayed users and the live probe arrive in different data
centres (``users`` and ``operator``), so each has isolates of its own.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from ._state import Version, World

EXTERNAL_LATENCY = "external_latency"
ISOLATES = "isolates"
_RNG = "timing_rng"
IDLE_S = 60.0
CPU_MS = (1.0, 4.0)
NORMAL_WAIT_MS = {"stripe": (250.0, 700.0), "mailchannels": (80.0, 250.0)}
_local = threading.local()


@dataclass
class Isolate:
    """One isolate of a version in a data centre: busy until, last used."""

    free_at: float
    last_used: float


@dataclass
class Cost:
    """What one invocation costs, filled in while the Worker runs.

    Attributes:
        clock: the request's moment (replay time or now), epoch seconds.
        live: False for replayed traffic, which never sleeps.
        cpu_ms: CPU time, start-up included.
        wait_ms: time spent waiting on outbound calls.
        wall_ms: start to answer; set when the invocation is recorded.
        subrequests: outbound fetches made.
        cold: True when the request started a new isolate.
    """

    clock: float
    live: bool
    cpu_ms: float
    isolate: Isolate
    started: float = field(default_factory=time.monotonic)
    wait_ms: float = 0.0
    wall_ms: float = 0.0
    subrequests: int = 0
    cold: bool = False


def begin(world: World, version: Version, at: float | None) -> Cost:
    """Start timing a request served by ``version`` (call with the world lock)."""
    clock = time.time() if at is None else at
    colo = "operator" if at is None else "users"
    pools = world.scenario.switches.setdefault(ISOLATES, {})
    pool: list[Isolate] = pools.setdefault((colo, version.id), [])
    # Isolates idle past IDLE_S are evicted; busy ones are kept.
    pool[:] = [i for i in pool if i.free_at > clock or clock - i.last_used <= IDLE_S]
    warm = [i for i in pool if i.free_at <= clock]
    cpu = _rng(world).uniform(*CPU_MS)
    if warm:
        cost = Cost(clock, at is None, cpu, warm[0])
    else:
        isolate = Isolate(clock, clock)
        pool.append(isolate)
        cost = Cost(clock, at is None, cpu + version.startup_ms, isolate, cold=True)
    cost.isolate.free_at = clock + cost.cpu_ms / 1000
    _local.cost = cost
    return cost


def call_external(world: World, service: str) -> None:
    """Charge the running request one outbound call to ``service``."""
    cost: Cost | None = getattr(_local, "cost", None)
    if cost is None:
        return
    slowed = world.scenario.switches.get(EXTERNAL_LATENCY) or {}
    low, high = (
        slowed["wait_ms"]
        if slowed.get("service") == service
        else NORMAL_WAIT_MS.get(service, (100.0, 300.0))
    )
    cost.wait_ms += _rng(world).uniform(low, high)
    cost.subrequests += 1


def charge_wait(milliseconds: float) -> None:
    """Charge the running request a wait of its own (a slow step of a handler)."""
    cost: Cost | None = getattr(_local, "cost", None)
    if cost is not None and milliseconds > 0:
        cost.wait_ms += milliseconds


def finish() -> Cost | None:
    """Close the running request's cost: wall time, isolate busy until the end."""
    cost: Cost | None = getattr(_local, "cost", None)
    _local.cost = None
    if cost is None:
        return None
    handler_ms = (time.monotonic() - cost.started) * 1000
    cost.wall_ms = handler_ms + cost.cpu_ms + cost.wait_ms
    cost.isolate.free_at = cost.clock + cost.wall_ms / 1000
    cost.isolate.last_used = cost.isolate.free_at
    _local.done = cost
    return cost


def take_sleep_s() -> float:
    """Seconds the last live request on this thread still has to wait, once."""
    cost: Cost | None = getattr(_local, "done", None)
    _local.done = None
    if cost is None or not cost.live:
        return 0.0
    return (cost.cpu_ms + cost.wait_ms) / 1000


def _rng(world: World) -> random.Random:
    generator = world.scenario.switches.get(_RNG)
    if not isinstance(generator, random.Random):
        generator = random.Random(f"timing:{world.scenario.name}")
        world.scenario.switches[_RNG] = generator
    return generator
