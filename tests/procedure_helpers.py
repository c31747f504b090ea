"""Helpers shared by the procedure tests: run a procedure into an archive, read back
its gate outcome, and the Worker's live version."""

from opslib import CloudflareClient, load_environment, run_notebook


def run(name, records_dir, **parameters):
    """Run a procedure on the sandbox; the run itself must succeed."""
    record = run_notebook(
        name, parameters=parameters, environment="sandbox", records_dir=records_dir
    )
    assert record.status == "succeeded", record.error
    return record


def result_of(record):
    """The last gate result a record holds."""
    return [a for a in record.sidecar["actions"] if a["kind"] == "result"][-1]


def live_version():
    """The version serving 100 % of the sandbox Worker's traffic."""
    client = CloudflareClient(load_environment("sandbox"))
    try:
        return client.list_deployments()[0]["versions"][0]["version_id"]
    finally:
        client.close()
