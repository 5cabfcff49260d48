"""The run's parent message links to its page when OVERSEER_PUBLIC_URL and OVERSEER_SECRET_KEY are set."""

from __future__ import annotations

import html
import re

import pytest

from bot.settings import Settings, load_settings
from agents.errors import ConfigError
from tests.bot.pages.conftest import KEY
from tests.fakes.fake_model import FakeModel, Reply
from tests.helpers.slack_app import StartBot, flow, text_of

PUBLIC = "https://overseer.example.com"
ONE_STEP = [{"name": "summary", "model": "openai/gpt-4o-mini", "prompt": "Summarise {{ inputs.topic }}"}]


def open_run_link(message: dict) -> str | None:
    found = re.search(r"<(https://[^|>]+)\|Open run>", text_of(message))
    return html.unescape(found.group(1)) if found else None


async def test_the_parent_message_opens_the_runs_page(start_bot: StartBot, fake_model: FakeModel) -> None:
    fake_model.default = Reply.text("Owls are birds of prey.")
    bot = await start_bot(flow(fake_model, steps=ONE_STEP), settings=Settings(secret_key=KEY, public_url=PUBLIC))
    run = await bot.start_run()
    link = open_run_link(bot.parent(run))
    assert link and link.startswith(f"{PUBLIC}/runs/{run.id}?exp=")
    page = await bot.http.get(link.removeprefix(PUBLIC))
    assert page.status_code == 200
    assert "Owls are birds of prey." in page.text and "Summarise owls" in page.text and "U0ALICE" in page.text
    assert page.headers["x-frame-options"] == "DENY"


async def test_without_a_public_url_there_is_no_link_and_without_a_key_no_pages(start_bot: StartBot,
                                                                               fake_model: FakeModel) -> None:
    fake_model.default = Reply.text("Owls.")
    bot = await start_bot(flow(fake_model, steps=ONE_STEP), settings=Settings(secret_key=KEY))
    run = await bot.start_run()
    assert open_run_link(bot.parent(run)) is None
    off = await start_bot(flow(fake_model, steps=ONE_STEP), settings=Settings(public_url=PUBLIC))
    response = await off.http.get(f"/runs/{run.id}?exp=1&sig=00")
    assert response.status_code == 404 and "OVERSEER_SECRET_KEY is not set" in response.text


def test_the_page_settings_are_checked_in_one_line() -> None:
    settings = load_settings(OVERSEER_PUBLIC_URL="https://runs.example.com/", OVERSEER_SECRET_KEY=KEY)
    assert settings.public_url == "https://runs.example.com" and settings.link_days == 7
    with pytest.raises(ConfigError, match="^OVERSEER_SECRET_KEY: must be at least 16 characters"):
        load_settings(OVERSEER_SECRET_KEY="short")
    with pytest.raises(ConfigError, match="^OVERSEER_PUBLIC_URL: must be an http"):
        load_settings(OVERSEER_PUBLIC_URL="overseer.example.com")
