"""``GET /metrics``: the runner's Prometheus metrics in the text exposition format.

Served on the main port behind the Bearer token when one is configured, or, with
``--metrics-port``, only on a listener of its own (``metrics_app``) without the token, so
operators can keep stream ids off the public port.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from byoc.metrics import RunnerMetrics

METRICS_KEY = web.AppKey("metrics", RunnerMetrics)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, runner_metrics: RunnerMetrics) -> None:
    app[METRICS_KEY] = runner_metrics
    app.router.add_get("/metrics", metrics)


def metrics_app(runner_metrics: RunnerMetrics) -> web.Application:
    """The separate ``--metrics-port`` listener's application: ``/metrics`` and nothing else."""
    app = web.Application()
    add_routes(app, runner_metrics)
    return app
