"""The parent side of the ``comfystream-image`` job: the infer worker runs it, the parent answers.

The raw JSON body goes to the infer worker as ``JobRequest(kind="comfystream-image")``. The
worker's ``JobResult`` (status 200: ``{"image": <base64 PNG>, "width", "height", "elapsed_ms"}``)
becomes the response: JSON by default, PNG bytes for ``Accept: image/png`` (or a body key
``"accept": "image/png"``, since go-livepeer does not forward ``Accept``). With
``Accept: text/event-stream`` the answer is Server-Sent Events, every line under 64 KiB so
go-livepeer's line relay passes it:

- ``event: progress`` / ``data: <JobProgress.data as JSON>`` for each progress message;
- ``event: image`` / ``data: {"index": i, "count": n, "data": "<part of the base64 PNG>"}``
  (the image cut into parts; join ``data`` in index order);
- ``event: result`` / ``data: {"width", "height", "elapsed_ms", "image_parts": n}``;
- or ``event: error`` / ``data: {"error", "status_code"}`` when the job fails after the stream began;
- and always a last ``data: [DONE]``.

A worker that is not ready gives 503, no result in time 504, a worker's 4xx that status.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any

from aiohttp import web

from byoc.errors import ApiError, json_error
from byoc.jobs import JobTimeout, PendingJob, WorkerUnavailable
from byoc.runtime import Runtime
from byoc.sessions import Session, SessionState
from ipc.messages import JobProgress, JobResult
from ipc.untrusted_json import UntrustedJsonError, loads_untrusted

log = logging.getLogger(__name__)

KIND = "comfystream-image"
SSE_LINE_LIMIT = 60 * 1024  # go-livepeer's relay drops the stream at a line of 64 KiB
SSE_DONE = b"data: [DONE]\n\n"
DISCONNECT_POLL_S = 1.0


async def run(
    request: web.Request,
    runtime: Runtime,
    capability: str,
    body: bytes,
    timeout_s: float,
    *,
    accept: str = "",
) -> web.StreamResponse:
    """Run one image job in the infer worker and answer in the ``accept``-ed format."""
    want_sse = "text/event-stream" in accept
    session = runtime.sessions.add_job(capability)
    try:
        # The least-loaded infer worker (a ready one when any is).
        worker = runtime.supervisor.placement.for_job()
        job = await runtime.worker_jobs.submit(worker, KIND, body, want_progress=want_sse)
    except WorkerUnavailable as exc:
        session.transition(SessionState.FAILED, error=str(exc))
        runtime.metrics.admission_refused("worker_unavailable")
        raise ApiError(503, str(exc)) from None
    try:
        if want_sse:
            return await _answer_sse(request, runtime, session, job, timeout_s)
        return await _answer_once(runtime, session, job, timeout_s, png="image/png" in accept)
    finally:
        runtime.worker_jobs.forget(job)
        if session.live:  # client went away or an unexpected error: the job is over for us
            session.transition(SessionState.FAILED, error="job abandoned")


async def _answer_once(
    runtime: Runtime, session: Session, job: PendingJob, timeout_s: float, *, png: bool
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            event = await runtime.worker_jobs.next_event(job, deadline - loop.time())
        except JobTimeout:
            return _timed_out(session, timeout_s)
        if isinstance(event, JobResult):
            break
    if event.status != 200:
        return _failed(session, event)
    try:
        result = _decode_result(event.payload)
    except ValueError as exc:
        return _failed(session, JobResult(job.job_id, 502, error=str(exc)))
    _completed(runtime, session, result)
    headers = {"X-Metadata": json.dumps({"session_id": session.id})}
    if png:
        return web.Response(
            body=base64.b64decode(result["image"]), content_type="image/png", headers=headers
        )
    return web.Response(body=event.payload, content_type="application/json", headers=headers)


async def _answer_sse(
    request: web.Request, runtime: Runtime, session: Session, job: PendingJob, timeout_s: float
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        first = await _next_or_disconnect(request, runtime, job, deadline)
    except JobTimeout:
        return _timed_out(session, timeout_s)
    if first is None:
        return web.Response(status=499)  # client gone; nobody reads this
    if isinstance(first, JobResult) and first.status != 200:
        return _failed(session, first)  # failed before any progress: a plain JSON error
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Metadata": json.dumps({"session_id": session.id}),
        }
    )
    await response.prepare(request)
    event: JobProgress | JobResult | None = first
    try:
        while event is not None:
            if isinstance(event, JobProgress):
                await _write_event(response, "progress", event.data, session)
            else:
                await _write_final(response, runtime, session, job, event)
                return response
            try:
                event = await _next_or_disconnect(request, runtime, job, deadline)
            except JobTimeout:
                message = f"no result within {timeout_s:g} s"
                session.transition(SessionState.FAILED, error=message)
                await _write_error(response, 504, message)
                return response
        log.info("job %s: client went away", session.id)
    except ConnectionResetError:
        log.info("job %s: client went away", session.id)
    return response


async def _next_or_disconnect(
    request: web.Request, runtime: Runtime, job: PendingJob, deadline: float
) -> JobProgress | JobResult | None:
    """The job's next event; None once the client has disconnected."""
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise JobTimeout(f"job {job.job_id} timed out")
        try:
            return await runtime.worker_jobs.next_event(job, min(remaining, DISCONNECT_POLL_S))
        except JobTimeout:
            transport = request.transport
            if transport is None or transport.is_closing():
                return None


async def _write_final(
    response: web.StreamResponse,
    runtime: Runtime,
    session: Session,
    job: PendingJob,
    result: JobResult,
) -> None:
    if result.status != 200:
        session.transition(SessionState.FAILED, error=result.error or f"status {result.status}")
        await _write_error(response, result.status, result.error or "job failed")
        return
    try:
        data = _decode_result(result.payload)
    except ValueError as exc:
        session.transition(SessionState.FAILED, error=str(exc))
        await _write_error(response, 502, str(exc))
        return
    image: str = data["image"]
    part = SSE_LINE_LIMIT - 256
    parts = [image[i : i + part] for i in range(0, len(image), part)] or [""]
    for index, chunk in enumerate(parts):
        await _write_event(
            response, "image", {"index": index, "count": len(parts), "data": chunk}, session
        )
    summary = {k: v for k, v in data.items() if k != "image"}
    await _write_event(response, "result", {**summary, "image_parts": len(parts)}, session)
    await response.write(SSE_DONE)
    await response.write_eof()
    _completed(runtime, session, data)


async def _write_event(
    response: web.StreamResponse, name: str, data: Any, session: Session
) -> None:
    line = json.dumps(data, separators=(",", ":"))
    if len(line) > SSE_LINE_LIMIT:
        log.warning(
            "job %s: %s event of %d bytes dropped (line limit)", session.id, name, len(line)
        )
        return
    await response.write(f"event: {name}\ndata: {line}\n\n".encode())


async def _write_error(response: web.StreamResponse, status: int, message: str) -> None:
    payload = json.dumps({"error": message, "status_code": status})
    await response.write(f"event: error\ndata: {payload}\n\n".encode() + SSE_DONE)
    await response.write_eof()


def _decode_result(payload: bytes) -> dict[str, Any]:
    """The worker's success payload, checked: a JSON object with a base64 ``image``."""
    try:
        data = loads_untrusted(payload, what="result", max_bytes=len(payload))
    except UntrustedJsonError:
        raise ValueError("the infer worker returned a result that is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("image"), str):
        raise ValueError("the infer worker returned a result without an image")
    try:
        base64.b64decode(data["image"], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the infer worker returned an image that is not base64") from None
    return data


def _completed(runtime: Runtime, session: Session, result: dict[str, Any]) -> None:
    # The image went back in the response; the session keeps the small figures only.
    summary = {k: v for k, v in result.items() if k != "image"}
    runtime.sessions.set_result(session, summary)
    session.transition(SessionState.COMPLETED)


def _failed(session: Session, result: JobResult) -> web.Response:
    status = result.status if 400 <= result.status <= 599 else 502
    message = result.error or f"job failed with status {result.status}"
    session.transition(SessionState.FAILED, error=message)
    return json_error(status, message)


def _timed_out(session: Session, timeout_s: float) -> web.Response:
    message = f"no result from the infer worker within {timeout_s:g} s"
    session.transition(SessionState.FAILED, error=message)
    return json_error(504, message)
