"""Command line: ``comfystream-byoc serve`` and friends.

Import-light on purpose: worker processes are started with ``spawn``, which re-imports the main
module in every child, so nothing here may import the parent app, aiohttp or torch at module
level. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from byoc import __version__
from byoc.settings import OPTIONS, Settings, SettingsError, add_arguments, load

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfystream-byoc",
        description="Livepeer BYOC runner for real-time ComfyUI video processing.",
        epilog=_environment_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the runner: HTTP API on --port plus ingest, infer and egress workers",
        description="Run the runner. Every flag can also be set by the environment variable "
        "shown; a flag wins over the environment.",
    )
    add_arguments(serve)
    register = commands.add_parser(
        "register",
        help="register the capabilities with the orchestrator(s) once and exit (0 on success)",
        description="Register every capability (or CAPABILITY_NAMES) with every ORCH_URL once, as "
        "'serve' does at start-up, then exit: 0 when all succeeded, 1 otherwise. Takes the same "
        "flags and environment variables as 'serve'.",
    )
    add_arguments(register)
    register.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="tries per orchestrator while it is unreachable, 2 s apart (default 1)",
    )
    orchestrator = commands.add_parser(
        "orchestrator",
        help="run the local orchestrator stand-in (registration, job proxy, streams, trickle)",
        description="A small local stand-in for a go-livepeer orchestrator, faithful to its BYOC "
        "code: /capability/register|unregister, /process/request/..., /ai/stream/start|update|stop "
        "and a trickle server at /ai/trickle/.",
    )
    _add_orchestrator_arguments(orchestrator)
    health = commands.add_parser(
        "health",
        help="exit 0 when the runner at --url answers /health with its workers up (HEALTHCHECK)",
    )
    health.add_argument(
        "--url",
        default=f"http://127.0.0.1:{_env_default('PORT', '8889')}",
        help="runner base URL [default http://127.0.0.1:$PORT, PORT defaulting to 8889]",
    )
    smoke = commands.add_parser(
        "smoke",
        help="check a deployment: run a generated clip through a live stream, report, exit 0 "
        "when processed frames came back",
        description="Start a live stream the way a gateway does (--orch-url: the orchestrator's "
        "/ai/stream/start; --runner-url: the runner's /stream/start with channels on a trickle "
        "server this command hosts), publish a clip with a frame counter for --seconds, read the "
        "output back, print frames in/out, glass-to-glass latency percentiles and the first-frame "
        "time, and exit 0 when frames came back, 1 when none did, 2 on bad arguments.",
    )
    _add_smoke_arguments(smoke)
    return parser


def _env_default(name: str, default: str) -> str:
    import os

    return os.environ.get(name, default)


def _add_orchestrator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=_env_default("ORCHESTRATOR_HOST", "0.0.0.0"),
        help="address to listen on [env ORCHESTRATOR_HOST; default 0.0.0.0]",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(_env_default("ORCHESTRATOR_PORT", "8890")),
        help="port [env ORCHESTRATOR_PORT; default 8890]",
    )
    parser.add_argument(
        "--secret",
        default=_env_default("ORCH_SECRET", ""),
        help="secret runners must send to register: BYOC (empty: anyone) and Live Runner "
        "(empty: registration disabled, as in go-livepeer) [env ORCH_SECRET]",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=_env_default("ORCHESTRATOR_TLS", "") not in ("", "0", "false", "no", "off"),
        help="serve HTTPS with a generated self-signed certificate, as orchestrators do "
        "[env ORCHESTRATOR_TLS]",
    )
    parser.add_argument(
        "--keepalive-interval",
        type=float,
        default=float(_env_default("KEEPALIVE_INTERVAL", "10")),
        help="seconds between control-channel keepalives of each stream "
        "[env KEEPALIVE_INTERVAL; default 10]",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        default=_env_default("LOG_LEVEL", "INFO").upper(),
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="log level [env LOG_LEVEL; default INFO]",
    )


def _add_smoke_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--orch-url",
        help="orchestrator to start the stream through (BYOC stream API, offchain header)",
    )
    target.add_argument(
        "--runner-url",
        help="runner to start the stream on directly (default http://127.0.0.1:8889 when "
        "neither is given)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--workflow", help="API-format ComfyUI workflow JSON (default: none)")
    parser.add_argument("--out", help="write the processed output to this MP4 file")
    parser.add_argument("--width", type=int, default=512, help="clip width (default 512)")
    parser.add_argument("--height", type=int, default=512, help="clip height (default 512)")
    parser.add_argument("--fps", type=int, default=30, help="clip frame rate (default 30)")
    parser.add_argument(
        "--capability",
        default="comfystream-video",
        help="capability to start the stream on, with --orch-url (default comfystream-video)",
    )
    parser.add_argument(
        "--token",
        default=_env_default("CAPABILITY_TOKEN", ""),
        help="Bearer token the runner requires, with --runner-url [env CAPABILITY_TOKEN]",
    )
    parser.add_argument(
        "--trickle-bind",
        default="127.0.0.1",
        help="with --runner-url: address the trickle server of this command listens on "
        "(default 127.0.0.1)",
    )
    parser.add_argument(
        "--trickle-host",
        help="with --runner-url: address the runner reaches that trickle server at "
        "(default: --trickle-bind)",
    )
    parser.add_argument(
        "--trickle-port", type=int, default=0, help="port of that server (default: any free)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="longest wait for output after the last input frame, seconds (default 30)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        default=_env_default("LOG_LEVEL", "WARNING").upper(),
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="log level [env LOG_LEVEL; default WARNING]",
    )


def _environment_epilog() -> str:
    lines = ["settings (flag / environment variable; see 'COMMAND --help' for details):"]
    lines += [f"  {o.flag:<28} {' or '.join(o.env)}" for o in OPTIONS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "orchestrator":
        return _orchestrator(args)
    if args.command == "smoke":
        return _smoke(args)
    if args.command == "health":
        from byoc.healthcheck import check_health

        ok, reason = check_health(args.url)
        print(reason, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    try:
        settings = load(vars(args))
    except SettingsError as exc:
        print(f"comfystream-byoc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        return _serve(settings)
    if args.command == "register":
        return _register(settings, attempts=max(1, args.attempts))
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _configure_logging(settings: Settings) -> None:
    from ipc import logs

    logs.configure(settings.log_level, settings.log_format, "parent")


def _serve(settings: Settings) -> int:
    _configure_logging(settings)
    import uvloop

    from byoc.serve import serve
    from byoc.state_store import StateDirBusy

    try:
        uvloop.run(serve(settings))
    except StateDirBusy as exc:
        print(f"comfystream-byoc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # e.g. the port is taken
        print(f"comfystream-byoc: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _register(settings: Settings, *, attempts: int) -> int:
    _configure_logging(settings)
    if not settings.orch_urls:
        print(
            "comfystream-byoc: error: no orchestrator: set ORCH_URL or --orch-url", file=sys.stderr
        )
        return EXIT_USAGE
    import asyncio

    from byoc.registration import register_once

    failures = asyncio.run(register_once(settings, attempts=attempts))
    for line in failures:
        print(f"comfystream-byoc: error: {line}", file=sys.stderr)
    return 1 if failures else 0


def _orchestrator(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s [orchestrator %(process)d] %(name)s: %(message)s",
    )
    if not 0 < args.port < 65536:
        print(f"comfystream-byoc: error: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return EXIT_USAGE
    if args.keepalive_interval <= 0:
        print("comfystream-byoc: error: --keepalive-interval must be > 0", file=sys.stderr)
        return EXIT_USAGE
    import uvloop

    from byoc.livepeer.standin.orchestrator.run import run_orchestrator

    try:
        uvloop.run(
            run_orchestrator(
                host=args.host,
                port=args.port,
                secret=args.secret,
                tls=args.tls,
                keepalive_interval_s=args.keepalive_interval,
            )
        )
    except OSError as exc:
        print(f"comfystream-byoc: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _smoke_usage_error(args: argparse.Namespace) -> str | None:
    if args.seconds <= 0 or args.wait <= 0:
        return "--seconds and --wait must be > 0"
    if not 1 <= args.fps <= 60:
        return "--fps must be between 1 and 60"
    if args.width % 2 or args.height % 2 or args.width < 96 or args.height < 64:
        return "--width and --height must be even, at least 96x64"
    if not 0 <= args.trickle_port < 65536:
        return "--trickle-port must be 0-65535"
    return None


def _smoke(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s [smoke] %(name)s: %(message)s"
    )
    problem = _smoke_usage_error(args)
    from byoc.smoke.run import SmokeOptions, WorkflowFileError, load_workflow, run_smoke

    workflow = None
    if problem is None and args.workflow:
        try:
            workflow = load_workflow(args.workflow)
        except WorkflowFileError as exc:
            problem = str(exc)
    if problem is not None:
        print(f"comfystream-byoc: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    options = SmokeOptions(
        orch_url=args.orch_url,
        runner_url=args.runner_url or (None if args.orch_url else "http://127.0.0.1:8889"),
        seconds=args.seconds,
        workflow=workflow,
        out_path=args.out,
        width=args.width,
        height=args.height,
        fps=args.fps,
        capability=args.capability,
        token=args.token,
        trickle_bind=args.trickle_bind,
        trickle_host=args.trickle_host,
        trickle_port=args.trickle_port,
        output_wait_s=args.wait,
    )
    import asyncio
    import json

    report = asyncio.run(run_smoke(options))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1
