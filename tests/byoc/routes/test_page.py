"""``GET /``, ``GET /web/{name}`` and ``GET /workflows`` over a real socket: the page loads with
relative URLs only, nothing from elsewhere, and stays reachable when the runner has a token."""

from __future__ import annotations

import re

from byoc import web
from tests.byoc.harness import running


async def test_the_page_and_its_files_are_served_with_relative_urls_only() -> None:
    async with running(with_orchestrator=False) as env:
        async with env.http.get(env.url + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            html = await r.text()
        assert 'src="web/app.js"' in html and 'href="web/style.css"' in html
        for name, content_type in web.ASSETS.items():
            async with env.http.get(f"{env.url}/web/{name}") as r:
                assert r.status == 200, name
                assert r.content_type == content_type
                text = await r.text()
            # No CDN, no absolute URL: the page works behind a proxy under any prefix.
            assert not re.search(r"https?://", text), name
            assert not re.search(r"""(src|href)="/""", text), name
            assert not re.search(r"""fetch\(\s*[`'"]/""", text), name
        for missing in ("nope.js", "__init__.py", "..%2F..%2Fpyproject.toml"):
            async with env.http.get(f"{env.url}/web/{missing}") as r:
                assert r.status == 404
                assert (await r.json())["status_code"] == 404


async def test_workflows_lists_the_examples() -> None:
    async with running(with_orchestrator=False) as env:
        async with env.http.get(env.url + "/workflows") as r:
            assert r.status == 200
            body = await r.json()
    listed = body["workflows"]
    assert [w["name"] for w in listed] == [w["name"] for w in web.example_workflows()]
    invert = next(w for w in listed if w["name"] == "invert")
    assert {n["class_type"] for n in invert["workflow"].values()} == {
        "LoadTensor",
        "ImageInvert",
        "SaveTensor",
    }


async def test_the_page_is_open_without_the_token_and_the_media_routes_are_not() -> None:
    async with running(with_orchestrator=False, token="tok") as env:
        for path in ("/", "/workflows", "/web/app.js"):
            async with env.http.get(env.url + path) as r:
                assert r.status == 200, path
        async with env.http.post(
            env.url + "/whip", data="v=0", headers={"Content-Type": "application/sdp"}
        ) as r:
            assert r.status == 401
        async with env.http.get(env.url + "/byoc-stats") as r:
            assert r.status == 401
