from datetime import datetime, timedelta, timezone

import pytest

from opslib._time import describe_age, parse_duration, parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("2d", timedelta(days=2)),
    ],
)
def test_parse_duration_reads_minutes_hours_days(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "6", "h", "0h", "-1h", "1.5h", "6 hours", "6H"])
def test_parse_duration_rejects_other_forms(text):
    with pytest.raises(ValueError, match="expected a whole number and m, h or d"):
        parse_duration(text)


def test_parse_timestamp_reads_z_suffix_as_utc():
    moment = parse_timestamp("2026-12-04T16:03:11.123456Z")
    assert moment == datetime(2026, 12, 4, 16, 3, 11, 123456, tzinfo=timezone.utc)


def test_parse_timestamp_treats_naive_times_as_utc():
    assert parse_timestamp("2026-12-04T16:03:11").tzinfo == timezone.utc


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (timedelta(minutes=20), "20 min ago"),
        (timedelta(hours=5), "5.0 h ago"),
        (timedelta(days=3), "3 d ago"),
    ],
)
def test_describe_age_picks_a_readable_unit(age, text):
    now = datetime(2026, 12, 4, tzinfo=timezone.utc)
    assert describe_age(now - age, now) == text
