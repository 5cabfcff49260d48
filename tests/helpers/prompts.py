"""Scripting the fake model by prompt: each call's answer decided from its prompt and how often it came."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.fakes.fake_model import FakeModel, Reply


class PromptCounts(Counter[str]):
    """Calls per prompt, counted as they arrive (hold `lock` to read while calls may still come)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def answer_by_prompt(fake: FakeModel, reply: Callable[[str, int], Reply]) -> PromptCounts:
    """Answer each call with reply(its last message, the how-many-th call with it this is); returns the
    live count of calls per prompt."""
    asked = PromptCounts()

    def respond(body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"]
        with asked.lock:
            asked[prompt] += 1
            nth = asked[prompt]
        return reply(prompt, nth)

    fake.responder = respond
    return asked
