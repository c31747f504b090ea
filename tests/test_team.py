"""The team's parameters: the files in parameters/team/ load, their rules pick the
right level, and a broken file is refused with every problem named."""

import datetime
import shutil
from pathlib import Path

import pytest
import yaml

from opslib import ConfigError, load_team

TEAM = Path(__file__).parent.parent / "parameters" / "team"


@pytest.fixture
def team():
    return load_team(TEAM)


@pytest.fixture
def copy(tmp_path):
    """A copy of the team files to break one key at a time."""
    folder = tmp_path / "team"
    shutil.copytree(TEAM, folder)
    return folder


def edit(folder, name, change):
    path = folder / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_the_project_files_load_with_placeholders_not_people(team):
    assert [lvl.name for lvl in team.escalation] == [
        "self-service",
        "development",
        "infrastructure",
    ]
    assert team.escalation[0].contact.startswith("<")
    assert [lvl.name for lvl in team.severity] == ["SEV1", "SEV2", "SEV3", "SEV4"]


@pytest.mark.parametrize(
    ("pairs", "share", "expected"),
    [
        ([("api-down", "bad-deployment")], None, "SEV1"),
        ([("auth-broken", "kv-sessions-unavailable")], None, "SEV1"),
        ([("auth-broken", "login-rate-limited")], None, "SEV2"),
        ([("high-error-rate", "free-tier-429s")], None, "SEV3"),
        ([("queue-delays", "consumer-missing")], None, "SEV4"),
        ([("queue-delays", "consumer-missing")], 0.2, "SEV2"),
        ([("queue-delays", "consumer-missing")], 0.6, "SEV1"),
        ([("api-down", "healthy")], None, "SEV4"),
        ([("queue-delays", "x"), ("api-down", "d1-unavailable")], 0.0, "SEV1"),
    ],
)
def test_severity_is_the_first_level_a_cause_or_share_meets(
    team, pairs, share, expected
):
    assert team.severity_for(pairs, share).name == expected


@pytest.mark.parametrize(
    ("minutes", "level"),
    [
        (0, "self-service"),
        (29, "self-service"),
        (30, "development"),
        (300, "infrastructure"),
    ],
)
def test_escalation_follows_the_incident_length(team, minutes, level):
    assert team.escalation_for(minutes).name == level


def test_maintenance_window_is_sunday_two_to_four_utc(team):
    sunday = datetime.datetime(2026, 12, 6, 2, 30, tzinfo=datetime.UTC)
    assert team.window_at(sunday).name == "weekly"
    assert team.window_at(sunday.replace(hour=4)) is None
    assert team.window_at(sunday - datetime.timedelta(days=1)) is None


def test_every_problem_is_named_with_file_key_and_form(copy):
    def break_escalation(data):
        data["levels"][1]["after_min"] = "half an hour"
        data["levels"][0]["pager"] = "x"

    def break_maintenance(data):
        data["windows"][0]["start"] = "2am"
        data["windows"][0]["day"] = "someday"

    def break_severity(data):
        data["levels"][0]["affected_share"] = 5
        data["levels"][2]["causes"] = "slow-responses"

    edit(copy, "escalation.yaml", break_escalation)
    edit(copy, "maintenance.yaml", break_maintenance)
    edit(copy, "severity.yaml", break_severity)
    with pytest.raises(ConfigError) as caught:
        load_team(copy)
    message = str(caught.value)
    for expected in (
        "escalation.yaml: levels[1].after_min: got 'half an hour', expected a whole number",
        "escalation.yaml: levels[0].pager: unknown key",
        "maintenance.yaml: windows[0].start: got '2am', expected a time of day in UTC as \"HH:MM\"",
        "maintenance.yaml: windows[0].day: got 'someday', expected a day of the week",
        "severity.yaml: levels[0].affected_share: got 5, expected a share of users from 0 to 1",
        "severity.yaml: levels[2].causes: got 'slow-responses', expected a list",
    ):
        assert expected in message


def test_levels_out_of_order_are_refused(copy):
    edit(copy, "escalation.yaml", lambda d: d["levels"].reverse())
    edit(copy, "severity.yaml", lambda d: d["levels"].reverse())
    with pytest.raises(ConfigError, match="after_min: got .*expected rising") as caught:
        load_team(copy)
    assert "expected the most severe level first" in str(caught.value)


def test_a_missing_file_is_named(copy):
    (copy / "severity.yaml").unlink()
    with pytest.raises(ConfigError, match="severity.yaml: could not read"):
        load_team(copy)


def test_an_empty_list_is_refused(copy):
    (copy / "maintenance.yaml").write_text("windows: []\n")
    with pytest.raises(
        ConfigError, match="maintenance.yaml: windows: expected a non-empty"
    ):
        load_team(copy)
