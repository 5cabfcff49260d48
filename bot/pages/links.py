"""Signed, expiring links to the run pages: HMAC-SHA256 over what a link opens and until when."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

RUNS = "runs"  # what the list page's links sign
DEFAULT_TTL = 7 * 86400.0


def run_subject(run_id: str) -> str:
    """What a run page's link signs (never equal to RUNS, so one link cannot open the other page)."""
    return f"run:{run_id}"


@dataclass(frozen=True)
class Verdict:
    """Whether a link opens its page, and if not the one line that says why."""

    ok: bool
    reason: str = ""
    expires: int = 0


@dataclass(frozen=True)
class Links:
    """Signs and checks page links with the secret key; `public_url` is where people reach `overseer serve`."""

    secret_key: str
    public_url: str | None = None
    ttl_seconds: float = DEFAULT_TTL
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def signature(self, subject: str, expires: int) -> str:
        """The hex HMAC-SHA256 of `subject` and `expires`."""
        message = f"{subject}\n{expires}".encode()
        return hmac.new(self.secret_key.encode(), message, hashlib.sha256).hexdigest()

    def query(self, subject: str, expires: int | None = None, **extra: str) -> str:
        """`exp=...&sig=...` (plus `extra`) for a link to `subject`, good until `expires` (default: now + ttl)."""
        exp = int(self.clock() + self.ttl_seconds) if expires is None else expires
        return urlencode({**extra, "exp": exp, "sig": self.signature(subject, exp)})

    def check(self, subject: str, exp: Any, sig: Any) -> Verdict:
        """Whether `exp` and `sig` from a request sign `subject` and have not expired."""
        if not isinstance(exp, str) or not isinstance(sig, str) or not exp.isdigit():
            return Verdict(False, "This link is not valid: it is not signed.")
        expires = int(exp)
        if not hmac.compare_digest(self.signature(subject, expires), sig):
            return Verdict(False, "This link is not valid: its signature does not match.")
        if expires < self.clock():
            return Verdict(False, "This link has expired: ask for a new one in Slack.")
        return Verdict(True, expires=expires)

    def run_url(self, run_id: str) -> str | None:
        """The full link to a run's page, or None when no public URL is set."""
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/runs/{run_id}?{self.query(run_subject(run_id))}"

    def runs_url(self) -> str | None:
        """The full link to the list of recent runs, or None when no public URL is set."""
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/runs?{self.query(RUNS)}"


def links_from(settings: Any) -> Links | None:
    """The page links of the settings (None, pages off, without OVERSEER_SECRET_KEY)."""
    key = getattr(settings, "secret_key", None)
    if key is None or not key.get_secret_value():
        return None
    return Links(key.get_secret_value(), public_url=settings.public_url, ttl_seconds=settings.link_days * 86400)
