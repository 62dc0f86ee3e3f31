"""The ``scr`` command line: ``demo``, ``serve``, ``check-config``, ``replay``.

User errors never end in a traceback: they print ``error: <message>`` to stderr and exit 1
(a bad config, a missing file) or 2 (bad command-line usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import ConfigError

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scr",
        description="Session completion capture: demo, standalone service and operations.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser("demo", help="capture a realistic mix of sessions and show them")
    demo.add_argument("--events", type=_non_negative, default=40, help="sessions (default 40)")
    demo.add_argument("--config", metavar="FILE", help="YAML config (default: embedded ledger)")

    serve = commands.add_parser("serve", help="run the standalone SCR service")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8443, help="port (default 8443, 0: any)")
    serve.add_argument("--config", metavar="FILE", help="YAML config for the service's runtime")
    serve.add_argument(
        "--api-key", metavar="KEY", help="accepted key(s), comma-separated (default SCR_API_KEY)"
    )
    serve.add_argument(
        "--no-auth", action="store_true", help="accept events without a key (local testing)"
    )
    serve.add_argument(
        "--recent-size",
        type=_non_negative,
        default=1000,
        help="events kept for GET /events/recent (default 1000, 0: off)",
    )
    serve.add_argument(
        "--protect-recent", action="store_true", help="require the API key for /events/recent"
    )

    check = commands.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("file", metavar="FILE")

    replay = commands.add_parser("replay", help="re-deliver what the dead-letter spools hold")
    replay.add_argument("--config", metavar="FILE", help="YAML config (default SCR_CONFIG_FILE)")
    replay.add_argument("--destination", metavar="NAME", help="only this destination")
    replay.add_argument(
        "--include-rejected",
        action="store_true",
        help="also replay events rejected with a 4xx or whose transform failed",
    )
    replay.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait for delivery (default 60)"
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.command == "check-config":
        from .cli_check import check_config

        return check_config(args.file, out)
    if args.command == "replay":
        from .cli_replay import replay

        return replay(args.config, args.destination, args.include_rejected, args.timeout, out)
    if args.command == "serve":
        from .cli_serve import serve

        return serve(
            host=args.host,
            port=args.port,
            config_path=args.config,
            api_key=args.api_key,
            no_auth=args.no_auth,
            recent_size=args.recent_size,
            protect_recent=args.protect_recent,
            out=out,
        )
    from .demo import run_demo

    return run_demo(args.events, args.config, out=out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # unreadable or unwritable files, ports, data dirs
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
