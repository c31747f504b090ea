"""Checks and verdict for the "API completely down" runbook.

The platform has no health route; an anonymous ``GET /manuscripts`` answering 401
is the health check. The causes the runbook can name, in the order they are
weighed: a Cloudflare outage, D1 unavailable, a broken SESSIONS KV binding (every
route fails before routing), a missing Worker secret, a bad deployment, healthy,
inconclusive. A rollback never touches D1, KV or secrets, so it is only offered for
a bad deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ._cloudflare import CloudflareClient
from ._command import INCIDENT_PLACEHOLDER, runbook_command
from ._config import Environment
from ._errors import APIError
from ._finding import Finding, Status, check
from ._platform import PlatformClient
from ._statuspage import StatusPageClient, product_components
from ._time import describe_age, parse_duration, parse_timestamp, utcnow
from ._unreached import access_advice, blind_advice
from ._verdict import Verdict

logger = logging.getLogger(__name__)

_MakeVerdict = Callable[..., Verdict]

RUNBOOK = "api-down"
DEFAULT_PATHS = ("/", "/manuscripts")
# Products whose outage takes the API down with them.
CRITICAL_PRODUCTS = ("workers", "workers kv", "d1")
_BAD_COMPONENT = {
    "major_outage": Status.FAIL,
    "partial_outage": Status.FAIL,
    "degraded_performance": Status.WARN,
}
# Tables whose row counts are shown; the real schema has user_id, not author_id.
D1_ERROR_CODE = 7500
COUNTED_TABLES = ("users", "manuscripts", "subscriptions", "payment_history")


@check("probe")
def probe_api(
    environment: Environment, paths: Sequence[str] = DEFAULT_PATHS
) -> Finding:
    """Request each path anonymously; /manuscripts must answer 401, nothing 5xx."""
    client = PlatformClient(environment)
    try:
        probes = [client.probe(path) for path in paths]
    finally:
        client.close()

    rows = [
        {
            "path": p.path,
            "status": p.status_code,
            "expected": p.expected or "< 500",
            "latency_ms": round(p.elapsed_ms),
            "ok": p.is_ok,
        }
        for p in probes
    ]
    bad = [p for p in probes if not p.is_ok]
    facts = {
        "failed": [p.path for p in bad],
        "server_errors": sum(p.is_server_error for p in probes),
        "unanswered": sum(p.status_code is None for p in probes),
        "total": len(probes),
    }
    if not bad:
        return Finding(
            "probe",
            Status.OK,
            f"all {len(probes)} paths answer as expected",
            rows,
            facts,
        )
    if facts["unanswered"] == len(probes):
        return Finding(
            "probe",
            Status.UNKNOWN,
            f"no answer from {environment.platform_url}: {bad[0].body}",
            rows,
            facts,
        )
    summary = f"{len(bad)} of {len(probes)} paths answer wrongly: " + ", ".join(
        f"{p.path} -> {p.status_code}" for p in bad
    )
    return Finding("probe", Status.FAIL, summary, rows, facts)


@check("deployments")
def check_deployments(
    environment: Environment, lookback: str = "6h", *, now: datetime | None = None
) -> Finding:
    """List the Worker's deployments and versions against the incident window."""
    now = now or utcnow()
    window_start = now - parse_duration(lookback)
    deployments, numbers = read_deployments(environment)
    if not deployments:
        return Finding(
            "deployments", Status.UNKNOWN, "the Worker has no deployments listed"
        )

    rows = [_deployment_row(d, numbers, now) for d in deployments[:8]]
    live = deployments[0]
    live_at = parse_timestamp(live["created_on"])
    previous = _last_good(deployments)
    facts = {
        "live_version": _single_version(live) or _versions_text(live),
        "live_number": numbers.get(_single_version(live) or ""),
        "live_deployed_at": live["created_on"],
        "live_triggered_by": (live.get("annotations") or {}).get(
            "workers/triggered_by"
        ),
        "is_recent": live_at >= window_start,
        "previous_version": _single_version(previous) if previous else None,
        "previous_number": numbers.get(_single_version(previous) or "")
        if previous
        else None,
        "lookback": lookback,
    }
    if not facts["is_recent"]:
        return Finding(
            "deployments",
            Status.OK,
            f"no deployment in the last {lookback}; live "
            f"since {describe_age(live_at, now)}",
            rows,
            facts,
        )
    summary = (
        f"deployed {describe_age(live_at, now)} (inside the last {lookback}): "
        f"version {facts['live_number']} {facts['live_version']}, "
        f"triggered by {facts['live_triggered_by'] or 'unknown'}"
    )
    return Finding("deployments", Status.WARN, summary, rows, facts)


def read_deployments(
    environment: Environment,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Worker's deployments (live first) and each recent version's number."""
    client = CloudflareClient(environment)
    try:
        deployments = client.list_deployments()
        numbers = {v["id"]: v.get("number") for v in client.list_versions(limit=50)}
    finally:
        client.close()
    return deployments, numbers


@check("d1")
def check_d1(environment: Environment) -> Finding:
    """Run ``SELECT 1``, list the tables and count rows of the core tables on D1."""
    client = CloudflareClient(environment)
    try:
        client.d1_query("SELECT 1 AS ok")
        tables = client.d1_query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
            "'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%' ORDER BY name"
        )[0]["results"]
        names = {row["name"] for row in tables}
        counted = [t for t in COUNTED_TABLES if t in names]
        counts = client.d1_query(
            " UNION ALL ".join(
                f"SELECT '{t}' AS table_name, COUNT(*) AS row_count FROM {t}"
                for t in counted
            )
        )[0]["results"]
    except APIError as error:
        if not is_d1_failure(error):
            raise  # the Cloudflare API itself failed: unknown, not a D1 verdict
        facts = {"available": False, "error": str(error), "codes": list(error.codes)}
        return Finding(
            "d1",
            Status.FAIL,
            f"D1 {environment.d1_database_name} fails: {error}",
            facts=facts,
        )
    finally:
        client.close()

    missing = [t for t in COUNTED_TABLES if t not in names]
    facts = {"available": True, "tables": len(names), "missing_tables": missing}
    status = Status.WARN if missing else Status.OK
    summary = f"SELECT 1 answers; {len(names)} tables"
    summary += f"; missing: {', '.join(missing)}" if missing else ""
    return Finding("d1", status, summary, counts, facts)


def is_d1_failure(error: APIError) -> bool:
    """True when the error comes from D1 itself, not from the API in front of it.

    D1 reports query and database faults with code 7500 (SQLITE_* or D1_ERROR
    messages); any other error of the Cloudflare API says nothing about D1.
    """
    return D1_ERROR_CODE in error.codes or "D1_ERROR" in str(error)


@check("secrets")
def check_secrets(environment: Environment) -> Finding:
    """Compare the live Worker's secret names with the ones the platform needs."""
    client = CloudflareClient(environment)
    try:
        present = {s.get("name") for s in client.list_secrets()}
    finally:
        client.close()
    rows = [
        {"secret": name, "present": name in present}
        for name in environment.required_secrets
    ]
    missing = [name for name in environment.required_secrets if name not in present]
    facts = {"missing": missing, "present": sorted(n for n in present if n)}
    if missing:
        return Finding(
            "secrets",
            Status.FAIL,
            f"missing Worker secrets: {', '.join(missing)}",
            rows,
            facts,
        )
    return Finding(
        "secrets", Status.OK, f"all {len(rows)} required secrets are set", rows, facts
    )


@check("kv-binding")
def check_kv_binding(environment: Environment, binding: str = "SESSIONS") -> Finding:
    """Check the live Worker binds SESSIONS to a KV namespace that exists."""
    client = CloudflareClient(environment)
    try:
        bindings = client.get_settings().get("bindings") or []
        namespaces = {n.get("id"): n.get("title") for n in client.list_kv_namespaces()}
    finally:
        client.close()

    bound = next((b for b in bindings if b.get("name") == binding), None)
    namespace_id = (bound or {}).get("namespace_id")
    rows = [
        {
            "binding": b.get("name"),
            "type": b.get("type"),
            "namespace_id": b.get("namespace_id"),
            "exists": b.get("namespace_id") in namespaces,
        }
        for b in bindings
        if b.get("type") == "kv_namespace"
    ]
    facts = {
        "binding": binding,
        "namespace_id": namespace_id,
        "expected_id": environment.kv_namespaces.get(binding),
    }
    if bound is None or bound.get("type") != "kv_namespace":
        return Finding(
            "kv-binding",
            Status.FAIL,
            f"the live Worker has no {binding} KV binding",
            rows,
            facts,
        )
    if namespace_id not in namespaces:
        return Finding(
            "kv-binding",
            Status.FAIL,
            f"{binding} is bound to namespace "
            f"{namespace_id}, which does not exist in the account",
            rows,
            facts,
        )
    if namespace_id != facts["expected_id"]:
        return Finding(
            "kv-binding",
            Status.WARN,
            f"{binding} is bound to {namespace_id}, not "
            f"the {facts['expected_id']} this environment names",
            rows,
            facts,
        )
    return Finding(
        "kv-binding",
        Status.OK,
        f"{binding} is bound to an existing namespace",
        rows,
        facts,
    )


@check("cloudflare-status")
def check_cloudflare_status(environment: Environment) -> Finding:
    """Judge Workers, KV and D1 by their status-page components and open incidents."""
    client = StatusPageClient(environment)
    try:
        summary = client.summary()
    finally:
        client.close()

    products = [
        c
        for c in product_components(summary)
        if c.get("name", "").lower() in CRITICAL_PRODUCTS
    ]
    incidents = [
        i for i in summary.get("incidents") or [] if _names_critical_product(i)
    ]
    rows = [{"component": c.get("name"), "status": c.get("status")} for c in products]
    rows += [
        {"component": f"incident: {i.get('name')}", "status": i.get("impact")}
        for i in incidents
    ]
    worst = max(
        (_BAD_COMPONENT.get(c.get("status", ""), Status.OK) for c in products),
        key=_severity,
        default=Status.OK,
    )
    if any(i.get("impact") in ("major", "critical") for i in incidents):
        worst = Status.FAIL
    indicator = (summary.get("status") or {}).get("indicator")
    facts = {
        "page_indicator": indicator,
        "incidents": [i.get("name") for i in incidents],
    }
    if worst is Status.OK:
        text = f"Workers, KV and D1 operational (page indicator {indicator!r} reflects other components)"
        return Finding("cloudflare-status", Status.OK, text, rows, facts)
    troubled = [
        f"{r['component']} {r['status']}" for r in rows if r["status"] != "operational"
    ]
    return Finding(
        "cloudflare-status",
        worst,
        "Cloudflare reports: " + "; ".join(troubled),
        rows,
        facts,
    )


def diagnose_api_down(
    findings: Iterable[Finding],
    *,
    environment: Environment,
    incident_id: str = "",
    lookback: str = "6h",
) -> Verdict:
    """Work out the cause of an API outage from the runbook's findings.

    Causes are weighed in order: a Cloudflare outage (only while the API fails),
    D1 failing, a broken SESSIONS binding, a recent code deployment while the API
    fails, a missing secret, then healthy or inconclusive. A missing secret that
    came with a code deployment does not hide that deployment.

    Args:
        findings: the findings of the steps (any order; missing ones count as unknown).
        environment: the environment diagnosed, named in the gated step.
        incident_id: the incident, repeated in the gated step's command.
        lookback: the window used, repeated in the gated step's command.

    Returns:
        The verdict, with a gated rollback only for a bad deployment.
    """
    found = {f.name: f for f in findings}
    status = {name: found[name].status for name in found}.get
    probe = status("probe", Status.UNKNOWN)
    deploy = found["deployments"].facts if "deployments" in found else {}
    evidence = [str(f) for f in found.values() if f.status is not Status.OK]
    make = _verdict_maker(list(found.values()), evidence)

    if status("cloudflare-status") is Status.FAIL and probe is not Status.OK:
        return make(Status.FAIL, "cloudflare-outage", *_OUTAGE)
    if status("d1") is Status.FAIL:
        return make(Status.FAIL, "d1-unavailable", *_d1_texts(environment))
    if status("kv-binding") is Status.FAIL:
        return make(Status.FAIL, "kv-binding", *_KV_BINDING)
    if probe is Status.FAIL and _is_code_change(deploy):
        return _bad_deployment(make, deploy, environment, incident_id, lookback)
    if status("secrets") is Status.FAIL:
        missing = found["secrets"].facts.get("missing", [])
        level = Status.FAIL if probe is Status.FAIL else Status.WARN
        return make(
            level, "missing-secret", *_secret_texts(environment, missing, probe)
        )
    if probe is Status.OK:
        blind = [f for f in found.values() if f.status is Status.UNKNOWN]
        return _healthy(make, blind, status("cloudflare-status") is Status.FAIL)
    return _inconclusive(make, probe, found, environment)


_OUTAGE = (
    "Cloudflare reports an outage of a product the API runs on, and the API fails.",
    "Do not roll back or redeploy: follow the incident on cloudflarestatus.com, "
    "post on the platform's status page, and re-run this runbook when it resolves.",
)
_KV_BINDING = (
    "The SESSIONS KV binding is broken, so every Worker route fails before routing.",
    "Point the SESSIONS binding at an existing namespace in wrangler.toml "
    "(create one with `wrangler kv namespace create SESSIONS` if it was deleted; "
    "sessions in it are lost and users must log in again) and deploy.",
)


def _d1_texts(environment: Environment) -> tuple[str, str]:
    return (
        f"D1 database {environment.d1_database_name} fails queries (D1 error 7500).",
        "A rollback does not touch D1. Check D1 on the Cloudflare dashboard; if the "
        "error persists open a Cloudflare support case with the request ids. Only if "
        "data is damaged, follow the restore procedure.",
    )


def _secret_texts(
    environment: Environment, missing: Sequence[str], probe: Status
) -> tuple[str, str]:
    names = ", ".join(missing)
    summary = f"The live Worker lacks required secrets: {names}."
    if probe is not Status.FAIL:
        summary += " The probed paths still answer; routes that use them fail."
    return (
        summary,
        f"Set each with `wrangler secret put NAME --name {environment.worker_name}` "
        "using the value from the secret store (a secret edit is itself a deployment).",
    )


def _is_code_change(deploy: Mapping[str, Any]) -> bool:
    """A deployment inside the window that changed code, not only secrets."""
    return bool(deploy.get("is_recent")) and deploy.get("live_triggered_by") != "secret"


def _healthy(make: _MakeVerdict, blind: Sequence[Finding], incident: bool) -> Verdict:
    if blind:
        names = ", ".join(f.name for f in blind)
        return make(
            Status.WARN,
            "healthy",
            f"The probed paths answer as expected, but {names} could not be checked.",
            "Before closing the incident: " + access_advice(blind),
        )
    summary = "The API answers as expected."
    if incident:
        summary += " Cloudflare reports an incident, which has not reached the API."
    return make(
        Status.WARN if incident else Status.OK,
        "healthy",
        summary,
        "No repair needed; if users still report errors, check the failing route.",
    )


def _inconclusive(
    make: _MakeVerdict,
    probe: Status,
    found: Mapping[str, Finding],
    environment: Environment,
) -> Verdict:
    unknowns = [name for name, f in found.items() if f.status is Status.UNKNOWN]
    if probe is Status.UNKNOWN:
        return make(
            Status.UNKNOWN,
            "inconclusive",
            f"No answer from {environment.platform_url}; the cause cannot be judged.",
            f"Check that {environment.platform_url} is reachable from here (DNS, VPN, "
            "firewall; for the sandbox: `runbook sandbox start`), then re-run.",
        )
    blind = f" Could not check: {', '.join(unknowns)}." if unknowns else ""
    return make(
        Status.FAIL,
        "inconclusive",
        "The API fails but no checked cause explains it." + blind,
        "Watch live errors with `wrangler tail --format pretty`, "
        + (
            ""
            if "deployments" in unknowns
            else "widen lookback if a deployment is older than the window, "
        )
        + "and check per-route error rates."
        + blind_advice(found.values()),
    )


def _bad_deployment(
    make: _MakeVerdict,
    facts: Mapping[str, Any],
    environment: Environment,
    incident_id: str,
    lookback: str,
) -> Verdict:
    bad, good = facts.get("live_version"), facts.get("previous_version")
    summary = (
        f"Version {facts.get('live_number')} ({bad}), deployed {facts.get('live_deployed_at')}, "
        f"fails; the last good version is {facts.get('previous_number')} ({good})."
    )
    if not good:
        return make(
            Status.FAIL,
            "bad-deployment",
            summary,
            "No earlier version at 100 % to roll back to: redeploy a known-good commit.",
        )
    step = rollback_step(
        environment,
        str(bad),
        good,
        runbook=RUNBOOK,
        parameters={
            "incident_id": incident_id or INCIDENT_PLACEHOLDER,
            "lookback": lookback,
        },
    )
    return make(
        Status.FAIL,
        "bad-deployment",
        summary,
        f"Roll back {environment.worker_name} to version {facts.get('previous_number')} "
        f"({good}).",
        step,
    )


def rollback_step(
    environment: Environment,
    bad: str,
    good: str,
    *,
    runbook: str,
    parameters: Mapping[str, str],
) -> dict[str, Any]:
    """The gated rollback a verdict offers, in the shape ``plan_rollback`` reads.

    Args:
        environment: where the Worker runs.
        bad: the version live now.
        good: the version to restore.
        runbook: the runbook whose command applies it.
        parameters: the diagnosis parameters the command repeats.
    """
    phrase = rollback_phrase(environment, good)
    command = runbook_command(runbook, environment.name, parameters, confirm=phrase)
    return {
        "action": "rollback",
        "worker": environment.worker_name,
        "environment": environment.name,
        "from_version": bad,
        "to_version": good,
        "confirm": phrase,
        "command": command,
    }


def rollback_phrase(environment: Environment, version_id: str) -> str:
    """The confirm phrase that authorises a rollback: worker, version, environment."""
    return f"rollback {environment.worker_name} to {version_id} in {environment.name}"


def _verdict_maker(findings: list[Finding], evidence: list[str]) -> _MakeVerdict:
    def make(
        status: Status,
        cause: str,
        summary: str,
        next_action: str,
        gated_step: Mapping[str, Any] | None = None,
    ) -> Verdict:
        return Verdict(
            RUNBOOK, status, cause, summary, evidence, next_action, gated_step, findings
        )

    return make


def _deployment_row(
    deployment: Mapping[str, Any], numbers: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    annotations = deployment.get("annotations") or {}
    return {
        "deployed": describe_age(parse_timestamp(deployment["created_on"]), now),
        "versions": ", ".join(
            f"#{numbers.get(v['version_id'], '?')} {v['version_id'][:8]} "
            f"{v['percentage']:g}%"
            for v in deployment.get("versions", [])
        ),
        "triggered_by": annotations.get("workers/triggered_by", ""),
        "message": str(annotations.get("workers/message", ""))[:60],
        "author": deployment.get("author_email", ""),
    }


def _single_version(deployment: Mapping[str, Any] | None) -> str | None:
    versions = (deployment or {}).get("versions") or []
    full = [v for v in versions if v.get("percentage") == 100]
    return full[0]["version_id"] if full else None


def _versions_text(deployment: Mapping[str, Any]) -> str:
    return ", ".join(v["version_id"] for v in deployment.get("versions", []))


def _last_good(deployments: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest earlier deployment with one version at 100 %, as wrangler picks it."""
    live = _single_version(deployments[0])
    for deployment in deployments[1:]:
        version = _single_version(deployment)
        if version and version != live:
            return deployment
    return None


def _names_critical_product(incident: Mapping[str, Any]) -> bool:
    names = [str(c.get("name", "")).lower() for c in incident.get("components") or []]
    for update in incident.get("incident_updates") or []:
        names += [
            str(c.get("name", "")).lower()
            for c in update.get("affected_components") or []
        ]
    return any(n.split(" - ")[-1] in CRITICAL_PRODUCTS for n in names)


def _severity(status: Status) -> int:
    return [Status.OK, Status.WARN, Status.FAIL].index(status)
