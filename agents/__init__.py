"""Scoped agents: the spec, the engine that runs steps, model and tool calls, the outbox. Never imports Slack."""
