"""Per-channel pacing of posts: a short burst, then one a second per channel, channels independent."""

from __future__ import annotations

from bot.slack.pacing import ChannelPacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_at_once_then_one_call_per_interval() -> None:
    clock = Clock()
    pacer = ChannelPacer(interval=1.0, burst=3, clock=clock)
    assert [pacer.reserve("C1") for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert pacer.reserve("C2") == 0.0  # another channel has its own turns
    clock.now += 10  # quiet for a while: the burst is back, not ten turns
    assert [pacer.reserve("C1") for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


def test_delay_looks_without_taking_a_turn() -> None:
    clock = Clock()
    pacer = ChannelPacer(interval=1.0, burst=1, clock=clock)
    assert pacer.delay("C1") == 0.0
    pacer.reserve("C1")
    assert pacer.delay("C1") == pacer.delay("C1") == 1.0


def test_a_call_that_never_reached_slack_gives_its_turn_back() -> None:
    clock = Clock()
    pacer = ChannelPacer(interval=1.0, burst=1, clock=clock)
    pacer.reserve("C1")
    for _ in range(5):  # Slack away: five tries that went nowhere
        pacer.reserve("C1")
        pacer.refund("C1")
    assert pacer.delay("C1") == 1.0  # as after the one call that went out
