"""`tagd serve`: the HTTP API (tagd.api) on `[api] listen`, without the scheduler."""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from tagd.api.listen import Listen, ListenError, exposure_problem, parse_listen
from tagd.cli.context import EXIT_OK, Context, UsageError


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("serve", help="serve the HTTP API (see /api/docs)")
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (default: [api] listen)"
    )
    p.set_defaults(handler=serve)


def bind(listen: Listen) -> socket.socket:
    """The listening socket, bound here so that a taken port is a clear message and
    exit 2 rather than uvicorn's log line and exit 1."""
    try:
        infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {listen.host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"{listen.host}:{listen.port} is taken by another program (another "
                "`tagd serve`?); stop it or choose a free port with --listen or [api] listen"
            ) from None
        raise UsageError(f"cannot listen on {listen.host}:{listen.port}: {exc.strerror}") from None
    return sock


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
    sock = bind(listen)
    app = create_app(ctx.settings, ctx.state_dir)
    # log_config None: uvicorn's lines go through tagd's logging (set up by main).
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False)
    print(
        f"tagd: serving the API on {listen.url}/api/v1 (documentation: {listen.url}/api/docs)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return EXIT_OK
