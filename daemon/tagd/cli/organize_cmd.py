"""`tagd organize [PATH]`: file photos into folders by the rules of [organize].
A dry run (the plan, nothing moved) unless --apply; --undo puts the last
apply's files back."""

from __future__ import annotations

import argparse
import os
from collections import Counter

from tagd import organize
from tagd.cli.context import EXIT_FAILURES, EXIT_OK, Context, UsageError
from tagd.moves import SIDECAR_SUFFIX, Report
from tagd.paths import root_of, shown
from tagd.words import count


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "organize",
        help="move photos into folders by the [organize] rules (a dry run unless --apply)",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="only files under these folders")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--apply", action="store_true", help="make the moves")
    what.add_argument("--undo", action="store_true", help="put the last apply's files back")
    p.set_defaults(handler=organize_files)


def organize_files(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings
    if args.undo:
        if args.paths:
            raise UsageError("--undo takes no PATH: it reverses the whole last apply")
        return _undo(ctx)
    if not settings.organize.rules:
        raise UsageError(
            "no [[organize.rules]] in the config: add rules such as\n"
            '  [[organize.rules]]\n  match = { tag = "AI|Objects|dog" }\n  target = "Dogs/{year}"'
        )
    prefixes = [os.path.abspath(p) for p in args.paths] or list(settings.library.roots)
    for given, prefix in zip(args.paths, prefixes, strict=False):
        if not os.path.isdir(prefix):
            raise UsageError(f"{shown(given)}: not a folder")
        if root_of(prefix, settings.library.roots) is None:
            raise UsageError(
                f"{shown(given)}: not inside a library root ([library] roots); "
                "tagd organizes only the library it knows"
            )
    if args.apply and (finished := organize.recover(ctx.catalog, ctx.state_dir)):
        print(f"finished {count(finished, 'move')} an interrupted apply left half made")
    planned = organize.plan(ctx.catalog, settings, prefixes, ctx.analyzer_shas())
    files = [m for m in planned.moves if m.source in planned.rule_of]
    by_rule = Counter(planned.rule_of[m.source] for m in files)
    for index, rule in enumerate(settings.organize.rules):
        if by_rule[index]:
            print(f"rule {index + 1} -> {rule.target}: {count(by_rule[index], 'file')}")
    for move in planned.moves:
        tag = "  sidecar" if move.source.endswith(SIDECAR_SUFFIX) else ""
        print(f"  {shown(move.source)}  ->  {shown(move.target)}{tag}")
    if not args.apply:
        print(
            f"{count(len(files), 'file')} would move ({planned.unmatched} match no rule, "
            f"{planned.waiting} not analysed yet); "
            "nothing was moved. Run `tagd organize --apply` to move them."
        )
        return EXIT_OK
    report = Report()
    journal = organize.apply(ctx.catalog, ctx.state_dir, planned.moves, report)
    for path, why in report.skipped:
        print(f"left  {shown(path)}  ({why})")
    moved = [m for m in report.moved if m.source in planned.rule_of]
    print(
        f"{count(len(moved), 'file')} moved (journal {shown(str(journal))}); "
        "`tagd organize --undo` puts them back."
    )
    return EXIT_FAILURES if report.skipped else EXIT_OK


def _undo(ctx: Context) -> int:
    report = Report()
    journal = organize.undo(ctx.catalog, ctx.state_dir, report, ctx.settings.library.roots)
    if journal is None:
        print("nothing to undo: no apply of `tagd organize` is on record")
        return EXIT_OK
    for move in report.moved:
        print(f"  {shown(move.source)}  ->  {shown(move.target)}")
    for path, why in report.skipped:
        print(f"left  {shown(path)}  ({why})")
    files = [m for m in report.moved if not m.target.endswith(SIDECAR_SUFFIX)]
    print(f"{count(len(files), 'file')} put back (journal {shown(str(journal))}).")
    return EXIT_FAILURES if report.skipped else EXIT_OK
