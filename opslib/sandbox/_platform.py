"""The platform stand-in: the main Worker as it behaves in the live state.

Order of a request (PLATFORM.md sections 3, 4 and 10.1):

1. Cloudflare outage: the edge answers ``503 error code: 1105`` before any Worker.
2. Static assets (``/``, ``/index.html``) are served before the Worker, so they
   answer 200 whatever state the Worker is in.
3. A version is picked by traffic share; a broken version answers 500 everywhere.
4. OPTIONS preflight: 200 with an empty body.
5. A SESSIONS binding whose namespace is gone throws before routing: 500.
6. Rate limiting, then the router; an unmatched route is 404 JSON; anything the
   handlers throw goes through the global handler's message-to-status mapping.

CORS and the security headers are added to every Worker answer.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any

from . import _auth, _errorroutes, _reset, _slowquery, _timing, _webhooks
from ._call import Call, WorkerError, json_response
from ._http import Request, Response
from ._invocations import record_invocation, replay_time, version_at
from ._limits import check_limits
from ._state import World

logger = logging.getLogger(__name__)

ALLOWED_ORIGINS = (
    "https://example.com",
    "https://www.example.com",
    "https://api.example.com",
    "https://dashboard.example.com",
    "https://manuscript-platform.pages.dev",
    "https://manuscript-dashboard.pages.dev",
    "http://localhost:8000",
    "http://localhost:3000",
    "http://localhost:8787",
)
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        (
            "default-src 'self'; script-src 'self' https://js.stripe.com; "
            "connect-src 'self' https://api.stripe.com; "
            "frame-src https://js.stripe.com https://hooks.stripe.com; "
            "img-src 'self' data: https:; style-src 'self' 'unsafe-inline'"
        ),
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-XSS-Protection", "1; mode=block"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Permissions-Policy", "geolocation=(), microphone=(), camera=()"),
)
INDEX_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ManuscriptHub</title></head>
<body><h1>ManuscriptHub</h1><p>Upload your manuscript for analysis.</p>
<p><a href="/login.html">Log in</a></p></body></html>
"""
_KV_UNBOUND = "Cannot read properties of undefined (reading 'get')"
_STRIPE_UNSET = "Neither apiKey nor config.authenticator provided"
_PAGE_SIZE = 20


class PlatformApp:
    """Request handler of the platform stand-in.

    Args:
        world: the shared sandbox state.
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, request: Request) -> Response:
        """Answer one request as the edge and the Worker would."""
        if self.world.scenario.edge_outage:
            return _edge_error()
        self.world.delay("platform_delay_ms")
        if request.method in ("GET", "HEAD") and request.path in ("/", "/index.html"):
            return Response.text(200, INDEX_HTML, "text/html; charset=utf-8")
        with self.world.lock:
            response = self._run_worker(request)
        # Start-up and outbound waits of a live request, outside the lock.
        wait_s = _timing.take_sleep_s()
        if wait_s > 0:
            time.sleep(wait_s)
        # A scenario may swap the allow-list (switch "cors_allowed_origins").
        allowed = self.world.scenario.switches.get(
            "cors_allowed_origins", ALLOWED_ORIGINS
        )
        response.headers += _cors_headers(request, allowed) + list(SECURITY_HEADERS)
        return response

    def _run_worker(self, request: Request) -> Response:
        world = self.world
        at = replay_time(request)
        version = version_at(world, world.main_script, at)
        _timing.begin(world, version, at)
        # Replayed traffic leaves injected faults to the requests they are meant for.
        if version.broken or (at is None and world.take_fault("platform_500")):
            answer = json_response(500, {"error": "Internal server error"})
            return record_invocation(world, request, answer, version, at, uncaught=True)
        if request.method == "OPTIONS":
            return record_invocation(world, request, Response(200), version, at)
        try:
            sessions = world.bound_namespace(version, "SESSIONS")
            if sessions is None:
                raise WorkerError(_KV_UNBOUND)
            call = Call(
                world,
                request,
                version,
                sessions,
                world.bound_namespace(version, "CACHE_KV"),
                now=time.time() if at is None else at,
            )
            refused = check_limits(call)
            if refused is not None:
                return record_invocation(world, request, refused, version, at)
            response = _errorroutes.route(call) or _route(call)
        except WorkerError as error:
            answer = _global_error(str(error))
            return record_invocation(world, request, answer, version, at, str(error))
        response.headers += call.headers
        logs = tuple(call.logs)
        thrown = logs[-1] if response.status >= 500 and logs else ""
        return record_invocation(
            world, request, response, version, at, thrown, logs=logs
        )


def _route(call: Call) -> Response:
    method, path = call.request.method, call.path
    if _webhooks.is_webhook(method, path):
        return _webhooks.handle(call)
    if (method, path) == ("POST", "/auth/login"):
        return _auth.login(call)
    if (method, path) == ("POST", "/auth/logout"):
        return _auth.logout(call)
    if (method, path) == ("GET", "/auth/me"):
        return _auth.me(call)
    if (method, path) == ("GET", "/manuscripts"):
        return _list_manuscripts(call)
    if path.startswith("/payments/"):
        return _payments(call, method, path)
    if path.startswith("/auth/"):
        answer = _reset.route(call)
        if answer is not None:
            return answer
    return json_response(404, {"error": "Not Found", "path": path})


def _list_manuscripts(call: Call) -> Response:
    session = _auth.validate_session(call)
    if session is None:
        return json_response(401, {"error": "Unauthorized"})
    user_id = session["userId"]
    status = call.request.arg("status") or "all"
    genre = call.request.arg("genre") or "all"
    cache_key = f"manuscripts:{user_id}:{status}:{genre}:p1"
    cached = call.kv_json(call.cache, cache_key)
    if cached is not None:
        return json_response(200, cached, [("X-Cache", "HIT")])

    payload = _query_manuscripts(call, user_id, status, genre)
    call.kv_put_json(call.cache, cache_key, payload, 300)
    return json_response(200, payload, [("X-Cache", "MISS")])


def _query_manuscripts(
    call: Call, user_id: str, status: str, genre: str
) -> dict[str, Any]:
    """First page of a user's manuscripts, newest first, with pagination info."""
    where, args = "user_id = ?", [user_id]
    for column, value in (("status", status), ("genre", genre)):
        if value != "all":
            where, args = f"{where} AND {column} = ?", [*args, value]
    with call.d1() as db:
        total = db.execute(f"SELECT COUNT(*) FROM manuscripts WHERE {where}", args)
        count = int(total.fetchone()[0])
        page_sql = (
            "SELECT id, title, status, genre, word_count, file_type, uploaded_at, "
            f"updated_at, flagged_for_review FROM manuscripts WHERE {where} "
            "ORDER BY uploaded_at DESC LIMIT ?"
        )
        rows = db.execute(page_sql, [*args, _PAGE_SIZE]).fetchall()
        # D1 time follows the real plan: a full SCAN costs per row (_slowquery).
        _slowquery.pay_for_plan(db, page_sql, [*args, _PAGE_SIZE])
    return {
        "manuscripts": [dict(row) for row in rows],
        "pagination": {
            "page": 1,
            "limit": _PAGE_SIZE,
            "total": count,
            "totalPages": math.ceil(count / _PAGE_SIZE),
        },
    }


def _payments(call: Call, method: str, path: str) -> Response:
    """The /payments routes: cookie auth first, then Stripe needs its secret key.

    Checkout creation always fails with 500, as it does on the platform while its
    price ids are the committed placeholders (PLATFORM.md section 5). The billing
    portal session is the route that waits on Stripe.
    """
    handlers = {
        ("GET", "/payments/subscription"): _subscription,
        ("GET", "/payments/can-upload"): _can_upload,
        ("GET", "/payments/history"): _history,
        ("POST", "/payments/create-checkout-session"): _checkout,
        ("POST", "/payments/create-portal-session"): _portal,
    }
    handler = handlers.get((method, path))
    if handler is None:
        return json_response(404, {"error": "Not Found", "path": path})
    session = _auth.validate_session(call)
    if session is None:
        return json_response(401, {"error": "Unauthorized"})
    if not call.has_secret("STRIPE_SECRET_KEY"):
        raise WorkerError(_STRIPE_UNSET)
    return handler(call, session["userId"])


def _subscription_row(call: Call, user_id: str) -> dict[str, Any]:
    with call.d1() as db:
        row = db.execute(
            "SELECT * FROM user_subscriptions_with_usage WHERE user_id = ?", (user_id,)
        ).fetchone()
    if row is None:
        raise WorkerError("User does not exist")
    return dict(row)


def _subscription(call: Call, user_id: str) -> Response:
    row = _subscription_row(call, user_id)
    return json_response(
        200,
        {
            "subscription": {
                "planType": row["plan_type"] or "free",
                "status": row["subscription_status"],
                "currentPeriodStart": row["current_period_start"],
                "currentPeriodEnd": row["current_period_end"],
                "cancelAtPeriodEnd": bool(row["cancel_at_period_end"]),
                "manuscriptsThisPeriod": row["manuscripts_this_period"],
                "monthlyLimit": row["monthly_limit"],
            }
        },
    )


def _can_upload(call: Call, user_id: str) -> Response:
    row = _subscription_row(call, user_id)
    used, limit = (
        int(row["manuscripts_this_period"] or 0),
        int(row["monthly_limit"] or 1),
    )
    return json_response(
        200,
        {
            "canUpload": used < limit,
            "manuscriptsThisPeriod": used,
            "monthlyLimit": limit,
            "planType": row["plan_type"],
        },
    )


def _history(call: Call, user_id: str) -> Response:
    with call.d1() as db:
        rows = db.execute(
            "SELECT id, amount, currency, payment_type, status, description, "
            "created_at "
            "FROM payment_history WHERE user_id = ? ORDER BY created_at DESC LIMIT 50",
            (user_id,),
        ).fetchall()
    return json_response(200, {"payments": [dict(row) for row in rows]})


def _checkout(call: Call, user_id: str) -> Response:
    if call.body().get("plan") not in ("pro", "enterprise"):
        return json_response(400, {"error": "Invalid plan"})
    return json_response(500, {"error": "Failed to create checkout session"})


def _portal(call: Call, user_id: str) -> Response:
    """Open a Stripe billing-portal session for the user's newest Stripe customer.

    The Worker waits for Stripe's answer (``_timing.call_external``); a user with
    no customer id but the registration's ``default_`` placeholder gets 404.
    """
    with call.d1() as db:
        row = db.execute(
            "SELECT stripe_customer_id FROM subscriptions WHERE user_id = ? "
            "AND stripe_customer_id NOT LIKE 'default\\_%' ESCAPE '\\' "
            "ORDER BY created_at DESC LIMIT 1",
            (user_id,),
        ).fetchone()
    if row is None:
        return json_response(404, {"error": "No Stripe customer found"})
    _timing.call_external(call.world, "stripe")
    session = "bps_" + secrets.token_hex(12)
    base = call.world.environment.stripe_api_url.rstrip("/")
    return json_response(200, {"url": f"{base}/p/session/{session}"})


def _global_error(message: str) -> Response:
    """Map a thrown message to a status the way the platform's global handler does."""
    logger.debug("worker threw message=%s", message)
    if "Unauthorized" in message or "Authentication" in message:
        return json_response(401, {"error": message})
    if "Forbidden" in message or "permission" in message:
        return json_response(403, {"error": message})
    if "Not found" in message or "does not exist" in message:
        return json_response(404, {"error": message})
    if "validation" in message or "Invalid" in message:
        return json_response(400, {"error": message})
    return json_response(500, {"error": "Internal server error"})


def _cors_headers(
    request: Request, allowed_origins: tuple[str, ...] = ALLOWED_ORIGINS
) -> list[tuple[str, str]]:
    origin = request.headers.get("Origin")
    allowed = origin if origin in allowed_origins else allowed_origins[0]
    return [
        ("Access-Control-Allow-Origin", allowed),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Methods", "GET, PUT, POST, DELETE, OPTIONS"),
        (
            "Access-Control-Allow-Headers",
            "Content-Type, X-Filename, X-Author-Id, X-File-Type, Authorization",
        ),
        ("Access-Control-Max-Age", "86400"),
        ("Vary", "Origin"),
    ]


def _edge_error() -> Response:
    """What Cloudflare's edge sends when Workers itself is down."""
    ray = secrets.token_hex(8) + "-EWR"
    return Response.text(
        503,
        "error code: 1105",
        headers=[("cf-ray", ray), ("Cache-Control", "no-store")],
    )
