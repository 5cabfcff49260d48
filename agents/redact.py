"""One redactor for everything that leaves the process; the database keeps the exact record.

A `Redactor` is built once from a set of secret values (bot/ builds it from the environment and the
loaded specs) and replaces, in text and in nested dicts and lists of text:
    the secret values themselves (also as they read once escaped for mrkdwn, JSON or a URL),
    the password of a URL's userinfo (`https://user:pass@host` -> `https://user:***@host`),
    the known token shapes (`sk-...`, `xox[abposr]-...`, `xapp-...`, `Bearer ...`).
Values shorter than MIN_SECRET characters are not secrets ("true", "1", "info") and are left alone;
a secret cut short (before "…", "`" or the end of a text) is replaced from its first MIN_SECRET characters.

Every surface calls it at its boundary (through bot.redaction): log lines (a structlog processor
before the renderer), whatever is posted or uploaded to Slack (bot/slack/poster.py), ephemeral
replies (bot/slack/errors.py) and CLI output. Run pages, when they exist, must use it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

MASK = "[REDACTED]"
MIN_SECRET = 8
# Environment variables whose values are secrets: names holding one of these words, and all of Slack's.
SECRET_NAME_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
SECRET_NAME_PREFIXES = ("SLACK_",)

_EDGE = r"(?<![A-Za-z0-9])"  # a token starts here, not inside a word ("task-..." is no key)
_USERINFO = r"(?P<userinfo>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:<>|\"']*:)[^\s/?#<>|\"']+@"
_BEARER = r"(?P<bearer>\b(?i:bearer)\s+)[A-Za-z0-9._~+/=-]+"
_SHAPES = (
    _EDGE + r"xox[abposr]-[A-Za-z0-9-]+",  # Slack bot, user and other tokens
    _EDGE + r"xapp-[A-Za-z0-9-]+",  # Slack app-level tokens
    _EDGE + r"sk-(?:ant-)?[A-Za-z0-9_-]{6,}",  # OpenAI / Anthropic style API keys
)
# Log fields whose name says their whole value is a secret, whatever it looks like.
_SECRET_FIELD = re.compile(r"(?i)(authorization|api[_-]?key|token|secret|password)")

T = TypeVar("T")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable called `name` holds a secret by its name alone."""
    upper = name.upper()
    return upper.startswith(SECRET_NAME_PREFIXES) or any(word in upper for word in SECRET_NAME_WORDS)


def _spellings(value: str) -> set[str]:
    """A secret as it may appear in what goes out: as is, mrkdwn-escaped, inside JSON, in a URL."""
    mrkdwn = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {value, mrkdwn, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], quote(value, safe="")}


class Redactor:
    """Replaces secrets in text and in JSON-like structures; one compiled pattern, built once."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s.strip() for s in secrets if isinstance(s, str)}
        spelled = {form for value in values if len(value) >= MIN_SECRET for form in _spellings(value)}
        literals = sorted(spelled, key=len, reverse=True)  # the longest wins where two overlap
        self._starts: dict[str, list[str]] = {}
        for literal in literals:
            self._starts.setdefault(literal[:MIN_SECRET], []).append(literal)
        parts = [_USERINFO, _BEARER, *_SHAPES]
        if literals:
            # A secret whole, or the start of one where a text was cut (before "…", "`" or its end).
            heads = "|".join(map(re.escape, self._starts))
            parts[:0] = ["(?:" + "|".join(map(re.escape, literals)) + ")", f"(?P<cut>(?:{heads})[^\\s…`]*)(?=…|`|\\Z)"]
        self._pattern = re.compile("|".join(parts))

    @classmethod
    def from_env(cls, env: Mapping[str, str], also: Iterable[str] = ()) -> Redactor:
        """A redactor for the values of `env`'s secret variables and of the variables named in `also`."""
        named = set(also)
        return cls(value for name, value in env.items() if name in named or is_secret_name(name))

    def text(self, text: str) -> str:
        """`text` with every secret replaced."""
        if len(text) < 6:  # shorter than the shortest thing it replaces
            return text
        return self._pattern.sub(self._mask, text)

    def __call__(self, value: T) -> T:
        """`value` with secrets replaced in every string inside it (dicts, lists and tuples walked)."""
        if isinstance(value, str):
            return self.text(value)  # type: ignore[return-value]
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}  # type: ignore[return-value]
        if isinstance(value, list):
            return [self(v) for v in value]  # type: ignore[return-value]
        if isinstance(value, tuple):
            return tuple(self(v) for v in value)  # type: ignore[return-value]
        return value

    def fields(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Log fields redacted; a field named like a secret (token=, password=) is masked whole, at any depth."""
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, (str, bytes)) and value and _SECRET_FIELD.search(str(key)):
                out[key] = MASK
            elif isinstance(value, dict):
                out[key] = self.fields(value)
            elif isinstance(value, (list, tuple)):
                out[key] = [self.fields(v) if isinstance(v, dict) else self(v) for v in value]
            elif value is None or isinstance(value, (str, int, float)):
                out[key] = self(value)
            else:  # an exception, bytes, any object: what the renderer would print (its repr), redacted
                out[key] = self.text(repr(value))
        return out

    def _mask(self, match: re.Match[str]) -> str:
        kind, found = match.lastgroup, match.group(match.lastgroup or 0)
        if kind == "userinfo":
            return found + "***@"
        if kind == "bearer":
            return found + MASK
        if kind == "cut" and not any(whole.startswith(found) for whole in self._starts[found[:MIN_SECRET]]):
            return found[:MIN_SECRET] + self.text(found[MIN_SECRET:])  # a secret's first characters, then others
        return MASK
