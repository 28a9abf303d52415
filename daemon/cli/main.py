"""`tagd <verb>`: the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tagd import __version__
from tagd.catalog.connect import CatalogError
from tagd.cli import (
    config_cmd,
    doctor_cmd,
    dupes_cmd,
    export_cmd,
    models_cmd,
    people_cmd,
    report_cmds,
    run_cmd,
    scan_cmd,
)
from tagd.cli.context import EXIT_USAGE, Context, UsageError
from tagd.config import ConfigError
from tagd.runtime.manifest import ModelError
from tagd.service.lock import InstanceLockError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagd", description="Tag photos and videos with what is in them, offline."
    )
    parser.add_argument("--version", action="version", version=f"tagd {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: $TAGD_CONFIG, "
        "~/.config/tagd/config.toml, /etc/tagd/config.toml, else built-in defaults)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in (
        scan_cmd,
        run_cmd,
        report_cmds,
        dupes_cmd,
        people_cmd,
        export_cmd,
        models_cmd,
        config_cmd,
        doctor_cmd,
    ):
        module.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args.config)
    try:
        # config check and doctor report a broken config themselves.
        if args.verb not in ("config", "doctor"):
            ctx.setup_logging(timestamps=args.verb == "run")
        return int(args.handler(ctx, args))
    except (UsageError, ConfigError, ModelError, CatalogError, InstanceLockError) as exc:
        print(f"tagd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `tagd export | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(
            "tagd: interrupted; finished work is saved, run the command again to go on",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
