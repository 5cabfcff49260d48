"""Per-channel pacing of Slack writes: chat.postMessage allows about one message a second per channel,
with short bursts (https://api.slack.com/methods/chat.postMessage#rate_limiting).

A generic cell rate algorithm per channel: a call may go `burst` calls ahead of one every `interval`
seconds, and otherwise waits its turn. Turns are handed out when asked (before the wait), so concurrent
deliveries to one channel go in order and never overrun it. Pacing ahead keeps the bot under the limit
instead of learning it from 429s, whose Retry-After stalls the delivery that hit it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ChannelPacer:
    """At most `burst` calls at once per channel, then one every `interval` seconds."""

    def __init__(self, *, interval: float = 1.0, burst: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.tolerance = interval * max(burst - 1, 0)
        self.clock = clock
        self._due: dict[str, float] = {}  # per channel: when its bucket is empty again (the GCRA's "TAT")

    def delay(self, channel: str) -> float:
        """Seconds a call to `channel` would wait now (0: it may go at once)."""
        now = self.clock()
        return max(0.0, max(self._due.get(channel, now), now) - self.tolerance - now)

    def reserve(self, channel: str) -> float:
        """Take the channel's next turn; returns the seconds to wait for it."""
        now = self.clock()
        due = max(self._due.get(channel, now), now)
        self._due[channel] = due + self.interval
        if len(self._due) > 10_000:  # forget channels whose bucket is full again
            self._due = {c: t for c, t in self._due.items() if t > now}
        return max(0.0, due - self.tolerance - now)

    def refund(self, channel: str) -> None:
        """Give back the turn of a call that never reached Slack (a dropped connection, Slack away)."""
        if channel in self._due:
            self._due[channel] = max(self._due[channel] - self.interval, self.clock())

    async def turn(self, channel: str) -> None:
        """Wait for the channel's next turn."""
        wait = self.reserve(channel)
        if wait > 0:
            await asyncio.sleep(wait)
