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


def _user(user_id: str, team_id: str) -> dict[str, str]:
    name = _user_name(user_id)
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _payload_form(payload: dict[str, Any]) -> str:
    """Interactivity bodies are a form with one field, `payload`, holding JSON."""
    return urlencode({"payload": json.dumps(payload)})


def slash_command(
    secret: str,
    *,
    text: str,
    user_id: str = "U0ALICE",
    channel_id: str = "C0CONTENT",
    command: str = "/overseer",
    response_url: str | None = None,
    trigger_id: str = "T.trigger",
    team_id: str = TEAM_ID,
    timestamp: int | None = None,
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


def block_action(
    secret: str,
    *,
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str = "C0CONTENT",
    message_ts: str = "1700000001.000100",
    block_id: str = "b",
    response_url: str | None = None,
    trigger_id: str = "T.trigger.action",
    team_id: str = TEAM_ID,
    timestamp: int | None = None,
) -> tuple[str, dict[str, str]]:
    """A signed `block_actions` payload for a button click on a channel message."""
    payload = {
        "type": "block_actions",
        "user": _user(user_id, team_id),
        "api_app_id": APP_ID,
        "token": "deprecated-verification-token",
        "team": {"id": team_id, "domain": "overseer-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "channel": {"id": channel_id, "name": f"chan-{channel_id.lower()}"},
        "message": {"type": "message", "ts": message_ts, "text": "", "blocks": []},
        "response_url": response_url or DEFAULT_RESPONSE_URL,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": "button"},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    body = _payload_form(payload)
    return body, sign(secret, body, timestamp)


def view_submission(
    secret: str,
    *,
    callback_id: str,
    private_metadata: str,
    values: dict[str, dict[str, str]],
    user_id: str,
    view_id: str = "V0TEST",
    trigger_id: str = "T.trigger.view",
    team_id: str = TEAM_ID,
    timestamp: int | None = None,
) -> tuple[str, dict[str, str]]:
    """A signed `view_submission` payload; `values` maps block_id -> action_id -> typed text."""
    state = {
        block_id: {action_id: {"type": "plain_text_input", "value": text} for action_id, text in actions.items()}
        for block_id, actions in values.items()
    }
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "overseer-test"},
        "user": _user(user_id, team_id),
        "api_app_id": APP_ID,
        "token": "deprecated-verification-token",
        "trigger_id": trigger_id,
        "is_enterprise_install": False,
        "enterprise": None,
        "view": {
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
        },
        "response_urls": [],
    }
    body = _payload_form(payload)
    return body, sign(secret, body, timestamp)
