"""R2's S3-compatible endpoint, served by moto on loopback.

The server is moto's own WSGI application, bound to 127.0.0.1 in a thread of the
sandbox process. Before each request it makes sure the buckets hold the running
scenario's objects (PLATFORM.md section 7): in ``manuscripts-raw``, every
uploaded manuscript's file at its ``r2_key``, ``report-id:<reportId>`` and the
``status:<reportId>`` JSON that consumer A would have left for the manuscript's
D1 status. Every upload's file (drafts' too) is ``manuscript_text`` of its id,
whose SHA-256 is the row's ``file_hash``. A scenario overrides single status
objects through :data:`STATUS_SWITCH` (reportId to the JSON object), leaves
keys out of ``manuscripts-raw`` through :data:`DELETED_SWITCH` and adds objects
to any bucket through :data:`EXTRA_SWITCH` (``[bucket, key, text]`` rows).

moto accepts any access key and secret, so the sandbox's R2 credentials are
throw-away values that are never checked; R2 refuses wrong ones.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._backups import BACKUPS_SWITCH, put_backups
from ._seedrows import manuscript_text
from ._state import ScenarioState, World

logger = logging.getLogger(__name__)

STATUS_SWITCH = "r2.status"
DELETED_SWITCH = "r2.deleted"
EXTRA_SWITCH = "r2.extra"
RAW_BUCKET = "manuscripts-raw"
_R2_STATUS = {
    "queued": ("queued", 0, "Manuscript uploaded, waiting for analysis", "queued"),
    "analyzing": ("processing", 33, "Running line editing analysis...", "line"),
    "complete": ("complete", 100, "Analysis complete!", "complete"),
    "failed": ("failed", 0, "Analysis failed", "failed"),
}
_ROWS_SQL = "SELECT id, r2_key, status, metadata, updated_at FROM manuscripts"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def consumer_a_status(status: str, updated_at: float, report_id: str) -> dict[str, Any]:
    """The status object consumer A leaves in R2 for a D1 manuscript status."""
    r2_status, progress, message, step = _R2_STATUS[status]
    found: dict[str, Any] = {
        "status": r2_status,
        "progress": progress,
        "message": message,
        "currentStep": step,
        "timestamp": int(updated_at * 1000),
        "reportId": report_id,
    }
    if status == "failed":
        found["error"] = "Analysis failed"
    return found


class R2Server:
    """moto's S3 server on loopback, kept in step with the running scenario.

    Args:
        world: the shared sandbox state.
        port: the port to bind (0 for any free one).
    """

    def __init__(self, world: World, port: int) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class _QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                logger.debug("r2 request %s", self.requestline)

        self.world = world
        self._synced: ScenarioState | None = None
        self._sync_lock = threading.Lock()
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1",
            port,
            self._wrap(app),
            threaded=True,
            request_handler=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sandbox-r2", daemon=True
        )

    @property
    def port(self) -> int:
        """The private port moto listens on (clients call the sandbox's R2 front)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def _wrap(self, app: WsgiApp) -> WsgiApp:
        def handle(
            environ: dict[str, Any], start_response: StartResponse
        ) -> Iterable[bytes]:
            self._sync()
            return app(environ, start_response)

        return handle

    def _sync(self) -> None:
        with self._sync_lock, self.world.lock:
            if self._synced is self.world.scenario:
                return
            fill_buckets(self.world)
            self._synced = self.world.scenario


def fill_buckets(world: World) -> None:
    """Replace moto's buckets with the running scenario's objects."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.reset()
    for bucket in world.environment.r2_buckets.values() or (RAW_BUCKET,):
        backend.create_bucket(bucket, "us-east-1")
    put_backups(backend, world.scenario.switches.get(BACKUPS_SWITCH) or [])
    overrides = world.scenario.switches.get(STATUS_SWITCH) or {}
    deleted = set(world.scenario.switches.get(DELETED_SWITCH) or ())
    count = 0
    for key, value in _raw_objects(world, overrides):
        if key not in deleted:
            backend.put_object(RAW_BUCKET, key, value)
            count += 1
    for bucket, key, text in world.scenario.switches.get(EXTRA_SWITCH) or ():
        backend.put_object(bucket, key, text.encode())
    logger.info("r2 filled scenario=%s objects=%s", world.scenario.name, count)


def _raw_objects(
    world: World, overrides: dict[str, dict[str, Any]]
) -> Iterable[tuple[str, bytes]]:
    connection = sqlite3.connect(world.database)
    try:
        rows = connection.execute(_ROWS_SQL).fetchall()
    finally:
        connection.close()
    for manuscript_id, r2_key, status, metadata, updated_at in rows:
        yield r2_key, manuscript_text(manuscript_id)
        report_id = str(json.loads(metadata or "{}").get("reportId") or "")
        if not report_id or status not in _R2_STATUS:
            continue
        state = overrides.get(report_id) or consumer_a_status(
            status, float(updated_at), report_id
        )
        yield f"report-id:{report_id}", str(r2_key).encode()
        yield f"status:{report_id}", json.dumps(state).encode()
