"""Signed inbound Slack requests (slash commands, block actions, view submissions) for `/slack/events`.

Each builder returns `(body, headers)` ready to POST; the bodies follow the formats Slack sends.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0TEST"
APP_ID = "A0TEST"
FORM = "application/x-www-form-urlencoded"
DEFAULT_RESPONSE_URL = "https://hooks.slack.com/commands/T0TEST/1/fake"


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with `body`; pass an old `timestamp` to make a stale request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"Content-Type": FORM, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def _user_name(user_id: str) -> str:
    """A stable, readable user name for a user id (U0ALICE -> alice)."""
    return user_id.removeprefix("U0").removeprefix("U").lower() or "someone"


def slash_command(
    secret: str, *, text: str, user_id: str = "U0ALICE", channel_id: str = "C0CONTENT", command: str = "/overseer",
    response_url: str | None = None, trigger_id: str = "T.trigger", team_id: str = TEAM_ID, timestamp: int | None = None,
) -> tuple[str, dict[str, str]]:
    """A signed slash command, form-urlencoded like Slack sends it."""
    fields = {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "team_domain": "overseer-test",
        "channel_id": channel_id,
        "channel_name": f"chan-{channel_id.lower()}",
        "user_id": user_id,
        "user_name": _user_name(user_id),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or DEFAULT_RESPONSE_URL,
        "trigger_id": trigger_id,
    }
    body = urlencode(fields)
    return body, sign(secret, body, timestamp)


def _interaction(
    secret: str, kind: str, *, user_id: str, trigger_id: str, team_id: str = TEAM_ID, timestamp: int | None = None,
    **fields: Any,
) -> tuple[str, dict[str, str]]:
    """A signed interactivity payload of `kind`: the envelope every kind shares, then `fields`.

    Slack posts it as a form with one field, `payload`, holding the JSON.
    """
    name = _user_name(user_id)
    payload = {
        "type": kind,
        "user": {"id": user_id, "username": name, "name": name, "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "deprecated-verification-token",
        "team": {"id": team_id, "domain": "overseer-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "trigger_id": trigger_id,
        **fields,
    }
    body = urlencode({"payload": json.dumps(payload)})
    return body, sign(secret, body, timestamp)


def block_action(
    secret: str, *, action_id: str, value: str, channel_id: str = "C0CONTENT", message_ts: str = "1700000001.000100",
    block_id: str = "b", response_url: str | None = None, trigger_id: str = "T.trigger.action", **sender: Any,
) -> tuple[str, dict[str, str]]:
    """A signed `block_actions` payload for a button click on a channel message; `sender` is user_id (and team_id, timestamp)."""
    return _interaction(
        secret, "block_actions", trigger_id=trigger_id, **sender,
        container={"type": "message", "message_ts": message_ts, "channel_id": channel_id, "is_ephemeral": False},
        channel={"id": channel_id, "name": f"chan-{channel_id.lower()}"},
        message={"type": "message", "ts": message_ts, "text": "", "blocks": []},
        response_url=response_url or DEFAULT_RESPONSE_URL,
        actions=[{
            "action_id": action_id,
            "block_id": block_id,
            "value": value,
            "type": "button",
            "text": {"type": "plain_text", "text": "button"},
            "action_ts": f"{time.time():.6f}",
        }],
    )


def view_submission(
    secret: str, *, callback_id: str, private_metadata: str, values: dict[str, dict[str, str]], view_id: str = "V0TEST",
    trigger_id: str = "T.trigger.view", team_id: str = TEAM_ID, **sender: Any,
) -> tuple[str, dict[str, str]]:
    """A signed `view_submission` payload; `values` maps block_id -> action_id -> typed text; `sender` as for block_action."""
    state = {
        block_id: {action_id: {"type": "plain_text_input", "value": text} for action_id, text in actions.items()}
        for block_id, actions in values.items()
    }
    view = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": private_metadata,
        "blocks": [],
        "state": {"values": state},
        "hash": "1700000000.fakehash",
        "title": {"type": "plain_text", "text": "Overseer"},
        "app_id": APP_ID,
        "bot_id": "B0BOT",
        "root_view_id": view_id,
        "previous_view_id": None,
    }
    return _interaction(secret, "view_submission", trigger_id=trigger_id, team_id=team_id, view=view, response_urls=[], **sender)
