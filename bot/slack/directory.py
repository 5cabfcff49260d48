"""Who is in a list of people: user ids, plus members of S… user groups, cached briefly (the policy is in permissions.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import structlog
from slack_sdk.web.async_client import AsyncWebClient

log = structlog.get_logger("overseer.slack.directory")


class Directory:
    """Resolves S… user groups with usergroups.users.list, each answer kept `ttl` seconds."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def group_members(self, group_id: str) -> frozenset[str]:
        """A group's members; a failed lookup counts as no members and is not cached."""
        cached = self._cache.get(group_id)
        if cached and cached[0] > self.clock():
            return cached[1]
        lock = self._locks.setdefault(group_id, asyncio.Lock())
        async with lock:  # clicks arriving together share one lookup
            cached = self._cache.get(group_id)
            if cached and cached[0] > self.clock():
                return cached[1]
            try:
                answer = await self.client.usergroups_users_list(usergroup=group_id)
            except Exception as exc:  # noqa: BLE001 - Slack down or a bad group: nobody is in it for now
                log.warning("usergroup.lookup_failed", usergroup=group_id, error=str(exc))
                return frozenset()
            members = frozenset(answer.get("users") or [])
            self._cache[group_id] = (self.clock() + self.ttl, members)
            return members

    async def contains(self, user_id: str, ids: Iterable[str]) -> bool:
        """Whether `user_id` is one of `ids` or a member of one of its S… groups."""
        ids = list(ids)
        if user_id in ids:
            return True
        for ref in ids:
            if ref.startswith("S") and user_id in await self.group_members(ref):
                return True
        return False
