"""The browser page: ``GET /`` (the page), ``GET /web/{name}`` (its script and style) and
``GET /workflows`` (the example workflows it offers). All open without the token: they hold no
session data; the page sends the token the user types on the WHIP/WHEP calls it makes."""

from __future__ import annotations

from aiohttp import web

from byoc import web as page_files
from byoc.errors import ApiError

# The page loads nothing from elsewhere and talks only to this runner.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; media-src 'self' blob: mediastream:; img-src 'self' data: blob:"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _file_response(name: str) -> web.Response:
    return web.Response(
        body=page_files.asset(name),
        content_type=page_files.ASSETS[name],
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


async def index(request: web.Request) -> web.Response:
    return _file_response(page_files.PAGE)


async def page_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in page_files.ASSETS:
        raise ApiError(404, f"no page file named {name!r}")
    return _file_response(name)


async def workflows(request: web.Request) -> web.Response:
    return web.json_response({"workflows": list(page_files.example_workflows())})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/web/{name}", page_asset)
    app.router.add_get("/workflows", workflows)
