"""Building specs for tests: one builder whose model steps talk to the fake model."""

from __future__ import annotations

from typing import Any

from agents.loading import parse_spec
from agents.spec import WorkflowSpec
from tests.fakes.fake_model import FakeModel

MODEL = "openai/gpt-4o-mini"
ONLY = {"name": "only", "model": MODEL, "prompt": "Say hi to {{ inputs.who }}"}


def model_spec(fake: FakeModel, *, steps: list[dict[str, Any]] | None = None, **fields: Any) -> WorkflowSpec:
    """A spec whose model steps talk to the fake model; by default `test-flow`, one step saying hi to `who`."""
    base = {"api_base": fake.api_base, "api_key_env": "FAKE_KEY"}
    data = {"name": "test-flow", "inputs": {"who": {"type": "string", "default": "world"}}, **fields}
    data["steps"] = [({**base, **s} if "model" in s else s) for s in steps or [ONLY]]
    return parse_spec(data, "test.yaml")
