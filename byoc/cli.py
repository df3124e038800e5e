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
    return parser


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
    try:
        settings = load(vars(args))
    except SettingsError as exc:
        print(f"comfystream-byoc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        return _serve(settings)
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s [parent %(process)d] %(name)s: %(message)s",
    )


def _serve(settings: Settings) -> int:
    _configure_logging(settings)
    import uvloop

    from byoc.serve import serve

    try:
        uvloop.run(serve(settings))
    except OSError as exc:  # e.g. the port is taken
        print(f"comfystream-byoc: error: {exc}", file=sys.stderr)
        return 1
    return 0
