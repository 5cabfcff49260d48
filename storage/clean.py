"""Text and JSON made storable on SQLite and PostgreSQL alike, at the one door every write goes through.

PostgreSQL's text refuses NUL ("\\x00"), and neither database can encode a lone surrogate
("\\ud800".."\\udfff", which a JSON "\\ud800" escape yields). Both can reach us in model or tool output,
in error messages and in inputs. The column types below replace each such character with U+FFFD (the
Unicode replacement character, "\ufffd") in every value bound to a Text or JSON column, by the ORM
and Core statements alike: what is stored is the output with those characters replaced, nothing else
changed, and a stored U+FFFD records that a character was replaced. Values in memory are untouched.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import JSON, String, Text, TypeDecorator

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """The value with every NUL and lone surrogate in its strings (dict keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


class CleanText(TypeDecorator[str]):
    """Text, stored with unstorable characters replaced (see the module docstring)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return storable(value)


class CleanString(TypeDecorator[str]):
    """A String(n) whose value comes from outside (a provider's reply): cleaned, and cut to n characters."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        value = storable(value)
        return value[: self.impl.length] if self.impl.length else value


class CleanJSON(TypeDecorator[Any]):
    """JSON, stored with unstorable characters in its strings replaced (see the module docstring)."""

    impl = JSON
    cache_ok = True
    should_evaluate_none = True  # as JSON does: None is JSON null, an unset column SQL NULL

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return storable(value)
