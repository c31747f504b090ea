import pytest

from opslib import APIError, Finding, Status, UnreachableError, check
from opslib._finding import FINDING_MIME


@check("demo")
def _raises(error):
    raise error


def test_check_turns_unreachable_system_into_unknown_finding():
    finding = _raises(
        UnreachableError("cloudflare: cannot reach x", system="cloudflare")
    )
    assert finding.status is Status.UNKNOWN
    assert finding.name == "demo"
    assert "cannot reach x" in finding.summary
    assert finding.facts["error"] == "UnreachableError"


def test_check_turns_api_error_into_unknown_finding():
    finding = _raises(
        APIError("cloudflare: HTTP 403", system="cloudflare", status_code=403)
    )
    assert finding.status is Status.UNKNOWN


def test_check_lets_bugs_raise():
    with pytest.raises(KeyError):
        _raises(KeyError("a bug in the check"))


def test_check_records_elapsed_time():
    @check("timed")
    def quick():
        return Finding("timed", Status.OK, "fine")

    assert quick().elapsed_s >= 0.0


def test_finding_bundle_carries_json_and_an_evidence_table():
    rows = [{"path": "/", "status": 200}] * 15
    bundle = Finding("probe", Status.FAIL, "bad", rows)._repr_mimebundle_()
    assert bundle[FINDING_MIME]["status"] == "fail"
    assert len(bundle[FINDING_MIME]["evidence"]) == 10
    assert "<table" in bundle["text/html"]
    assert bundle["text/plain"].startswith("[FAIL] probe: bad")


def test_finding_html_escapes_what_systems_said():
    bundle = Finding("probe", Status.FAIL, "<script>x</script>")._repr_mimebundle_()
    assert "<script>" not in bundle["text/html"]
