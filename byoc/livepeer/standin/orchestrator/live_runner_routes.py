"""go-livepeer's Live Runner HTTP endpoints on the stand-in (``server/ai_http.go``), off-chain.

Runner-facing:
- ``POST /runners/heartbeat``, ``POST /runners/{id}/unregister`` (``Authorization`` = a raw secret);
- ``POST|DELETE /runner/{id}/session/{sid}/channels``, ``POST .../proxy``, ``POST .../stop``:
  the session-control callbacks, each checked against ``Livepeer-Session-Token``.

Client-facing:
- ``GET /discovery``;
- ``POST /apps/{id}/session`` (no 402: an off-chain orchestrator prices nothing) ->
  ``{session_id, app_url, control_url}``; ``POST /apps/{id}/session/{sid}/stop`` -> 204;
- ``ANY /apps/{id}/session/{sid}/app/{path}``: the session proxy (``session_proxy``);
- ``ANY /apps/{id}/app/{path}``: a single-shot runner's request (reserve, proxy, release);
- ``ANY /run/{proxy}/{path}``: a proxy a runner created for its session.

Errors are Go's plain text. Not served: ``/apps/{id}/session/{sid}/payment`` (on-chain only).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from byoc.livepeer.standin.orchestrator import session_proxy
from byoc.livepeer.standin.orchestrator.gohttp import go_error
from byoc.livepeer.standin.orchestrator.live_runners import (
    MODE_SINGLE_SHOT,
    LiveRunner,
    LiveRunnerError,
    LiveRunnerRegistry,
)
from ipc.untrusted_json import loads_untrusted

log = logging.getLogger(__name__)

MAX_CHANNELS_PER_REQUEST = 25
JSON_HEADERS = {"Content-Type": "application/json"}


def _json(data: Any) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), headers=JSON_HEADERS)


def _refusal(exc: LiveRunnerError) -> web.Response:
    return go_error(exc.status, exc.message)


async def _decode(request: web.Request) -> Any:
    """Go's ``json.NewDecoder(r.Body).Decode``: the first JSON value (an empty body fails)."""
    body = await request.read()
    if not body.strip():
        raise LiveRunnerError(400, "EOF")
    try:
        return loads_untrusted(body)
    except ValueError as exc:
        raise LiveRunnerError(400, f"invalid character in JSON: {exc}") from None


class LiveRunnerRoutes:
    """The handlers, over one registry and one HTTP client to the runners."""

    def __init__(self, registry: LiveRunnerRegistry, http: aiohttp.ClientSession) -> None:
        self.registry = registry
        self.http = http
        self._proxied: dict[asyncio.Task[Any], web.Request] = {}

    def drop_proxied_connections(self) -> int:
        """Cut every proxied request in flight, client side and runner side (what a dying
        orchestrator process does to them). Returns how many."""
        cut = list(self._proxied.items())
        for task, request in cut:
            if request.transport is not None:
                request.transport.abort()
            task.cancel()
        self._proxied.clear()
        return len(cut)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/runners/heartbeat", self.handle_heartbeat)
        r.add_post("/runners/{runner_id}/unregister", self.handle_unregister)
        control = "/runner/{runner_id}/session/{session_id}"
        r.add_post(control + "/channels", self.handle_create_channels)
        r.add_delete(control + "/channels", self.handle_delete_channels)
        r.add_post(control + "/proxy", self.handle_create_proxy)
        r.add_post(control + "/stop", self.handle_runner_stop)
        r.add_get("/discovery", self.handle_discovery)
        r.add_post("/apps/{runner_id}/session", self.handle_reserve)
        r.add_post("/apps/{runner_id}/session/{session_id}/stop", self.handle_client_stop)
        r.add_route(
            "*", "/apps/{runner_id}/session/{session_id}/app/{app_path:.*}", self.handle_proxy
        )
        r.add_route("*", "/apps/{runner_id}/session/{session_id}/app", _subtree_redirect)
        r.add_route("*", "/apps/{runner_id}/app", _subtree_redirect)
        r.add_route("*", "/apps/{runner_id}/app/{app_path:.*}", self.handle_single_shot)
        r.add_route("*", "/run/{proxy_id}", self.handle_runner_proxy)
        r.add_route("*", "/run/{proxy_id}/{app_path:.*}", self.handle_runner_proxy)

    # ---- runner lifecycle ---------------------------------------------------------------------

    async def handle_heartbeat(self, request: web.Request) -> web.Response:
        try:
            body = await _decode(request)
            if not isinstance(body, dict):
                raise LiveRunnerError(
                    400,
                    "json: cannot unmarshal non-object into Go value of type "
                    "runner.LiveRunnerHeartbeatRequest",
                )
            answer = self.registry.heartbeat(body, request.headers.get("Authorization", ""))
        except LiveRunnerError as exc:
            log.info("heartbeat refused (%d): %s", exc.status, exc.message)
            return _refusal(exc)
        return _json(answer)

    async def handle_unregister(self, request: web.Request) -> web.Response:
        try:
            self.registry.unregister(
                request.match_info["runner_id"], request.headers.get("Authorization", "")
            )
        except LiveRunnerError as exc:
            return _refusal(exc)
        return web.Response(status=204)

    # ---- client side ----------------------------------------------------------------------------

    async def handle_discovery(self, request: web.Request) -> web.Response:
        entry: dict[str, Any] = {"address": self.registry.base_url}
        runners = self.registry.discovery()
        if runners:
            entry["runners"] = runners
        return _json([entry])

    async def handle_reserve(self, request: web.Request) -> web.Response:
        runner_id = request.match_info["runner_id"]
        try:
            self.registry.ready_runner(runner_id)  # PaymentInfo's checks come first
            session_id, runner = self.registry.reserve_session(runner_id)
            control_url = f"{self.registry.base_url}/apps/{runner_id}/session/{session_id}"
            app_url = control_url + "/app"
            if runner.request.proxy:
                # A runner registered with proxy:true is reached through a random proxy URL.
                proxy = self.registry.create_proxy(runner_id, session_id, runner.request.runner_url)
                app_url = proxy["url"]
        except LiveRunnerError as exc:
            return _refusal(exc)
        return _json({"session_id": session_id, "app_url": app_url, "control_url": control_url})

    async def handle_client_stop(self, request: web.Request) -> web.Response:
        try:
            self.registry.release_session(
                request.match_info["runner_id"], request.match_info["session_id"]
            )
        except LiveRunnerError as exc:
            return _refusal(exc)
        return web.Response(status=204)

    async def handle_proxy(self, request: web.Request) -> web.StreamResponse:
        runner_id = request.match_info["runner_id"]
        session_id = request.match_info["session_id"]
        try:
            runner, _ = self.registry.session(runner_id, session_id)
        except LiveRunnerError as exc:
            return _refusal(exc)
        return await self._forward(
            request, runner, session_id, runner.request.runner_url, request.match_info["app_path"]
        )

    async def handle_single_shot(self, request: web.Request) -> web.StreamResponse:
        runner_id = request.match_info["runner_id"]
        try:
            runner = self.registry.ready_runner(runner_id)
            if runner.request.mode != MODE_SINGLE_SHOT:
                raise LiveRunnerError(400, "runner is not single-shot")
            session_id, _ = self.registry.reserve_session(runner_id)
        except LiveRunnerError as exc:
            return _refusal(exc)
        try:
            return await self._forward(
                request,
                runner,
                session_id,
                runner.request.runner_url,
                request.match_info["app_path"],
            )
        finally:
            try:
                self.registry.release_session(runner_id, session_id)
            except LiveRunnerError as exc:
                log.warning("single-shot session %s: release failed: %s", session_id, exc)

    async def handle_runner_proxy(self, request: web.Request) -> web.StreamResponse:
        try:
            runner, session_id, target = self.registry.resolve_proxy(request.match_info["proxy_id"])
        except LiveRunnerError as exc:
            return _refusal(exc)
        return await self._forward(
            request, runner, session_id, target, request.match_info.get("app_path", "")
        )

    async def _forward(
        self,
        request: web.Request,
        runner: LiveRunner,
        session_id: str,
        endpoint: str,
        app_path: str,
    ) -> web.StreamResponse:
        route = runner.runner_id
        headers = {
            session_proxy.HEADER_ROUTE: route,
            session_proxy.HEADER_SESSION_ID: session_id,
            session_proxy.HEADER_SESSION_TOKEN: runner.session_token(session_id),
            session_proxy.HEADER_SESSION_CONTROL: (
                f"{self.registry.base_url}/runner/{route}/session/{session_id}"
            ),
        }
        target = session_proxy.proxy_target(endpoint, app_path, request.query_string)
        task = asyncio.current_task()
        assert task is not None
        self._proxied[task] = request
        try:
            return await session_proxy.forward(request, self.http, target, headers)
        finally:
            self._proxied.pop(task, None)

    # ---- session-control callbacks (runner side) -------------------------------------------------

    def _check_token(self, request: web.Request) -> tuple[str, str]:
        runner_id = request.match_info["runner_id"]
        session_id = request.match_info["session_id"]
        self.registry.check_session_token(
            runner_id, session_id, request.headers.get(session_proxy.HEADER_SESSION_TOKEN, "")
        )
        return runner_id, session_id

    async def handle_runner_stop(self, request: web.Request) -> web.Response:
        try:
            runner_id, session_id = self._check_token(request)
            self.registry.release_session(runner_id, session_id)
        except LiveRunnerError as exc:
            return _refusal(exc)
        return web.Response(status=204)

    async def handle_create_channels(self, request: web.Request) -> web.Response:
        try:
            runner_id, session_id = self._check_token(request)
            wanted = _channel_list(await _decode(request))
            created = []
            for item in wanted:
                if not isinstance(item, dict):
                    raise LiveRunnerError(
                        400,
                        "json: cannot unmarshal into Go struct field "
                        "liveRunnerTrickleChannelsRequest.channels",
                    )
                name, mime = item.get("name", ""), item.get("mime_type", "")
                if not isinstance(name, str) or not isinstance(mime, str):
                    raise LiveRunnerError(400, "json: cannot unmarshal into Go string")
                created.append(self.registry.create_channel(runner_id, session_id, name, mime))
        except LiveRunnerError as exc:
            return _refusal(exc)
        return _json({"channels": created})

    async def handle_delete_channels(self, request: web.Request) -> web.Response:
        try:
            runner_id, session_id = self._check_token(request)
            names = _channel_list(await _decode(request))
            for name in names:
                if not isinstance(name, str):
                    raise LiveRunnerError(400, "json: cannot unmarshal into Go string")
                self.registry.delete_channel(runner_id, session_id, name)
        except LiveRunnerError as exc:
            return _refusal(exc)
        return _json({"deleted": names})

    async def handle_create_proxy(self, request: web.Request) -> web.Response:
        try:
            runner_id, session_id = self._check_token(request)
            body = await _decode(request)
            target = body.get("target_url", "") if isinstance(body, dict) else None
            if not isinstance(target, str):
                raise LiveRunnerError(400, "json: cannot unmarshal into Go struct field target_url")
            if not target.strip():
                # An empty body or {} targets the runner itself.
                target = self.registry.lookup(runner_id).request.runner_url
            proxy = self.registry.create_proxy(runner_id, session_id, target)
        except LiveRunnerError as exc:
            if exc.message == "EOF":  # an empty body is allowed here
                return await self._create_default_proxy(request)
            return _refusal(exc)
        return _json(proxy)

    async def _create_default_proxy(self, request: web.Request) -> web.Response:
        runner_id = request.match_info["runner_id"]
        session_id = request.match_info["session_id"]
        try:
            runner_url = self.registry.lookup(runner_id).request.runner_url
            return _json(self.registry.create_proxy(runner_id, session_id, runner_url))
        except LiveRunnerError as exc:
            return _refusal(exc)


async def _subtree_redirect(request: web.Request) -> web.Response:
    """Go's ServeMux: a subtree's root named without its slash is redirected (301) to it."""
    location = request.path + "/"
    if request.query_string:
        location += "?" + request.query_string
    return web.Response(
        status=301,
        headers={"Location": location, "Content-Type": "text/html; charset=utf-8"},
        text=f'<a href="{location}">Moved Permanently</a>.\n\n',
    )


def _channel_list(body: Any) -> list[Any]:
    channels = body.get("channels") if isinstance(body, dict) else None
    if channels is not None and not isinstance(channels, list):
        raise LiveRunnerError(400, "json: cannot unmarshal into Go struct field channels")
    if not channels:
        raise LiveRunnerError(400, "channels is required")
    if len(channels) > MAX_CHANNELS_PER_REQUEST:
        raise LiveRunnerError(
            400, f"channels cannot contain more than {MAX_CHANNELS_PER_REQUEST} entries"
        )
    return channels
