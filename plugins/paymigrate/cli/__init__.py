"""``paymigrate``: the operator's and the developer's handle on the migration.

Each module in this package adds its commands with ``register(subparsers)``; the list below is
the one place that says which commands exist.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
from typing import Any

from paymigrate.errors import PaymigrateError

COMMAND_MODULES = (
    "paymigrate.cli.stack",
    "paymigrate.cli.validate",
    "paymigrate.cli.run",
    "paymigrate.cli.seed",
    "paymigrate.cli.workload",
    "paymigrate.cli.demo",
)

EXIT_ERROR = 2


def command(sub: argparse._SubParsersAction, name: str, *, summary: str, description: str,
            environment: str = "", example: str = "") -> argparse.ArgumentParser:
    """A sub-command whose --help reads synopsis, description, options, environment, example."""
    epilog = ""
    if environment:
        epilog += "environment:\n" + environment.rstrip() + "\n\n"
    if example:
        epilog += "example:\n" + example.rstrip() + "\n"
    return sub.add_parser(name, help=summary, description=description.strip(), epilog=epilog or None,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paymigrate",
        description="Zero-downtime migration of a PostgreSQL payment database to Aurora PostgreSQL, "
                    "and the local stand-ins it runs against.",
        epilog="Run `paymigrate COMMAND --help` for a command's options and an example.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def emit(args: argparse.Namespace, doc: Any) -> None:
    """A command's --json result: the one thing it writes to stdout."""
    print(json.dumps(doc, indent=2, sort_keys=True, default=str), file=args.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.stdout = sys.stdout
    # With --json, stdout carries the JSON alone: whatever else a command or the code under it
    # prints (progress lines, task tables) goes to stderr.
    as_json = getattr(args, "json", False)
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet:
            return int(args.func(args) or 0)
    except PaymigrateError as exc:
        print(f"paymigrate {args.command}: {exc}", file=sys.stderr)
        if as_json:
            emit(args, {"error": str(exc), "command": args.command})
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
