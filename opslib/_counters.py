"""Rate-limit counters in the SESSIONS namespace: read, compare, delete.

The platform keeps every rate-limit counter in SESSIONS as JSON ``{count,
resetAt}`` (resetAt in epoch ms; PLATFORM.md section 4). The gated clearing of
login counters (auth-broken) and of password-reset counters (password-reset)
share these helpers: the plan keeps the values as its before-image, and the
applier refuses when the set of counters or one's window (``resetAt``) changed
since the plan.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._cloudflare import CloudflareClient
from ._config import Environment

logger = logging.getLogger(__name__)

SESSIONS = "SESSIONS"
KV_SETTLE_S = 10.0


def read_counters(environment: Environment, keys: Iterable[str]) -> dict[str, Any]:
    """Read the counters among ``keys`` that exist, decoded (JSON or short text)."""
    namespace_id = environment.kv_namespaces[SESSIONS]
    client = CloudflareClient(environment)
    try:
        found = {k: client.kv_get(namespace_id, k) for k in keys}
    finally:
        client.close()
    return {k: _decoded(v) for k, v in found.items() if v is not None}


def stale_counters(planned: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when the live counters are not the planned ones (keys or windows)."""
    if set(live) != set(planned):
        return True
    return any(_reset_at(live[k]) != _reset_at(planned[k]) for k in live)


def delete_counters(
    environment: Environment, keys: Iterable[str], *, action: str
) -> None:
    """Delete counters from SESSIONS, one KV DELETE each (never retried)."""
    namespace_id = environment.kv_namespaces[SESSIONS]
    client = CloudflareClient(environment)
    try:
        for key in keys:
            logger.info("applying action=%s key=%s", action, key)
            client.kv_delete(namespace_id, key)
    finally:
        client.close()


def wait_until_gone(
    environment: Environment, keys: Iterable[str], *, settle_s: float = KV_SETTLE_S
) -> list[str]:
    """Re-read the counters until none is left or ``settle_s`` passed (KV is
    eventually consistent); return the ones still there."""
    wanted = list(keys)
    stop = time.monotonic() + settle_s
    while True:
        left = sorted(read_counters(environment, wanted))
        if not left or time.monotonic() >= stop:
            return left
        time.sleep(0.5)


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]


def _reset_at(value: Any) -> Any:
    return value.get("resetAt") if isinstance(value, dict) else value
