"""The live state every stand-in server reads and changes.

One ``World`` per sandbox process holds the Workers scripts with their versions and
deployments, the KV namespaces (shared by the platform stand-in and the Cloudflare KV
endpoints), the D1 file, the scenario's flags and the injected faults. All of it is
guarded by one lock: the servers are threaded, the state is small.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opslib._config import Environment

from ._seed import DATABASE_NAME, copy_template
from ._transport import TransportFaults

logger = logging.getLogger(__name__)

FAULT_COUNTERS = ("cloudflare_429", "cloudflare_500", "platform_500", "status_page_500")
FAULT_SETTINGS = ("cloudflare_delay_ms", "platform_delay_ms")
FAULT_NAMES = FAULT_COUNTERS + FAULT_SETTINGS


@dataclass
class KVEntry:
    """One stored KV value with its absolute expiry (epoch seconds) and metadata."""

    value: bytes
    expiration: float | None = None
    metadata: Any = None


@dataclass
class Namespace:
    """A KV namespace: id, title and its keys."""

    id: str
    title: str
    entries: dict[str, KVEntry] = field(default_factory=dict)

    def get(self, key: str, now: float | None = None) -> KVEntry | None:
        """Return the live entry for ``key``, dropping it when it has expired."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expiration is not None and entry.expiration <= (now or time.time()):
            del self.entries[key]
            return None
        return entry

    def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expiration: float | None = None,
        metadata: Any = None,
    ) -> None:
        """Store a value; ``ttl`` (seconds from now) wins over ``expiration``."""
        if ttl is not None:
            expiration = time.time() + ttl
        self.entries[key] = KVEntry(value, expiration, metadata)

    def delete(self, key: str) -> None:
        """Remove a key if present."""
        self.entries.pop(key, None)

    def list_keys(self, prefix: str, after: str, limit: int) -> tuple[list[str], bool]:
        """Return up to ``limit`` live key names after ``after``, sorted by UTF-8 bytes.

        Returns:
            The names and whether more keys follow.
        """
        now = time.time()
        names = sorted(
            (k for k in list(self.entries) if k.startswith(prefix)),
            key=lambda k: k.encode("utf-8"),
        )
        live = [k for k in names if k.encode() > after.encode() and self.get(k, now)]
        return live[:limit], len(live) > limit


@dataclass
class Version:
    """One uploaded Worker version."""

    id: str
    number: int
    created_on: float
    message: str
    triggered_by: str
    secrets: dict[str, str]
    bindings: list[dict[str, Any]]
    etag: str
    tag: str | None = None
    source: str = "wrangler"
    author_email: str = "user@example.com"
    broken: bool = False
    # What starting an isolate of this version costs (the API's startup_time_ms).
    startup_ms: float = 11.0


@dataclass
class Deployment:
    """One deployment: which versions take what share of the traffic."""

    id: str
    created_on: float
    message: str
    triggered_by: str
    versions: list[tuple[str, float]]
    source: str = "wrangler"
    author_email: str = "user@example.com"


@dataclass
class Script:
    """A Worker script; versions and deployments are kept oldest first."""

    name: str
    created_on: float
    handlers: list[str]
    compatibility_date: str
    compatibility_flags: list[str]
    versions: list[Version] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)

    def version(self, version_id: str) -> Version | None:
        """Return a version by id, or None."""
        return next((v for v in self.versions if v.id == version_id), None)

    @property
    def live(self) -> Deployment:
        """The deployment serving traffic now (the newest one)."""
        return self.deployments[-1]

    def live_version(self) -> Version:
        """The version taking the largest share of the live deployment."""
        version_id = max(self.live.versions, key=lambda pair: pair[1])[0]
        found = self.version(version_id)
        assert found is not None
        return found


@dataclass
class ScenarioState:
    """What a scenario sets up; built by ``_scenarios.build_state``."""

    name: str
    scripts: dict[str, Script]
    namespaces: dict[str, Namespace]
    d1_available: bool = True
    edge_outage: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    # Platform-behaviour switches set by scenarios of other runbooks, by name.
    switches: dict[str, Any] = field(default_factory=dict)


class World:
    """Everything the stand-ins serve, with one lock around it.

    Args:
        environment: the environment whose names the sandbox serves.
        state_dir: the sandbox's state folder (holds the D1 file and template).
        token: the Cloudflare API token the stand-in accepts.
    """

    def __init__(self, environment: Environment, state_dir: Path, token: str) -> None:
        self.environment = environment
        self.state_dir = state_dir
        self.token = token
        self.lock = threading.RLock()
        self.rng = random.Random()
        self.database = state_dir / DATABASE_NAME
        self.template = state_dir / "seed.sqlite"
        self.scenario = ScenarioState("none", {}, {})
        self.started_at = time.time()
        self.faults: dict[str, int] = dict.fromkeys(FAULT_NAMES, 0)
        # Faults of the network rather than of a system's state; a reset clears them.
        self.transport = TransportFaults()
        # The Stripe endpoint's signing secret (the operator's copy sits in the
        # secrets file); the Worker secret STRIPE_WEBHOOK_SECRET set at setup.
        self.webhook_secret = ""

    def reset(self, state: ScenarioState, now: float) -> None:
        """Replace the whole state with a freshly built scenario and D1 copy."""
        with self.lock:
            copy_template(self.template, self.database, now)
            self.scenario = state
            self.started_at = now
            self.faults = dict.fromkeys(FAULT_NAMES, 0)
        self.transport.clear()
        logger.info("scenario active name=%s", state.name)

    @property
    def main_script(self) -> Script:
        """The platform's main Worker."""
        return self.scenario.scripts[self.environment.worker_name]

    def namespace(self, namespace_id: str) -> Namespace | None:
        """Return a KV namespace that exists now, or None."""
        return self.scenario.namespaces.get(namespace_id)

    def bound_namespace(self, version: Version, binding: str) -> Namespace | None:
        """Return the namespace a version's KV binding points at, if it still exists."""
        for item in version.bindings:
            if item.get("name") == binding and item.get("type") == "kv_namespace":
                return self.namespace(str(item.get("namespace_id")))
        return None

    def pick_version(self, script: Script) -> Version:
        """Choose the version serving one request, weighted by traffic share."""
        pairs = script.live.versions
        chosen = self.rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]
        version = script.version(chosen)
        assert version is not None
        return version

    def take_fault(self, name: str) -> bool:
        """Consume one unit of a counted fault; True when one was pending."""
        with self.lock:
            if self.faults.get(name, 0) > 0:
                self.faults[name] -= 1
                return True
            return False

    def delay(self, name: str) -> None:
        """Sleep for a configured delay fault (milliseconds), outside the lock."""
        milliseconds = self.faults.get(name, 0)
        if milliseconds > 0:
            time.sleep(milliseconds / 1000)

    def inject(self, faults: dict[str, int]) -> dict[str, int]:
        """Set faults (0 clears one); returns the faults now pending."""
        with self.lock:
            self.faults.update(faults)
            return dict(self.faults)


def iter_bindings(version: Version) -> Iterator[dict[str, Any]]:
    """Yield a version's bindings as the API returns them, secrets last."""
    yield from version.bindings
    for name in sorted(version.secrets):
        yield {"name": name, "type": "secret_text"}
