"""GET /runs and GET /runs/{id}: server-rendered, signed-link-only pages with strict security headers."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.pages.links import RUNS, Links, run_subject
from bot.pages.views import Redact, identity, load_run, load_runs
from storage.db import Database
from storage.status import RunStatus

PAGES_OFF = "Run pages are off: OVERSEER_SECRET_KEY is not set."
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                "base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def templates() -> Environment:
    """The pages' Jinja environment: templates from the package, every value escaped."""
    return Environment(loader=PackageLoader("bot.pages", "templates"), autoescape=True, trim_blocks=True,
                       lstrip_blocks=True)


def refuse(status: int, reason: str) -> Response:
    """A one-line plain-text answer, with the pages' headers."""
    return PlainTextResponse(reason + "\n", status_code=status, headers=SECURITY_HEADERS)


def page_routes(db: Database, links: Links | None, *, redact: Redact = identity) -> list[Route]:
    """The routes to mount in the app; without links (no secret key) they answer 404 with the reason."""
    env = templates()

    def render(name: str, **values: Any) -> Response:
        return HTMLResponse(env.get_template(name).render(**values), headers=SECURITY_HEADERS)

    async def runs(request: Request) -> Response:
        if links is None:
            return refuse(404, PAGES_OFF)
        exp, sig = request.query_params.get("exp"), request.query_params.get("sig")
        verdict = links.check(RUNS, exp, sig)
        if not verdict.ok:
            return refuse(403, verdict.reason)
        workflow = request.query_params.get("workflow", "").strip() or None
        status = request.query_params.get("status", "").strip() or None
        rows = await load_runs(db, workflow=workflow, status=status, redact=redact)
        # The run links expire with the list link: opening the list never extends access.
        hrefs = {row.id: f"/runs/{row.id}?{links.query(run_subject(row.id), verdict.expires)}" for row in rows}
        return render("runs.html", rows=rows, hrefs=hrefs, exp=exp, sig=sig, workflow=workflow or "",
                      status=status or "", statuses=[s.value for s in RunStatus])

    async def run(request: Request) -> Response:
        if links is None:
            return refuse(404, PAGES_OFF)
        run_id = request.path_params["run_id"]
        verdict = links.check(run_subject(run_id), request.query_params.get("exp"), request.query_params.get("sig"))
        if not verdict.ok:
            return refuse(403, verdict.reason)
        view = await load_run(db, run_id, redact)
        if view is None:
            return refuse(404, "No such run.")
        return render("run.html", run=view)

    return [Route("/runs", runs, methods=["GET"]), Route("/runs/{run_id}", run, methods=["GET"])]
