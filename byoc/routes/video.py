"""The ``comfystream-video`` job of the runner API and the processed clip it produces.

``POST /process/request/comfystream-video`` (or ``/comfystream-video``) with
``{"input": {"prompts" | "workflow", "width", "height", "media_data"?}, "workspace"?}`` plus
optional trickle URLs creates a video session on the same media path as ``/stream/start``:

- with ``subscribe_url``/``stream_url`` (input) and ``publish_url``/``output_stream_url``
  (output) it is a live trickle stream;
- with ``media_data`` (a base64 video clip) the clip is processed to its end, the session goes
  ``processing`` -> ``completed`` and ``GET /byoc/session/{id}/output`` serves the MP4.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from aiohttp import web

from byoc import capabilities as caps
from byoc.errors import ApiError
from byoc.media_path import ParamsRejected, StreamSpec
from byoc.routes.job_context import JobContext, metadata_header, parse_json_object
from byoc.runtime import RUNTIME_KEY
from byoc.sessions import MEDIA_READY_STATES, CapacityError, SessionState, new_session_id
from byoc.stream_params import check_params
from ipc.echo import summarize_large_values

PARAM_KEYS = ("prompts", "workflow", "width", "height", "max_framerate")


def _url(data: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = data.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ApiError(400, f"'{name}' must be an http(s) URL")
        return value
    return None


def _check_workspace(data: dict[str, Any], configured: Path) -> None:
    """A client may name the workspace the runner was configured with, never another path."""
    if "workspace" not in data or data["workspace"] in (None, ""):
        return
    workspace = data["workspace"]
    if not isinstance(workspace, str) or Path(workspace).resolve() != configured:
        raise ApiError(400, "'workspace' must be the workspace this runner was configured with")


def _decode_clip(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "'input.media_data' must be a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        clip = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "'input.media_data' is not valid base64") from None
    if not clip:
        raise ApiError(400, "'input.media_data' is empty")
    return clip


async def comfystream_video(ctx: JobContext) -> web.StreamResponse:
    runtime = ctx.runtime
    data = parse_json_object(ctx.body)
    _check_workspace(data, runtime.settings.workspace)
    job_input = data.get("input", {})
    if not isinstance(job_input, dict):
        raise ApiError(400, "'input' must be a JSON object")
    try:
        params = check_params(
            {k: job_input[k] for k in PARAM_KEYS if k in job_input},
            max_side=runtime.settings.max_image_side,
        )
    except ParamsRejected as exc:
        raise ApiError(400, str(exc)) from None
    subscribe_url = _url(data, "subscribe_url", "stream_url")
    publish_url = _url(data, "publish_url", "output_stream_url")
    session_id = new_session_id()
    source_path = output_path = None
    if "media_data" in job_input:
        if subscribe_url:
            raise ApiError(400, "send either 'input.media_data' or a subscribe URL, not both")
        clip = _decode_clip(job_input["media_data"])
        source = runtime.clips.input_path(session_id)
        source.write_bytes(clip)
        source_path, output_path = str(source), str(runtime.clips.output_path(session_id))
    spec = StreamSpec(
        stream_id=session_id,
        capability=caps.COMFYSTREAM_VIDEO,
        control_url=_url(data, "control_url") or "",
        events_url=_url(data, "events_url") or "",
        subscribe_url=subscribe_url,
        publish_url=publish_url,
        data_url=_url(data, "data_url"),
        params=params,
        source_path=source_path,
        output_path=output_path,
    )
    try:
        outcome = await runtime.streams.start(spec)
    except CapacityError as exc:
        runtime.clips.remove(session_id)
        runtime.metrics.admission_refused("stream_capacity")
        raise ApiError(503, str(exc)) from None
    if outcome.error_status:
        runtime.clips.remove(session_id)
        if outcome.error_status == 503:
            runtime.metrics.admission_refused("worker_unavailable")
        raise ApiError(outcome.error_status, outcome.error)
    session = outcome.session
    result: dict[str, Any] = {
        "pipeline_ready": session.state in MEDIA_READY_STATES,
        "session_id": session_id,
        "capabilities": sorted(caps.IMPLEMENTED),
        "whip_endpoint": f"/byoc/whip/{session_id}",
        "whep_endpoint": f"/byoc/whep/{session_id}",
        "params": summarize_large_values(params),
    }
    if output_path:
        result["output_url"] = f"/byoc/session/{session_id}/output"
    runtime.sessions.set_result(session, result)
    return web.json_response(
        {"session_id": session_id, "status": session.state.value, "result": result},
        headers=metadata_header(session),
    )


async def session_output(request: web.Request) -> web.StreamResponse:
    """The processed clip of a completed ``media_data`` session (MP4)."""
    runtime = request.app[RUNTIME_KEY]
    session_id = request.match_info["session_id"]
    session = runtime.sessions.get(session_id)
    if session is None:
        raise ApiError(404, "session not found")
    path = runtime.clips.output_path(session_id)
    if session.state is not SessionState.COMPLETED:
        if session.state in (SessionState.FAILED, SessionState.STOPPED):
            raise ApiError(410, f"session {session.state.value}: no output")
        raise ApiError(409, f"output not ready: session is {session.state.value}")
    if not path.is_file():
        raise ApiError(404, "this session has no output clip")
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/byoc/session/{session_id}/output", session_output)
