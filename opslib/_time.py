"""Times and durations as the runbooks and the APIs spell them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``30m``, ``6h`` or ``2d``.

    Raises:
        ValueError: when the text is not a positive whole number followed by m, h or d.
    """
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"duration: got {text!r}, expected a whole number and m, h or d (such as 6h)"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 time as the Cloudflare and Stripe APIs write it (UTC if naive)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


def describe_age(moment: datetime, now: datetime | None = None) -> str:
    """Say how long ago ``moment`` was, like ``20 min ago`` or ``3 d ago``."""
    seconds = ((now or utcnow()) - moment).total_seconds()
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"
