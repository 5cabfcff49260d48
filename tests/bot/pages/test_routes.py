"""GET /runs and /runs/{id}: only through a valid signed link, escaped, redacted, with the security headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from starlette.applications import Starlette

from bot.pages.links import RUNS, Links, run_subject
from bot.pages.routes import SECURITY_HEADERS, page_routes
from bot.pages.views import Redact, identity
from storage.db import Database
from tests.bot.pages.conftest import RUN_ID


def client(db: Database, links: Links | None, redact: Redact = identity) -> httpx.AsyncClient:
    app = Starlette(routes=page_routes(db, links, redact=redact))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pages.test")


@pytest.fixture
async def http(db: Database, links: Links) -> AsyncIterator[httpx.AsyncClient]:
    async with client(db, links) as c:
        yield c


def path_of(url: str) -> str:
    return url.removeprefix("https://overseer.example.com")


async def test_a_valid_link_shows_the_runs_timeline_cost_and_who_started_it(http: httpx.AsyncClient, links: Links,
                                                                          recorded_run: str) -> None:
    response = await http.get(path_of(links.run_url(recorded_run) or ""))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    for shown in ["writer", RUN_ID, "U0ALICE", "$0.0123", "1200 in · 345 out", "draft", "publish", "Attempt 1",
                  "Attempt 2", "OutputInvalid: the output is not JSON", "{not json", "then waited 2.0s",
                  "latency 1.2s", "gpt-4o-mini-2024-07-18", "Write about owls", "Edited and approved", "U0BOSS",
                  "warmer tone", "12 of 40 characters changed"]:
        assert shown in page, shown
    # the edit's diff, line by line
    assert '<span class="del">-They are silent.</span>' in page
    assert '<span class="add">+They are quiet flyers.</span>' in page


async def test_a_step_outputs_markup_is_escaped_never_run(http: httpx.AsyncClient, links: Links, recorded_run: str) -> None:
    page = (await http.get(path_of(links.run_url(recorded_run) or ""))).text
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page


async def test_pages_show_only_redacted_text(db: Database, links: Links, recorded_run: str) -> None:
    async with client(db, links, redact=lambda text: text.replace("owls", "[REDACTED]")) as http:
        page = (await http.get(path_of(links.run_url(recorded_run) or ""))).text
        listing = (await http.get(path_of(links.runs_url() or ""))).text
    assert "[REDACTED]" in page and "owls" not in page
    assert "writer" in listing


async def test_every_page_answer_carries_the_security_headers(http: httpx.AsyncClient, links: Links, recorded_run: str) -> None:
    for url in [path_of(links.run_url(recorded_run) or ""), path_of(links.runs_url() or ""), f"/runs/{RUN_ID}",
                "/runs?exp=1&sig=x"]:
        response = await http.get(url)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (url, name)
    assert "default-src 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


async def test_an_expired_link_is_refused(http: httpx.AsyncClient, links: Links, recorded_run: str) -> None:
    old = replace(links, clock=lambda: links.clock() - 8 * 86400)
    response = await http.get(path_of(old.run_url(recorded_run) or ""))
    assert response.status_code == 403 and response.text == "This link has expired: ask for a new one in Slack.\n"
    assert RUN_ID not in response.text


async def test_a_forged_or_missing_signature_is_refused(http: httpx.AsyncClient, links: Links, recorded_run: str) -> None:
    forged = Links("another-key-0123456789abcdef").query(run_subject(recorded_run))
    later = int(links.clock()) + 86400
    tampered = links.query(run_subject(recorded_run), later - 100).replace(str(later - 100), str(later * 10))
    for query in [forged, tampered, "", "exp=abc&sig=00"]:
        response = await http.get(f"/runs/{recorded_run}?{query}")
        assert response.status_code == 403 and "not valid" in response.text, query


async def test_a_link_opens_only_what_it_signs(http: httpx.AsyncClient, links: Links, recorded_run: str) -> None:
    """A run's link does not open another run or the list, and the list's link does not open a run."""
    run_query = links.query(run_subject(recorded_run))
    assert (await http.get(f"/runs/r0other?{run_query}")).status_code == 403
    assert (await http.get(f"/runs?{run_query}")).status_code == 403
    assert (await http.get(f"/runs/{recorded_run}?{links.query(RUNS)}")).status_code == 403


async def test_a_signed_link_to_no_run_is_404(http: httpx.AsyncClient, links: Links) -> None:
    response = await http.get(f"/runs/r0gone?{links.query(run_subject('r0gone'))}")
    assert response.status_code == 404 and response.text == "No such run.\n"


async def test_without_a_secret_key_the_pages_are_off(db: Database, links: Links, recorded_run: str) -> None:
    async with client(db, None) as http:
        for url in [path_of(links.run_url(recorded_run) or ""), path_of(links.runs_url() or "")]:
            response = await http.get(url)
            assert response.status_code == 404
            assert response.text == "Run pages are off: OVERSEER_SECRET_KEY is not set.\n"


async def test_the_list_filters_by_workflow_and_status_and_links_each_run_until_the_list_expires(
        http: httpx.AsyncClient, links: Links, recorded_run: str) -> None:
    listing = await http.get(path_of(links.runs_url() or ""))
    assert listing.status_code == 200 and "writer" in listing.text and "✓ succeeded" in listing.text
    exp = re.search(r'name="exp" value="(\d+)"', listing.text)
    href = re.search(r'href="(/runs/' + RUN_ID + r'\?[^"]+)"', listing.text)
    assert exp and href
    assert f"exp={exp.group(1)}&amp;" in href.group(1)  # not a fresh week of access
    run_page = await http.get(href.group(1).replace("&amp;", "&"))
    assert run_page.status_code == 200 and "Timeline" in run_page.text
    query = links.query(RUNS)
    for filters, shown in [("workflow=writer", True), ("workflow=other", False), ("status=succeeded", True),
                           ("status=failed", False), ("workflow=writer&status=succeeded", True)]:
        page = (await http.get(f"/runs?{query}&{filters}")).text
        assert (f"/runs/{RUN_ID}?" in page) is shown, filters
