"""Bounds on untrusted values (model and tool outputs, human edits, spec files, templates): one set of limits, one walk."""

from __future__ import annotations

import math
from typing import Any

# Each level of a value costs jsonschema and pydantic several Python frames: 64 levels stay far below
# the interpreter's recursion limit, and nothing honest nests that deep.
MAX_DEPTH = 64
MAX_VALUES = 100_000
MAX_CHARS = 1_000_000


def shape_problem(value: Any) -> str | None:
    """What makes a value too deep, too big or not JSON ("is nested deeper than 64 levels", ...), or None.

    Walked without recursion, so a value of any depth is measured safely."""
    stack = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"holds more than {MAX_VALUES:,} values"
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels"
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, float) and not math.isfinite(item):
            return "holds NaN or Infinity, which JSON does not allow"
    return None
