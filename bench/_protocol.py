"""The line every benchmark ends with, and how `run_all.py` reads it back.

A benchmark measures its baseline in the same run and prints, per figure, one line
``BENCH-RESULT {json}`` with the keys benchmark, figure, unit, target, ratio, met.
The target is a comparison and a number, such as ``<= 0.35`` or ``>= 0.8``; the
ratio is the figure over the target's number, so below 1 is good for ``<=`` and
above 1 for ``>=``.
"""

from __future__ import annotations

import json
import operator
from typing import Any

PREFIX = "BENCH-RESULT "
KEYS = ("benchmark", "figure", "unit", "target", "ratio", "met")
UNITS = ("s", "x", "ratio")
_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def parse_target(target: str) -> tuple[str, float]:
    """Split ``<= 0.35`` into its comparison and number; ValueError if malformed."""
    sign, _, number = target.strip().partition(" ")
    try:
        value = float(number)
    except ValueError:
        value = 0.0
    if sign not in _COMPARE or value == 0:
        raise ValueError(
            f"target: got {target!r}, expected a comparison (<=, >=, <, >), a "
            "space and a number other than 0, such as '<= 0.35'"
        )
    return sign, value


def result(benchmark: str, figure: float, unit: str, target: str) -> dict[str, Any]:
    """The result object for one figure, with its ratio and whether it met the target."""
    if unit not in UNITS:
        raise ValueError(f"unit: got {unit!r}, expected one of {', '.join(UNITS)}")
    sign, value = parse_target(target)
    return {
        "benchmark": benchmark,
        "figure": round(float(figure), 4),
        "unit": unit,
        "target": f"{sign} {value:g}",
        "ratio": round(float(figure) / value, 4),
        "met": bool(_COMPARE[sign](float(figure), value)),
    }


def result_line(benchmark: str, figure: float, unit: str, target: str) -> str:
    """The ``BENCH-RESULT`` line for one figure."""
    return PREFIX + json.dumps(result(benchmark, figure, unit, target))


def parse_line(line: str) -> dict[str, Any] | None:
    """The result a ``BENCH-RESULT`` line holds; None for any other line.

    Raises:
        ValueError: the line starts with the prefix but is not a complete result.
    """
    if not line.startswith(PREFIX):
        return None
    try:
        found = json.loads(line[len(PREFIX) :])
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON after {PREFIX.strip()}: {error}") from error
    if not isinstance(found, dict) or any(key not in found for key in KEYS):
        raise ValueError(f"expected an object with the keys {', '.join(KEYS)}")
    return found
