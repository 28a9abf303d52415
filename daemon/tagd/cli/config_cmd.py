"""`tagd config check [FILE]`: validate a config file without running anything."""

from __future__ import annotations

import argparse
import sys

from tagd.cli.context import EXIT_OK, EXIT_USAGE, Context
from tagd.config import ConfigError, find_config_file, load_settings


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("config", help="configuration tools")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("file", nargs="?", help="default: the file tagd would use")
    check.set_defaults(handler=check_cmd)


def check_cmd(ctx: Context, args: argparse.Namespace) -> int:
    path = args.file or ctx.config_path
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        # One line per problem: a file with several typos is fixed in one pass.
        for line in exc.lines:
            print(f"tagd: {line}", file=sys.stderr)
        return EXIT_USAGE
    source = settings.source or find_config_file(path)
    print(f"{source or 'built-in defaults'}: OK")
    return EXIT_OK
