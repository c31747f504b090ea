"""Switching logging on for a runbook; the library itself never adds handlers."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def enable_logging(level: str = "INFO") -> None:
    """Send opslib's log lines to stderr, as a runbook's setup cell does.

    Calling it twice adds no second handler.

    Args:
        level: a logging level name such as "INFO" or "DEBUG".
    """
    logger = logging.getLogger("opslib")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_opslib", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        handler._opslib = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
