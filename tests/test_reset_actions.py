"""The gated manual password reset: dry run, refusal, application, stale plans."""

import dataclasses
import json

import pytest

from opslib import (
    CloudflareClient,
    Status,
    apply_action,
    check_email_vars,
    check_reset_tokens,
    diagnose_password_reset,
    load_environment,
    plan_password_reset,
)
from opslib._beforeimage import REDACTED, load_before_image
from opslib._resetaction import (
    hash_password,
    is_platform_hash,
    is_strong,
    matches_password,
)

NEW_PASSWORD = "Runbook!New-Pass42"
AUTHOR = "author0003@example.com"


def stored_hash(environment, user_id):
    client = CloudflareClient(environment)
    try:
        rows = client.d1_query(
            "SELECT password_hash FROM users WHERE id = ?", [user_id]
        )[0]["results"]
    finally:
        client.close()
    return rows[0]["password_hash"]


def make_plan(sandbox, email):
    sandbox.reset("email-vars-missing")
    environment = load_environment("sandbox")
    findings = [check_email_vars(environment), check_reset_tokens(environment, email)]
    verdict = diagnose_password_reset(
        findings, environment=environment, user_email=email, incident_id="INC-5"
    )
    return environment, plan_password_reset(environment, verdict)


@pytest.fixture()
def author_plan(sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("RUNBOOK_NEW_PASSWORD", NEW_PASSWORD)
    monkeypatch.setenv("RUNBOOK_RECORDS", str(tmp_path))
    return make_plan(sandbox, AUTHOR)


def old_hash(plan):
    return plan.private["image"]["password_hash"]


def test_hash_has_the_platform_format_and_verifies():
    stored = hash_password(NEW_PASSWORD, salt=bytes(16))
    assert is_platform_hash(stored) and stored.startswith("00" * 16)
    assert matches_password(NEW_PASSWORD, stored)
    assert not matches_password("other", stored)
    assert not matches_password(NEW_PASSWORD, "$2a$12$placeholder")


@pytest.mark.parametrize(
    "weak", ["short1!", "alllowercase1!", "NoDigits!!", "NoSpecial12"]
)
def test_policy_refuses_weak_passwords(weak):
    assert not is_strong(weak)


def test_plan_keeps_the_before_image_and_names_the_user(author_plan):
    environment, plan = author_plan
    assert plan.action == "set-password-hash"
    assert old_hash(plan) == stored_hash(environment, plan.target)
    assert plan.confirm_phrase == f"set password of user {plan.target} in sandbox"


def test_record_form_of_the_plan_holds_no_hash(author_plan):
    _, plan = author_plan
    hashed = old_hash(plan)
    assert is_platform_hash(hashed)
    recorded = json.dumps(plan.to_dict()) + str(plan)
    assert hashed not in recorded and hashed[:12] not in recorded
    assert plan.before["password_hash"] == REDACTED
    assert plan.before["digest"] in plan.undo


def test_dry_run_changes_nothing(author_plan):
    environment, plan = author_plan
    result = apply_action(plan, environment=environment, confirm=plan.confirm_phrase)
    assert result.outcome == "dry-run"
    assert stored_hash(environment, plan.target) == old_hash(plan)


@pytest.mark.parametrize("phrase", ["", "yes", "set password of user in sandbox"])
def test_wrong_phrase_is_refused(author_plan, phrase):
    environment, plan = author_plan
    result = apply_action(plan, environment=environment, apply=True, confirm=phrase)
    assert result.outcome == "refused"
    assert stored_hash(environment, plan.target) == old_hash(plan)


def test_applied_reset_writes_a_verifiable_hash(author_plan, tmp_path):
    environment, plan = author_plan
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied", result.detail
    written = stored_hash(environment, plan.target)
    assert written != old_hash(plan)
    assert matches_password(NEW_PASSWORD, written)
    assert result.after.status is Status.OK
    assert old_hash(plan) not in json.dumps(result.to_dict())
    assert NEW_PASSWORD not in str(result.to_dict())
    saved = load_before_image(plan.before["digest"], folder=tmp_path / "before-images")
    assert saved["password_hash"] == old_hash(plan)


def test_plan_without_its_private_image_is_refused(author_plan):
    environment, plan = author_plan
    bare = dataclasses.replace(plan, private={})
    result = apply_action(
        bare, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "refused"
    assert stored_hash(environment, plan.target) == old_hash(plan)


def test_stale_plan_is_refused(author_plan):
    environment, plan = author_plan
    apply_action(plan, environment=environment, apply=True, confirm=plan.confirm_phrase)
    again = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert again.outcome == "refused"
    assert "stale" in again.detail


def test_test_account_is_verified_by_logging_in(sandbox, monkeypatch):
    monkeypatch.setenv("RUNBOOK_NEW_PASSWORD", NEW_PASSWORD)
    environment, plan = make_plan(sandbox, "prodtest1@example.com")
    result = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert result.outcome == "applied"
    assert "login with the new password answers 200" in result.after.summary


def test_missing_or_weak_password_is_refused(sandbox, monkeypatch):
    monkeypatch.delenv("RUNBOOK_NEW_PASSWORD", raising=False)
    environment, plan = make_plan(sandbox, AUTHOR)
    missing = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    monkeypatch.setenv("RUNBOOK_NEW_PASSWORD", "weak")
    weak = apply_action(
        plan, environment=environment, apply=True, confirm=plan.confirm_phrase
    )
    assert missing.outcome == weak.outcome == "refused"
    assert "RUNBOOK_NEW_PASSWORD" in missing.detail and "policy" in weak.detail
    assert stored_hash(environment, plan.target) == old_hash(plan)


def test_healthy_verdict_plans_no_action(sandbox):
    sandbox.reset("healthy")
    environment = load_environment("sandbox")
    verdict = diagnose_password_reset([], environment=environment)
    plan = plan_password_reset(environment, verdict)
    assert plan.is_noop
