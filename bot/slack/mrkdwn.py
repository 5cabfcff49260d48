"""Untrusted text made safe for mrkdwn, and cut to a limit without breaking what escaping wrote."""

from __future__ import annotations

import re
from typing import Any

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def escape_mrkdwn(text: Any) -> str:
    """Escape &, < and > (and nothing else) so untrusted text cannot mention, ping or fake a link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int, suffix: str = "…") -> str:
    """`text` if it fits in `limit` characters, else its start and `suffix` (the whole within limit)."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - len(suffix), 0)]
    return (head + suffix)[:limit]


def cut_escaped(text: str, limit: int, suffix: str = "…") -> str:
    """Like `cut` for already-escaped mrkdwn: never leaves half an `&amp;` entity at the end."""
    if len(text) <= limit:
        return text
    head = _PARTIAL_ENTITY.sub("", text[: max(limit - len(suffix), 0)])
    return (head + suffix)[:limit]
