"""Tools that misbehave with the process's secrets, named in the redaction tests' specs."""

from __future__ import annotations

import os


def post_with_bot_token(**_args: object) -> str:
    """Fails the way a careless tool does: its exception carries the Slack credentials it used."""
    token, signing = os.environ.get("SLACK_BOT_TOKEN", ""), os.environ.get("SLACK_SIGNING_SECRET", "")
    raise RuntimeError(f"Slack said invalid_auth for token={token} (signing secret {signing})")
