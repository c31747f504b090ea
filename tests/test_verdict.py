import pytest

from opslib import CAUSES, VERDICT_MIME, Status, Verdict


def test_verdict_refuses_a_cause_outside_the_vocabulary():
    with pytest.raises(ValueError, match="cause: got 'gremlins'"):
        Verdict("api-down", Status.FAIL, "gremlins", "?")


def test_verdict_refuses_an_unknown_runbook():
    with pytest.raises(ValueError, match="runbook: got 'nope'"):
        Verdict("nope", Status.OK, "healthy", "fine")


def test_api_down_vocabulary_ends_with_healthy_and_inconclusive():
    assert CAUSES["api-down"][-2:] == ("healthy", "inconclusive")


def test_verdict_bundle_carries_the_json_the_runner_reads():
    verdict = Verdict(
        "api-down",
        Status.FAIL,
        "bad-deployment",
        "v6 fails",
        ["probe failed"],
        "roll back",
        {"action": "rollback", "command": "runbook run ..."},
    )
    bundle = verdict._repr_mimebundle_()
    assert bundle[VERDICT_MIME]["cause"] == "bad-deployment"
    assert bundle[VERDICT_MIME]["gated_step"]["action"] == "rollback"
    assert "cause: bad-deployment" in bundle["text/plain"]
    assert "gated step: runbook run" in bundle["text/plain"]
