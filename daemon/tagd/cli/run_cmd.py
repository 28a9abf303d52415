"""`tagd run`: the service (scheduled scans, watching, systemd integration)."""

from __future__ import annotations

import argparse

from tagd.cli.context import Context


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "run",
        help="run as a service: scan on daemon.schedule, tag new files as they arrive",
        description=(
            "Scan library.roots on daemon.schedule and, with daemon.watch, within seconds "
            "of a change. SIGTERM: finish the batch in flight, write sidecars, exit 0 "
            "within daemon.stop_timeout (a write that hangs stays queued). "
            "SIGHUP: reload the config (a bad one is reported and the old one kept). "
            "SIGUSR1: scan now. One per state directory."
        ),
    )
    p.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from tagd.service.loop import run_service

    return run_service(ctx.config_path, ctx.settings)
