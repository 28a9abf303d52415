"""`tagd serve`: the HTTP API (tagd.api) on `[api] listen`, without the scheduler."""

from __future__ import annotations

import argparse
import sys

from tagd.api.listen import ListenError, bind, exposure_problem, parse_listen
from tagd.cli.context import EXIT_OK, Context, UsageError


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("serve", help="serve the HTTP API (see /api/docs)")
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (default: [api] listen)"
    )
    p.set_defaults(handler=serve)


def serve(ctx: Context, args: argparse.Namespace) -> int:
    import uvicorn

    from tagd.api.app import create_app

    api = ctx.settings.api
    if not api.enabled:
        raise UsageError("the HTTP API is off ([api] enabled = false); set it to true to serve")
    key = "--listen" if args.listen is not None else "api.listen"
    try:
        listen = parse_listen(args.listen if args.listen is not None else api.listen)
    except ListenError as exc:
        raise UsageError(f"{key}: {exc}") from None
    refused = exposure_problem(api, listen, key)
    if refused:
        raise UsageError(refused)
    try:
        sock = bind(listen)
    except ListenError as exc:
        hint = " (or --listen)" if "[api] listen" in str(exc) else ""
        raise UsageError(f"{exc}{hint}") from None
    app = create_app(ctx.settings, ctx.state_dir)
    # log_config None: uvicorn's lines go through tagd's logging (set up by main).
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False)
    print(
        f"tagd: serving the web pages on {listen.url}/ and the API on {listen.url}/api/v1 "
        f"(documentation: {listen.url}/api/docs)",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        app.state.tagd.engine.close()
    return EXIT_OK
