"""`tagd pause` and `tagd resume`: hold the running daemon's scanning and let it
go on (through its control socket). Paused, the batch in flight finishes and
nothing new starts until resumed, across restarts too; POST /analyze is still
served."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagd.cli.context import EXIT_OK, Context, UsageError


def register(verbs: argparse._SubParsersAction) -> None:
    for verb, text in (
        ("pause", "pause the running daemon's scans (the batch in flight finishes)"),
        ("resume", "let the running daemon's scans go on"),
    ):
        p = verbs.add_parser(verb, help=text, description=text)
        p.set_defaults(handler=pause, command=verb)


def pause(ctx: Context, args: argparse.Namespace) -> int:
    from tagd.service.control import ControlError, ask
    from tagd.service.lock import holder, holder_notes

    held = holder(ctx.state_dir)
    if held is None or "run" not in held[1]:
        raise UsageError(
            f"no tagd daemon runs on {ctx.state_dir}: `tagd {args.command}` asks a "
            "running `tagd run` (start it, or `systemctl start tagd`)"
        )
    path = holder_notes(ctx.state_dir).get("socket")
    if not path:
        raise UsageError(
            f"the tagd daemon (pid {held[0]}) has no control socket "
            "(daemon.control_socket): use POST /api/v1/scans/pause or resume instead"
        )
    try:
        reply = ask(Path(path), args.command)
    except ControlError as exc:
        raise UsageError(str(exc)) from None
    if not reply.get("ok"):
        raise UsageError(f"the daemon answered: {reply.get('error')}")
    print(f"tagd daemon (pid {held[0]}): {reply.get('message')}")
    return EXIT_OK
