"""The run page in a real browser: Debian's Chromium driven by Playwright, against the real app on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.pages.links import Links, run_subject
from bot.settings import Settings
from tests.bot.pages.conftest import KEY, RUN_ID
from tests.helpers.slack_app import StartBot

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        await launched.close()


async def test_a_run_page_opens_in_chromium_with_a_valid_link_and_not_with_an_expired_or_forged_one(
        start_bot: StartBot, recorded_run: str, browser: Any, tmp_path: Path) -> None:
    bot = await start_bot(settings=Settings(secret_key=KEY))
    base = str(bot.http.base_url).rstrip("/")
    links = Links(KEY, public_url=base)
    page = await browser.new_page(viewport=PHONE, java_script_enabled=False)

    response = await page.goto(links.run_url(recorded_run))
    assert response is not None and response.status == 200
    assert await page.title() == f"writer · run {RUN_ID} · Overseer"
    body = await page.inner_text("body")
    for shown in ["State", "✓ succeeded", "U0ALICE", "$0.0123", "Timeline", "draft", "publish", "Attempt 2",
                  "OutputInvalid: the output is not JSON", "Edited and approved", "+They are quiet flyers."]:
        assert shown in body, shown
    assert await page.locator("script").count() == 0  # the hostile output stayed text
    assert "<script>alert('owned')</script>" in body
    # readable on a phone: nothing wider than the screen
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot = tmp_path / "run-page.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("OVERSEER_SCREENSHOT"):  # how docs/run-page.png is made
        shutil.copy(shot, os.environ["OVERSEER_SCREENSHOT"])

    expired = replace(links, clock=lambda: links.clock() - 8 * 86400).run_url(recorded_run)
    forged = f"{base}/runs/{recorded_run}?{Links('forged-key-0123456789abcdef').query(run_subject(recorded_run))}"
    for url, reason in [(expired, "This link has expired"), (forged, "This link is not valid")]:
        response = await page.goto(url)
        assert response is not None and response.status == 403
        text = await page.inner_text("body")
        assert reason in text and "Timeline" not in text
