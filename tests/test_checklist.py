"""Checklist pieces without a sandbox: the verdict over findings (manual items
listed, never counted), the status table, and the judgement of each new check on
rows made up to sit on either side of its thresholds."""

import pytest

from opslib import (
    CHECKLISTS,
    Finding,
    Status,
    check_maintenance,
    checklist_table,
    conclude_checklist,
    load_team,
    manual_item,
)
from opslib._checkitems import (
    _judge_d1_size,
    _judge_registrations,
    error_share_status,
)
from opslib._team import MaintenanceWindow, Team


def ok(name):
    return Finding(name, Status.OK, "fine")


def daily(**statuses):
    """Every daily item ok or manual as usual, with some statuses replaced."""
    names = {
        "probe": Status.OK,
        "cloudflare-status": Status.OK,
        "error-rate": Status.OK,
    }
    names |= {
        "backup-log": Status.OK,
        "sentry": Status.MANUAL,
        "email-alerts": Status.MANUAL,
    }
    names |= {k.replace("_", "-"): v for k, v in statuses.items()}
    return [
        Finding(name, status, f"{name} is {status}") for name, status in names.items()
    ]


def test_manual_items_are_listed_but_leave_the_verdict_ok():
    verdict = conclude_checklist("daily", daily())
    assert (verdict.status, verdict.cause) == (Status.OK, "healthy")
    assert "2 manual item(s)" in verdict.summary
    assert any("[MANUAL] sentry" in line for line in verdict.evidence)
    assert "sentry, email-alerts" in verdict.next_action


@pytest.mark.parametrize(
    ("statuses", "status", "cause"),
    [
        (
            {"probe": Status.FAIL, "backup_log": Status.WARN},
            Status.FAIL,
            "items-failing",
        ),
        (
            {"error_rate": Status.UNKNOWN, "backup_log": Status.WARN},
            Status.UNKNOWN,
            "items-unknown",
        ),
        ({"backup_log": Status.WARN}, Status.WARN, "items-warning"),
    ],
)
def test_the_worst_checked_status_names_the_cause(statuses, status, cause):
    verdict = conclude_checklist("daily", daily(**statuses))
    assert (verdict.status, verdict.cause) == (status, cause)
    assert verdict.runbook == "checklist-daily"


def test_an_item_left_out_makes_the_checklist_inconclusive():
    findings = [f for f in daily() if f.name != "backup-log"]
    verdict = conclude_checklist("daily", findings)
    assert (verdict.status, verdict.cause) == (Status.UNKNOWN, "inconclusive")
    assert "not run: backup-log" in verdict.summary


def test_the_table_puts_each_finding_under_its_runbook_line():
    table = checklist_table("daily", daily(backup_log=Status.FAIL))
    rows = table.set_index("check")
    assert rows.loc["probe", "item"] == "Check UptimeRobot - all green?"
    assert rows.loc["backup-log", "item"] == "Review email alerts - any warnings?"
    assert rows.loc["backup-log", "status"] == "fail"
    assert rows.loc["sentry", "status"] == "manual"


def test_every_runbook_line_is_in_the_checklists():
    lines = {item.line for items in CHECKLISTS.values() for item in items}
    assert "Backup verification - test restore" in lines
    assert sum(not line.startswith("(not in") for line in lines) == 14


def test_an_unknown_checklist_is_refused():
    with pytest.raises(ValueError, match="checklist: got 'hourly', expected one of"):
        conclude_checklist("hourly", [])


def test_manual_item_carries_status_manual():
    item = manual_item("costs", "read the bills")
    assert (
        item.status is Status.MANUAL and str(item) == "[MANUAL] costs: read the bills"
    )


@pytest.mark.parametrize(
    ("size", "status"),
    [(10**6, Status.OK), (410 * 10**6, Status.WARN), (500 * 10**6, Status.FAIL)],
)
def test_d1_size_thresholds_of_the_monitoring_guide(size, status):
    assert _judge_d1_size("db", size, 13).status is status


@pytest.mark.parametrize(
    ("weeks", "busiest", "status", "text"),
    [
        (
            [(0, 12), (1, 8), (2, 9)],
            {"day": "2026-12-01", "n": 4},
            Status.OK,
            "12 registrations",
        ),
        ([(1, 8)], None, Status.WARN, "0 registrations"),
        ([(0, 400)], {"day": "2026-12-01", "n": 350}, Status.WARN, "over 100 a day"),
    ],
)
def test_registrations_warn_on_none_or_a_spam_day(weeks, busiest, status, text):
    rows = [{"weeks_ago": w, "registrations": n} for w, n in weeks]
    finding = _judge_registrations(rows, busiest)
    assert finding.status is status
    assert text in finding.summary


def test_backups_inside_the_sunday_window_are_a_manual_item():
    finding = check_maintenance(load_team())
    assert finding.status is Status.MANUAL
    assert "02:00, 03:00 UTC run inside weekly" in finding.summary


def test_a_window_clear_of_the_backups_passes():
    team = load_team()
    window = MaintenanceWindow("late", "sunday", "05:00", "07:00", 48, 24, "patches")
    finding = check_maintenance(Team(team.escalation, (window,), team.severity))
    assert finding.status is Status.OK


@pytest.mark.parametrize(
    ("rate", "status"),
    [
        (0.0, Status.OK),
        (0.0099, Status.OK),
        (0.01, Status.WARN),
        (0.049, Status.WARN),
        (0.05, Status.FAIL),
        (1.0, Status.FAIL),
    ],
)
def test_error_share_bands_follow_the_monitoring_guide(rate, status):
    assert error_share_status(rate) is status
