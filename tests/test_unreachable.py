"""Every incident runbook against an environment whose systems are all unreachable:
an unknown verdict that says what could not be reached, claiming no failure."""

import re
from pathlib import Path

import pytest
import yaml

from opslib import run_notebook

CLOSED = "http://127.0.0.1:9"
RUNBOOKS = [
    "api-down",
    "auth-broken",
    "password-reset",
    "high-error-rate",
    "slow-responses",
    "queue-delays",
    "stripe-webhooks",
    "payment-without-subscription",
]
# Summaries that would report a failure the run never saw.
CLAIMS = re.compile(r"\b(fail|fails|refuse|refuses|slow|pending)\b", re.IGNORECASE)


@pytest.fixture()
def nowhere(sandbox, tmp_path, monkeypatch):
    source = Path(sandbox.environments_dir) / "sandbox.yaml"
    data = yaml.safe_load(source.read_text())
    for key in list(data):
        if key.endswith("_url"):
            data[key] = CLOSED + ("/client/v4" if key == "cloudflare_api_url" else "")
    folder = tmp_path / "environments"
    folder.mkdir()
    (folder / "sandbox.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(folder))
    return tmp_path


@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_unreachable_systems_give_unknown_and_ask_for_access(nowhere, runbook):
    record = run_notebook(
        runbook,
        parameters={"incident_id": "INC-77"},
        environment="sandbox",
        records_dir=nowhere / "records",
    )
    assert record.status == "succeeded", record.error
    verdict = record.verdict
    assert verdict["status"] == "unknown", verdict["summary"]
    claim = verdict["summary"].split(" (")[0]
    assert not CLAIMS.search(claim), verdict["summary"]
    assert re.search(r"access|reachable", verdict["next_action"]), verdict[
        "next_action"
    ]


def test_unanswered_latency_probes_name_the_error(nowhere):
    record = run_notebook(
        "slow-responses",
        parameters={"incident_id": "INC-78"},
        environment="sandbox",
        records_dir=nowhere / "records",
    )
    latency = next(f for f in record.verdict["findings"] if f["name"] == "latency")
    assert latency["summary"].startswith("no probe was answered by " + CLOSED)
    assert len(latency["summary"]) > len("no probe was answered by " + CLOSED) + 5
