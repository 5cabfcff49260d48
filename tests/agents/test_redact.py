"""The redactor replaces secret values, URL passwords and token shapes, in text and nested structures."""

from __future__ import annotations

import json

import pytest

from agents.errors import SpecError
from agents.loading import parse_spec
from agents.redact import MASK, Redactor, is_secret_name

GATEWAY_KEY = "gw-live-5f3c9a0b7e21d4c8"


def test_secret_values_are_replaced_wherever_they_appear() -> None:
    redact = Redactor([GATEWAY_KEY])
    assert redact(f"401 from gateway: key {GATEWAY_KEY} is revoked") == f"401 from gateway: key {MASK} is revoked"
    assert redact(f"{GATEWAY_KEY}{GATEWAY_KEY}") == MASK + MASK


def test_values_too_short_to_be_secrets_are_left_alone() -> None:
    redact = Redactor(["true", "1", "info", "1234567", "  \n"])
    text = "debug is true, 1 replica, level info, pin 1234567"
    assert redact(text) == text


def test_a_secret_is_found_as_mrkdwn_json_and_urls_spell_it() -> None:
    secret = 'p&ss<w>rd"1/2'
    redact = Redactor([secret])
    for spelled in ("p&amp;ss&lt;w&gt;rd\"1/2", json.dumps(secret), "p%26ss%3Cw%3Erd%221%2F2"):
        assert secret not in redact(spelled) and "ss" not in redact(spelled), spelled


def test_a_secret_cut_short_is_replaced_from_its_first_characters() -> None:
    redact = Redactor([GATEWAY_KEY])
    assert redact(f"error: {GATEWAY_KEY[:14]}…") == f"error: {MASK}…"
    assert redact(f"```{GATEWAY_KEY[:12]}```") == f"```{MASK}```"
    assert redact(f"bad key {GATEWAY_KEY[:10]}") == f"bad key {MASK}"
    assert redact(f"{GATEWAY_KEY[:10]}Zxy…") == f"{GATEWAY_KEY[:10]}Zxy…"  # the start of a secret, then something else


def test_strings_inside_nested_structures_are_redacted_and_the_rest_kept() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"failed: {GATEWAY_KEY}"}},
              {"type": "context", "elements": [("tuple", GATEWAY_KEY, 3)], "n": 2, "none": None}]
    assert Redactor([GATEWAY_KEY])(blocks) == [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"failed: {MASK}"}},
        {"type": "context", "elements": [("tuple", MASK, 3)], "n": 2, "none": None},
    ]


def test_url_passwords_are_replaced_and_the_rest_of_the_url_kept() -> None:
    redact = Redactor()
    assert redact("fetch https://bob:hunter2@example.com/admin failed") == "fetch https://bob:***@example.com/admin failed"
    assert redact("<postgresql://app:s3cr%40t@db:5432/x|db>") == "<postgresql://app:***@db:5432/x|db>"
    assert redact("https://u:p@ss@host/path") == "https://u:***@host/path"
    for kept in ("postgresql://postgres@127.0.0.1/test", "http://host:8080/x@y", "mail bob@example.com"):
        assert redact(kept) == kept


@pytest.mark.parametrize("token", [
    "xoxb-1234-5678-abcdef", "xoxp-1-2-3", "xoxa-2-abc", "xoxr-refresh-1", "xapp-1-A0-123-abc", "sk-proj-abcdef12",
    "sk-ant-api03-abcdefgh",
])
def test_known_token_shapes_are_replaced_without_being_configured(token: str) -> None:
    assert Redactor()(f"token={token}, then") == f"token={MASK}, then"


def test_bearer_credentials_keep_the_word_and_lose_the_credential() -> None:
    assert Redactor()("Authorization: Bearer abc.def-ghi") == f"Authorization: Bearer {MASK}"


def test_words_that_merely_contain_a_shape_are_kept() -> None:
    assert Redactor()("the task-abcdefgh ran") == "the task-abcdefgh ran"


def test_secret_names_are_keys_tokens_secrets_passwords_and_all_of_slack() -> None:
    secret = ["OPENAI_API_KEY", "GITHUB_TOKEN", "CLIENT_SECRET", "PGPASSWORD", "SLACK_API_URL", "slack_bot_token"]
    assert all(is_secret_name(name) for name in secret)
    assert not any(is_secret_name(name) for name in ["HOME", "PATH", "OVERSEER_LOG_LEVEL", "DATABASE_URL"])


def test_from_env_takes_secret_variables_and_the_ones_named_by_specs() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-not-in-shape-0", "GATEWAY_CREDENTIAL": GATEWAY_KEY, "HOME": "/home/someone",
           "DEBUG_TOKEN": "true"}
    text = " ".join(env.values())
    assert Redactor.from_env(env)(text) == f"{MASK} {GATEWAY_KEY} /home/someone true"
    assert Redactor.from_env(env, also=["GATEWAY_CREDENTIAL"])(text) == f"{MASK} {MASK} /home/someone true"


def test_log_fields_named_like_secrets_are_masked_whole_at_any_depth() -> None:
    fields = Redactor().fields({"event": "x", "token": "abc", "headers": {"Authorization": "Basic Ym9i"},
                                "items": [{"password": "pw"}], "tokens_in": 12, "ok": True})
    assert fields == {"event": "x", "token": MASK, "headers": {"Authorization": MASK}, "items": [{"password": MASK}],
                      "tokens_in": 12, "ok": True}


def test_a_log_field_holding_an_object_is_redacted_as_it_would_be_printed() -> None:
    fields = Redactor([GATEWAY_KEY]).fields({"error": RuntimeError(f"bad key {GATEWAY_KEY}"), "raw": GATEWAY_KEY.encode()})
    assert fields == {"error": f"RuntimeError('bad key {MASK}')", "raw": f"b'{MASK}'"}


@pytest.mark.parametrize("name", ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OVERSEER_DATABASE", "slack_app_token"])
def test_a_step_may_not_send_the_processs_own_credentials_to_a_model(name: str) -> None:
    step = {"name": "draft", "model": "openai/gpt-4o-mini", "prompt": "hi", "api_key_env": name}
    with pytest.raises(SpecError) as info:
        parse_spec({"name": "leaky", "steps": [step]}, "leaky.yaml")
    assert f"leaky.yaml: steps[0] (draft).api_key_env: {name} is one of Overseer's own settings" in str(info.value)
