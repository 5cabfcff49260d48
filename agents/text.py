"""How a value reads as text: a string as it is, anything else as JSON (one spelling for every surface)."""

from __future__ import annotations

import json
from typing import Any


def as_text(value: Any, *, indent: int | None = 2) -> str:
    """`value` as the text a person reads and edits: strings unchanged, anything else as JSON (None is null)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent, default=str)
    except Exception:  # noqa: BLE001 - too deep, circular or not JSON at all: its repr may fail the same way
        return f"<a {type(value).__name__} that cannot be shown as JSON>"
