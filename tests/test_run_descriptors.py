"""Runs in one process (a test session, a batch worker, serve-alerts) keep the
number of open descriptors flat: each run closes its kernel client's sockets,
heartbeat thread and ZeroMQ context."""

import os
from pathlib import Path

import yaml

from opslib import run_notebook

CLOSED = "http://127.0.0.1:9"


def open_descriptors():
    return len(os.listdir("/proc/self/fd"))


def test_runs_in_one_process_leave_no_descriptors_behind(
    sandbox, tmp_path, monkeypatch
):
    # Every system unreachable: the run is short and touches no sandbox state.
    data = yaml.safe_load((Path(sandbox.environments_dir) / "sandbox.yaml").read_text())
    for key in [k for k in data if k.endswith("_url")]:
        data[key] = CLOSED + ("/client/v4" if key == "cloudflare_api_url" else "")
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "sandbox.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("RUNBOOK_ENVIRONMENTS", str(tmp_path / "environments"))

    def one_run():
        record = run_notebook(
            "api-down",
            parameters={"incident_id": "INC-90"},
            environment="sandbox",
            records_dir=tmp_path / "records",
        )
        assert record.status == "succeeded", record.error
        return open_descriptors()

    first = one_run()  # loads what a process keeps for good (its event loop)
    after = [one_run() for _ in range(3)]
    assert max(after) <= first, (first, after)
