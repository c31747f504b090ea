"""The platform stand-in's request costs: isolates, start-up, outbound waits."""

from types import SimpleNamespace

from opslib.sandbox import _timing
from opslib.sandbox._state import Version


def _world(switches=None):
    return SimpleNamespace(scenario=SimpleNamespace(name="t", switches=switches or {}))


def _version(startup_ms=2000.0):
    return Version("v1", 1, 0.0, "", "upload", {}, [], "e", startup_ms=startup_ms)


def _serve(world, version, at, service=""):
    _timing.begin(world, version, at)
    if service:
        _timing.call_external(world, service)
    return _timing.finish()


def test_first_request_starts_an_isolate_and_the_next_finds_it_warm():
    world, version = _world(), _version()
    first = _serve(world, version, 1000.0)
    second = _serve(world, version, 1010.0)
    assert first.cold and first.cpu_ms >= 2000.0
    assert not second.cold and second.cpu_ms < 10.0
    assert first.wall_ms >= first.cpu_ms


def test_an_isolate_idle_past_the_limit_is_started_again():
    world, version = _world(), _version()
    _serve(world, version, 1000.0)
    later = _serve(world, version, 1000.0 + _timing.IDLE_S + 5)
    assert later.cold


def test_a_busy_isolate_makes_a_concurrent_request_start_another():
    world, version = _world(), _version()
    _timing.begin(world, version, 1000.0)  # still running
    other = _serve(world, version, 1000.5)
    assert other.cold


def test_a_slowed_service_adds_wait_but_no_cpu():
    slowed = {_timing.EXTERNAL_LATENCY: {"service": "stripe", "wait_ms": [4000, 4000]}}
    world, version = _world(slowed), _version(startup_ms=10.0)
    _serve(world, version, 1000.0)
    cost = _serve(world, version, 1001.0, "stripe")
    assert cost.wait_ms == 4000.0
    assert cost.cpu_ms < 10.0 and cost.wall_ms >= 4000.0
    assert cost.subrequests == 1
    normal = _serve(world, version, 1020.0, "mailchannels")
    assert normal.wait_ms < 1000.0


def test_replayed_requests_never_sleep_and_live_ones_do():
    world, version = _world(), _version(startup_ms=50.0)
    _serve(world, version, 1000.0)
    assert _timing.take_sleep_s() == 0.0
    _serve(world, version, None)
    assert _timing.take_sleep_s() >= 0.05
    assert _timing.take_sleep_s() == 0.0
