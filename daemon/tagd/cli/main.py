"""`tagd <verb>`: the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tagd import __version__
from tagd.catalog.connect import CatalogError, DiskFullError, disk_full
from tagd.cli import (
    api_key_cmd,
    config_cmd,
    doctor_cmd,
    dupes_cmd,
    export_cmd,
    models_cmd,
    organize_cmd,
    pause_cmd,
    people_cmd,
    report_cmds,
    run_cmd,
    scan_cmd,
    serve_cmd,
)
from tagd.cli.context import EXIT_USAGE, Context, UsageError
from tagd.config import ConfigError
from tagd.paths import escape_streams
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
        pause_cmd,
        report_cmds,
        dupes_cmd,
        organize_cmd,
        people_cmd,
        export_cmd,
        models_cmd,
        config_cmd,
        doctor_cmd,
        serve_cmd,
        api_key_cmd,
    ):
        module.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    escape_streams()  # a file name that is not UTF-8 is printed escaped, not a crash
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args.config)
    try:
        # config check and doctor report a broken config themselves; a new API key
        # needs no config at all (the config may be the file it is made for).
        if args.verb not in ("config", "doctor", "api-key"):
            ctx.setup_logging(timestamps=args.verb in ("run", "serve"))
        return int(args.handler(ctx, args))
    except DiskFullError as exc:
        return _disk_full(exc.where)
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
    except Exception as exc:
        if not disk_full(exc, ctx.state_dir):
            raise
        # SQLite's "database or disk is full" (at a COMMIT or mid-batch), or ENOSPC
        # from a file of the state directory.
        filename = getattr(exc, "filename", None)
        return _disk_full(Path(filename).parent if filename else ctx.state_dir)


def _disk_full(where: Path | str) -> int:
    """One line instead of a traceback; exit 2, as for other problems a rerun of
    the same command cannot fix by itself."""
    print(
        f"tagd: {DiskFullError(where)}; free some space there and run the command again "
        "(the catalog is intact: what was not committed is redone)",
        file=sys.stderr,
    )
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
