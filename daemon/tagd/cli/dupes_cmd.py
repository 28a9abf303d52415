"""`tagd dupes` and `tagd similar FILE`: read-only reports; nothing is deleted or moved."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagd.catalog.catalog import Catalog
from tagd.cli.context import EXIT_FAILURES, EXIT_OK, Context, UsageError
from tagd.config import Settings
from tagd.dupe_pairs import pair_pending
from tagd.dupes import Group, groups, similar_json, similar_to
from tagd.media import phash as ph
from tagd.paths import shown
from tagd.words import count

if TYPE_CHECKING:
    from tagd.quarantine import Move, Report


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "dupes",
        help="groups of near-duplicate photos with a suggestion which to keep (never deletes)",
    )
    p.add_argument(
        "--threshold",
        type=int,
        metavar="BITS",
        help="max differing hash bits, 0-16 (default: duplicates.threshold)",
    )
    p.add_argument("--json", action="store_true", help="one JSON document on standard output")
    undo = p.add_mutually_exclusive_group()
    undo.add_argument(
        "--quarantine",
        action="store_true",
        help="move every copy but the kept one into <root>/.tagd-quarantine/<date>/",
    )
    undo.add_argument(
        "--restore",
        nargs="?",
        const="all",
        metavar="DATE",
        help="put quarantined copies back: those of DATE (YYYY-MM-DD), or all",
    )
    undo.add_argument(
        "--purge",
        action="store_true",
        help="delete quarantined copies older than duplicates.retention_days",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="with --quarantine: show the moves, make none"
    )
    p.set_defaults(handler=dupes)
    p = verbs.add_parser("similar", help="the photos most like FILE (embeddings, else hashes)")
    p.add_argument("file")
    p.add_argument("--limit", type=int, default=10, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=similar)


def _group_json(g: Group) -> dict[str, Any]:
    def item(p: Any) -> dict[str, Any]:
        return {
            "path": shown(p.path),
            "width": p.width,
            "height": p.height,
            "size": p.size,
            "mtime": p.mtime_ns / 1e9,
        }

    return {
        "keep": item(g.keep),
        "reason": g.reason,
        "others": [
            item(m.photo) | {"distance": m.distance, "mirrored": m.mirrored} for m in g.others
        ],
    }


def dupes_report(
    catalog: Catalog, threshold: int, distinct: Collection[tuple[int, int]] = ()
) -> dict[str, Any]:
    """`tagd dupes --json`'s document (the HTTP API's /dupes returns it as is);
    `distinct`: pairs a user said are not duplicates."""
    return {
        "threshold": threshold,
        "hashed": catalog.hashed_file_count(),
        "groups": [_group_json(g) for g in groups(catalog, threshold, distinct)],
    }


def distinct_pairs(catalog: Catalog) -> set[tuple[int, int]]:
    """The pairs of contents users said are not duplicates (the duplicates page)."""
    return {pair for pair, verdict in catalog.dupe_verdicts().items() if verdict == "distinct"}


def dupes(ctx: Context, args: argparse.Namespace) -> int:
    threshold = ctx.settings.duplicates.threshold if args.threshold is None else args.threshold
    if not 0 <= threshold <= 16:
        raise UsageError(f"--threshold {threshold}: must be between 0 and 16 bits")
    if args.dry_run and not args.quarantine:
        raise UsageError("--dry-run goes with --quarantine")
    if args.restore is not None:
        return _restore(ctx, args.restore)
    if args.purge:
        return _purge(ctx)
    # Photos hashed since the last scan's pass (or by a tagd that stored no
    # pairs) are compared now.
    pair_pending(ctx.catalog, ctx.settings.duplicates.threshold)
    distinct = distinct_pairs(ctx.catalog)
    if args.json:
        report = dupes_report(ctx.catalog, threshold, distinct)
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return EXIT_OK
    hashed = ctx.catalog.hashed_file_count()
    if not hashed:
        print("no hashed photos; run `tagd scan` with [duplicates] enabled first")
        return EXIT_OK
    found = groups(ctx.catalog, threshold, distinct)
    if args.quarantine:
        return _quarantine(ctx, found, args.dry_run)
    for g in found:
        print(f"keep  {g.keep.path}  ({g.reason})")
        for m in g.others:
            how = ", mirrored" if m.mirrored else ""
            print(
                f"  dup {m.photo.path}  ({m.photo.width}×{m.photo.height}, {m.distance} bits{how})"
            )
    extra = sum(len(g.others) for g in found)
    print(
        f"{count(len(found), 'group')}, {count(extra, 'file')} that "
        f"{'duplicates' if extra == 1 else 'duplicate'} another, "
        f"among {count(hashed, 'hashed file')} (threshold {threshold} bits). "
        "Nothing was deleted or moved."
    )
    return EXIT_OK


def _decode_hashes(path: str) -> Any:
    from tagd.analyzers.phash import MIN_LONG_SIDE
    from tagd.media.image import DecodeError, decode_image

    try:
        data = Path(path).read_bytes()
        image = decode_image(data, min_long_side=MIN_LONG_SIDE, name=str(path)).image
    except (OSError, DecodeError) as exc:
        raise UsageError(f"{path}: cannot read it as a photo: {exc}") from None
    return ph.hash_set(image)


def similar(ctx: Context, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    path = os.path.abspath(args.file)
    found = ctx.catalog.file_by_path(path)
    cid = found.content_id if found else None
    # A file outside the catalog is hashed here, so `similar` also answers
    # "do I already have this one?" before a photo is added.
    signal, unit, hits = similar_to(
        ctx.catalog, cid, path, args.limit, lambda: _decode_hashes(path)
    )
    if args.json:
        doc = similar_json(path, signal, unit, hits)
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print(f"most like {path} (by {signal}, {unit}; smaller is closer):")
        for h in hits:
            print(f"  {h.score:g}  {h.path}" + ("  (mirrored)" if h.mirrored else ""))
    return EXIT_OK if hits else EXIT_FAILURES


def kept_pairs(catalog: Catalog) -> set[tuple[int, int]]:
    """The pairs of contents users looked at and kept (the duplicates page)."""
    return {pair for pair, verdict in catalog.dupe_verdicts().items() if verdict == "kept"}


def run_quarantine(
    catalog: Catalog, settings: Settings, found: list[Group], dry_run: bool
) -> tuple[dt.date, list[Move], Report, int]:
    """Quarantine the copies of `found` (the CLI's and the API's): (the day, the
    moves planned, what was done, half-made moves of a crash finished first)."""
    from tagd import quarantine as q

    day = dt.date.today()
    roots = settings.library.roots
    finished = 0 if dry_run else q.finish_interrupted(catalog, roots)
    moves, skipped = q.plan(found, roots, day, kept_pairs(catalog))
    report = q.Report(skipped=list(skipped))
    if not dry_run:
        q.quarantine(catalog, moves, report)
    return day, moves, report, finished


def _quarantine(ctx: Context, found: list[Group], dry_run: bool) -> int:
    day, moves, report, finished = run_quarantine(ctx.catalog, ctx.settings, found, dry_run)
    if finished:
        print(f"finished {count(finished, 'move')} an interrupted quarantine left half made")
    for move in moves if dry_run else report.moved:
        print(f"{'would move' if dry_run else 'moved'}  {move.source}  ->  {move.target}")
    for path, why in report.skipped:
        print(f"left  {path}  ({why})")
    files = [m for m in (moves if dry_run else report.moved) if not m.source.endswith(".xmp")]
    what = "would be moved" if dry_run else "moved"
    print(
        f"{count(len(files), 'file')} {what} to quarantine "
        f"(with {count(len(moves if dry_run else report.moved) - len(files), 'sidecar')}); "
        + ("nothing was moved." if dry_run else f"undo with `tagd dupes --restore {day}`.")
    )
    return EXIT_FAILURES if any(why.startswith("cannot") for _, why in report.skipped) else EXIT_OK


def _restore(ctx: Context, when: str) -> int:
    from tagd import quarantine as q

    day = None
    if when != "all":
        try:
            day = dt.date.fromisoformat(when)
        except ValueError:
            raise UsageError(
                f"--restore {when}: a date as YYYY-MM-DD, or nothing for all"
            ) from None
    report = q.Report()
    q.restore(ctx.settings.library.roots, day, report)
    for move in report.moved:
        print(f"restored  {move.target}")
    for path, why in report.skipped:
        print(f"left  {path}  ({why})")
    print(f"{count(len(report.moved), 'file')} put back; the next scan indexes them again.")
    return EXIT_FAILURES if report.skipped else EXIT_OK


def _purge(ctx: Context) -> int:
    from tagd import quarantine as q

    retention = ctx.settings.duplicates.retention_days
    report = q.Report()
    q.purge(ctx.settings.library.roots, retention, dt.date.today(), report)
    for path in report.deleted:
        print(f"deleted  {path}")
    print(f"{count(len(report.deleted), 'quarantined file')} older than {retention} days deleted.")
    return EXIT_OK
