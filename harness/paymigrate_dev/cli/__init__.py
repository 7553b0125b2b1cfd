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

import psycopg2

from paymigrate import inputs
from paymigrate.errors import BadInput, PaymigrateError

COMMAND_MODULES = (
    "paymigrate_dev.cli.stack",
    "paymigrate_dev.cli.validate",
    "paymigrate_dev.cli.run",
    "paymigrate_dev.cli.seed",
    "paymigrate_dev.cli.workload",
    "paymigrate_dev.cli.demo",
    "paymigrate_dev.cli.ddl",
)

EXIT_ERROR = 2


class Parser(argparse.ArgumentParser):
    """An argument error in one line on stderr, exit 2 (argparse's default prints the usage
    first). Sub-command parsers are of the same class."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def _argument(check):
    """An argparse ``type`` from a library check: its :class:`BadInput` becomes argparse's
    one-line "argument --x: ..." error."""
    def convert(text: str):
        try:
            return check(text)
        except BadInput as exc:
            raise argparse.ArgumentTypeError(f"{exc.value!r}: {exc.reason}") from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def bounded(kind, *, low=None, high=None):
    """argparse ``type``: a number of ``kind`` within ``low..high``."""
    return _argument(inputs.bounded(kind, low=low, high=high))


def table_name(text: str) -> str:
    """argparse ``type``: a table name in SQL syntax (kept as given; the catalog resolves it)."""
    _argument(inputs.parse_table)(text)
    return text


def libpq_dsn(text: str) -> str:
    """argparse ``type``: a DSN libpq can parse."""
    return _argument(inputs.check_dsn)(text)


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
    p = Parser(
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
        message = " ".join(str(exc).split())
        print(f"paymigrate {args.command}: {message}", file=sys.stderr)
        if as_json:
            emit(args, {"error": message, "command": args.command})
        return EXIT_ERROR
    except psycopg2.OperationalError as exc:  # a server not reachable: one line, as for bad input
        message = f"cannot connect: {' '.join(str(exc).split())}"
        print(f"paymigrate {args.command}: {message}", file=sys.stderr)
        if as_json:
            emit(args, {"error": message, "command": args.command})
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
