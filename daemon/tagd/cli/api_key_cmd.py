"""`tagd api-key new`: make a key for the HTTP API and the config line that admits it."""

from __future__ import annotations

import argparse
import json

from tagd.cli.context import EXIT_OK, Context


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("api-key", help="keys for the HTTP API (`tagd serve`)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("new", help="print a new key once, and the line for [api] api_keys")
    s.add_argument("--read-only", action="store_true", help='role "read" instead of "admin"')
    s.add_argument("--name", default="", help="who holds the key (a note in the config)")
    s.set_defaults(handler=new)


def new(ctx: Context, args: argparse.Namespace) -> int:
    # Here, not at the top: every `tagd` command imports this module, and
    # tagd.api.auth brings the web framework.
    from tagd.api.auth import key_sha256, new_key

    key = new_key()
    role = "read" if args.read_only else "admin"
    # json.dumps quotes like a TOML basic string for any name (quotes, backslashes).
    entry = (
        f'{{ sha256 = "{key_sha256(key)}", role = "{role}", '
        f"name = {json.dumps(args.name, ensure_ascii=False)} }}"
    )
    print(f"key: {key}")
    print("It is shown only this once: tagd keeps its sha256, never the key.")
    print("Add this line to api_keys in the [api] section of the config, then restart tagd serve:")
    print(f"  {entry},")
    print(f"Clients send: Authorization: Bearer {key}")
    return EXIT_OK
