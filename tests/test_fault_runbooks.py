"""Every incident runbook, under every transport fault, still reaches a verdict.

Each incident notebook runs headless through the runner against the session
sandbox with one transport fault (timeout, 429, 5xx, refused, truncated) laid
over a system it reads, for the whole run. The run must complete, end with a
verdict that names no cause (the scenario is healthy: what failed in transit is
no diagnosis) and is not ok, and show the system as the reason of an
``unknown`` finding. The
system faulted rotates through those the runbook reads, so every kind meets
every runbook once (40 runs) and every system meets several kinds.

Clients get a one-second timeout (``timeout_s`` in a copy of the sandbox's
environment) and a held request lasts three, so the timeout runs stay short.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from opslib._finding import FINDING_MIME
from opslib._notebook import collect_outputs, runbook_name
from opslib._runner import run_notebook

INCIDENTS = Path(__file__).parents[1] / "notebooks" / "incidents"
KINDS = ("timeout", "429", "5xx", "refused", "truncated")
# The outside systems each runbook reads (the platform's own answers are what
# the runbooks observe, so most of its faults are findings of their own; a
# success cut short is not, see the auth-broken test below).
SYSTEMS_READ = {
    "api-down": ("cloudflare", "status_page"),
    "auth-broken": ("cloudflare",),
    "password-reset": ("mailchannels", "cloudflare"),
    "high-error-rate": ("cloudflare",),
    "slow-responses": ("cloudflare",),
    "queue-delays": ("r2", "cloudflare"),
    "stripe-webhooks": ("stripe", "cloudflare"),
    "payment-without-subscription": ("stripe", "cloudflare"),
}
# How the client names a system in its errors, where the sandbox spells it apart.
CLIENT_NAMES = {"status_page": "statuspage"}
OPTIONS = {"timeout": {"hold_s": 3}, "429": {"retry_after": 0}}
CASES = [
    (runbook, kind, systems[index % len(systems)])
    for runbook, systems in SYSTEMS_READ.items()
    for index, kind in enumerate(KINDS)
]


@pytest.fixture(scope="module")
def short_timeouts(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session sandbox's environment whose clients wait one second."""
    folder = tmp_path_factory.mktemp("environments")
    data = yaml.safe_load((sandbox.environments_dir / "sandbox.yaml").read_text())
    (folder / "sandbox.yaml").write_text(yaml.safe_dump({**data, "timeout_s": 1}))
    return folder


@pytest.fixture()
def faulted(
    sandbox: Any, short_timeouts: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The sandbox, healthy, its clients on short timeouts; faults cleared after."""
    sandbox.reset("healthy")
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(short_timeouts))
    yield sandbox
    sandbox.clear_faults()


def test_every_incident_runbook_is_covered():
    found = {runbook_name(path) for path in INCIDENTS.glob("*.ipynb")}
    assert found == set(SYSTEMS_READ)


@pytest.mark.parametrize(("runbook", "kind", "system"), CASES)
def test_runbook_reaches_a_verdict_with_the_faulted_system_unknown(
    faulted: Any, tmp_path: Path, runbook: str, kind: str, system: str
) -> None:
    faulted.fault(system, kind, **OPTIONS.get(kind, {}))

    record = run_notebook(
        runbook,
        parameters={"incident_id": f"FAULT-{kind}"},
        environment="sandbox",
        records_dir=tmp_path,
    )

    assert faulted.transport_faults()[system]["kind"] == kind  # held the whole run
    assert record.status == "succeeded", record.error
    verdict = record.verdict or {}
    assert verdict.get("status") in ("warn", "unknown"), verdict
    # The scenario is healthy: a fault in transit must never read as a cause.
    assert verdict.get("cause") in ("healthy", "inconclusive"), verdict
    nb = nbformat.read(record.record_path, as_version=4)
    unknown = [
        str(finding.get("summary", ""))
        for finding in collect_outputs(nb, FINDING_MIME)
        if isinstance(finding, dict) and finding.get("status") == "unknown"
    ]
    name = CLIENT_NAMES.get(system, system)
    assert any(name in summary.lower() for summary in unknown), unknown


SERVER_SIDE = "failed on its side"
ACCESS = "fix access"
WAIT = "met a rate limit"
# One run per kind of fault: the advice after it must fit the fault.
ADVICE_CASES = [
    ("stripe-webhooks", "stripe", "429", {"retry_after": 7}, WAIT),
    ("payment-without-subscription", "stripe", "429", {"retry_after": 7}, WAIT),
    ("high-error-rate", "cloudflare", "5xx", {}, SERVER_SIDE),
    ("api-down", "status_page", "5xx", {}, SERVER_SIDE),
    ("queue-delays", "cloudflare", "truncated", {}, SERVER_SIDE),
    ("password-reset", "mailchannels", "refused", {}, ACCESS),
    ("slow-responses", "cloudflare", "timeout", OPTIONS["timeout"], ACCESS),
]
OTHER_ADVICE = {
    WAIT: (SERVER_SIDE, ACCESS, "credentials", "STRIPE_API_KEY"),
    SERVER_SIDE: (WAIT, ACCESS, "credentials"),
    ACCESS: (WAIT, SERVER_SIDE),
}


@pytest.mark.parametrize(
    ("runbook", "system", "kind", "options", "advice"),
    ADVICE_CASES,
    ids=[f"{case[0]}-{case[2]}" for case in ADVICE_CASES],
)
def test_the_advice_after_a_fault_fits_its_kind(
    faulted: Any,
    tmp_path: Path,
    runbook: str,
    system: str,
    kind: str,
    options: dict[str, Any],
    advice: str,
) -> None:
    faulted.fault(system, kind, **options)

    record = run_notebook(
        runbook,
        parameters={"incident_id": f"ADVICE-{kind}"},
        environment="sandbox",
        records_dir=tmp_path,
    )

    assert record.status == "succeeded", record.error
    next_action = str((record.verdict or {}).get("next_action", ""))
    assert advice in next_action.lower(), next_action
    for other in OTHER_ADVICE[advice]:
        assert other.lower() not in next_action.lower(), next_action
    if options.get("retry_after"):
        nb = nbformat.read(record.record_path, as_version=4)
        summaries = [
            str(finding.get("summary", ""))
            for finding in collect_outputs(nb, FINDING_MIME)
            if isinstance(finding, dict) and finding.get("status") == "unknown"
        ]
        asked = f"Retry-After asks to wait {options['retry_after']} s"
        assert any(asked in summary for summary in summaries), summaries


def test_a_login_answer_cut_short_leaves_auth_broken_unknown(
    faulted: Any, tmp_path: Path
) -> None:
    faulted.fault("platform", "truncated")

    record = run_notebook(
        "auth-broken",
        parameters={"incident_id": "FAULT-cut-login"},
        environment="sandbox",
        records_dir=tmp_path,
    )

    assert record.status == "succeeded", record.error
    verdict = record.verdict or {}
    assert (verdict.get("status"), verdict.get("cause")) == ("unknown", "inconclusive")
    next_action = str(verdict.get("next_action", "")).lower()
    assert SERVER_SIDE in next_action and ACCESS not in next_action, next_action
    nb = nbformat.read(record.record_path, as_version=4)
    login = [
        finding
        for finding in collect_outputs(nb, FINDING_MIME)
        if isinstance(finding, dict) and finding.get("name") == "login"
    ]
    assert [f.get("status") for f in login] == ["unknown"], login
    assert "platform" in str(login[0].get("summary", "")), login
