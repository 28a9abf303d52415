"""`tagd people list | name | merge | split | sheet`: review and name the people found."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagd.cli.context import EXIT_FAILURES, EXIT_OK, Context, UsageError
from tagd.people import ops, sheet, store
from tagd.people.ops import PeopleError
from tagd.words import count


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("people", help="people found in faces: list, name, merge, split, sheet")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("list", help="people and unnamed clusters with face counts")
    s.set_defaults(handler=list_people)
    s = sub.add_parser("name", help='name a person: tagd people name 7 "Alice"')
    s.add_argument("person", help="person id (from `list`) or current name")
    s.add_argument("name")
    s.set_defaults(handler=name)
    s = sub.add_parser("merge", help="move all faces of OTHER into PERSON")
    s.add_argument("person", help="the person that stays (id or name)")
    s.add_argument("other", help="the person whose faces move (id or name); deleted")
    s.set_defaults(handler=merge)
    s = sub.add_parser(
        "split", help="move faces (detection ids, see `sheet`) into a new person, or --recluster"
    )
    s.add_argument("person")
    s.add_argument("faces", nargs="*", type=int, metavar="FACE", help="detection ids to move")
    s.add_argument(
        "--recluster", action="store_true", help="cluster an unnamed person's faces again"
    )
    s.set_defaults(handler=split)
    s = sub.add_parser("sheet", help="PNG contact sheet of a person's faces, for review")
    s.add_argument("person")
    s.add_argument("-o", "--output", required=True, metavar="FILE.png")
    s.set_defaults(handler=make_sheet)


def _guard(fn):  # type: ignore[no-untyped-def]
    """PeopleError is a usage problem: one line, exit 2."""

    def run(ctx: Context, args: argparse.Namespace) -> int:
        try:
            return int(fn(ctx, args))
        except PeopleError as exc:
            raise UsageError(str(exc)) from None

    return run


def list_people(ctx: Context, args: argparse.Namespace) -> int:
    everyone = ctx.catalog.people()
    waiting = ctx.catalog.waiting_faces()
    if not everyone:
        print("no people yet: `tagd scan` finds faces and groups them")
    for p in everyone:
        print(f"{p.id:>5}  {p.label:<24} {count(p.faces, 'face'):>11}  e.g. {p.example or '-'}")
    print(f"{count(waiting, 'face')} waiting for more like them")
    return EXIT_OK


@_guard
def name(ctx: Context, args: argparse.Namespace) -> int:
    person = ops.name(ctx.catalog, ctx.settings, args.person, args.name)
    print(f"person {person.id} is now {person.name!r} ({count(person.faces, 'face')}); "
          "`tagd scan` writes the sidecars")  # fmt: skip
    return EXIT_OK


@_guard
def merge(ctx: Context, args: argparse.Namespace) -> int:
    person = ops.merge(ctx.catalog, ctx.settings, args.person, args.other)
    print(f"merged into person {person.id} ({person.label}, {count(person.faces, 'face')})")
    return EXIT_OK


@_guard
def split(ctx: Context, args: argparse.Namespace) -> int:
    if args.recluster:
        if args.faces:
            raise UsageError("give either FACE ids or --recluster, not both")
        made = ops.recluster(ctx.catalog, ctx.settings, args.person)
        print(
            f"re-clustered into {count(len(made), 'person')}: " + ", ".join(p.label for p in made)
        )
        return EXIT_OK
    person = ops.split_faces(ctx.catalog, ctx.settings, args.person, args.faces)
    print(f"moved {count(person.faces, 'face')} into person {person.id} ({person.label})")
    return EXIT_OK


@_guard
def make_sheet(ctx: Context, args: argparse.Namespace) -> int:
    person = store.person(ctx.catalog, args.person)
    if person is None:
        raise UsageError(f"no person {args.person!r}: see `tagd people list`")
    faces = ctx.catalog.faces_of(person.id)
    if not faces:
        print(f"{person.label} has no faces")
        return EXIT_FAILURES
    width, height = sheet.write(faces, Path(args.output))
    print(f"{args.output}: {count(len(faces), 'face')} of {person.label}, {width}x{height}")
    return EXIT_OK
