"""`tagd scan`: index the library, analyse what is new, write the results."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from tagd.cli.context import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Context, UsageError
from tagd.scan.index import IndexReport, index_roots
from tagd.scan.roots import SKIPPED, usable_roots
from tagd.scan.walk import Walker
from tagd.service.lock import instance_lock
from tagd.service.stats import ScanStats, record_scan
from tagd.sinks.deliver import DeliveryReport, deliver_xmp
from tagd.sinks.select import enabled_sinks
from tagd.sinks.xmp import XmpChange

if TYPE_CHECKING:
    from tagd.pipeline import AnalyzeReport, Pipeline

MAX_LISTED = 20


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("scan", help="index, analyse and write tags for the library")
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="folders or files (default: library.roots)"
    )
    p.add_argument("--index-only", action="store_true", help="update the catalog, run no model")
    p.add_argument(
        "--dry-run", action="store_true", help="print what would change in sidecars, write none"
    )
    p.add_argument(
        "--from-stash",
        action="store_true",
        help="scan the files of Stash's scenes and images (needs [stash] enabled)",
    )
    p.add_argument(
        "--tagme-only",
        action="store_true",
        help="with --from-stash: only the files tagged <workflow_prefix>_TagMe in Stash",
    )
    p.set_defaults(handler=run)


def make_walker(ctx: Context) -> Walker:
    lib = ctx.settings.library
    return Walker(
        lib.image_extensions,
        lib.video_extensions,
        lib.exclude,
        include_hidden=lib.include_hidden,
        follow_symlinks=lib.follow_symlinks,
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    forwarded = _forward_to_daemon(ctx, args)
    if forwarded is not None:
        return forwarded
    if args.from_stash or args.tagme_only:
        return _run_from_stash(ctx, args)
    roots = [os.path.abspath(p) for p in (args.paths or ctx.settings.library.roots)]
    if not roots:
        raise UsageError("nothing to scan: give a PATH or set library.roots in the config")
    # A missing root (an unmounted share) is skipped, not taken for a library
    # emptied at once; exit 2 says the setup needs a look.
    roots, problems = usable_roots(roots, folders=not args.paths)
    for problem in problems:
        print(f"tagd: {problem}; {SKIPPED}", file=sys.stderr)
    if not roots:
        return EXIT_USAGE
    # One writer per state dir: fails (exit 2) while `tagd run` or another scan runs.
    with instance_lock(ctx.state_dir, "tagd scan"):
        code = _scan(ctx, args, roots)
    return EXIT_USAGE if problems else code


def _daemon_command(args: argparse.Namespace) -> str | None:
    """The control-socket command that does this scan (None: only this process can)."""
    if args.paths or args.index_only or args.dry_run or (args.tagme_only and not args.from_stash):
        return None
    if args.from_stash:
        return "tagme" if args.tagme_only else "stash"
    return "scan"


def _forward_to_daemon(ctx: Context, args: argparse.Namespace) -> int | None:
    """While `tagd run` holds the state directory, ask it to do the scan and wait
    for its summary; None when there is no daemon to ask (then scan here)."""
    from tagd.service.control import ControlError, ask
    from tagd.service.lock import holder, holder_notes

    command = _daemon_command(args)
    held = holder(ctx.state_dir)
    if command is None or held is None or "run" not in held[1]:
        return None
    path = holder_notes(ctx.state_dir).get("socket")
    if not path:
        return None  # no control socket: the lock's error message says what to do
    print(f"the tagd daemon (pid {held[0]}) runs: asking it to {command}, waiting…")
    try:
        reply = ask(Path(path), command, wait=True, timeout=None)
    except ControlError as exc:
        print(f"tagd: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    if not reply.get("ok"):
        print(f"tagd: the daemon answered: {reply.get('error')}", file=sys.stderr)
        return EXIT_FAILURES
    print(f"tagd daemon: {reply.get('message')}")
    return EXIT_FAILURES if reply.get("failed") else EXIT_OK


def _run_from_stash(ctx: Context, args: argparse.Namespace) -> int:
    """Scan exactly the files Stash lists (TagMe-tagged ones with --tagme-only)."""
    from tagd.sinks.stash import make_client
    from tagd.sinks.stash_client import StashError
    from tagd.sinks.stash_source import files_from_stash

    if not args.from_stash:
        raise UsageError("--tagme-only needs --from-stash")
    if args.paths:
        raise UsageError("--from-stash takes no PATH: Stash says which files to scan")
    if not ctx.settings.stash.enabled:
        raise UsageError("--from-stash needs Stash: set [stash] enabled = true (and url)")
    try:
        listed = files_from_stash(make_client(ctx.settings), ctx.settings, args.tagme_only)
    except StashError as exc:
        print(f"tagd: cannot list files from Stash: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    for path in listed.missing[:MAX_LISTED]:
        print(f"  warning: {path}: in Stash, missing here (path_mappings?)", file=sys.stderr)
    print(listed.summary())
    if not listed.local:
        return EXIT_OK
    with instance_lock(ctx.state_dir, "tagd scan"):
        return _scan(ctx, args, listed.local)


def _scan(ctx: Context, args: argparse.Namespace, roots: list[str]) -> int:
    settings = ctx.settings
    stats = ScanStats("tagd scan", roots)
    sinks = enabled_sinks(settings)
    # Check the models before touching anything, so a missing one fails fast.
    pipeline = None
    if not args.index_only:
        # Imported here: --index-only needs neither OpenCV nor onnxruntime.
        from tagd.pipeline import Pipeline, build_analyzers

        analyzers = build_analyzers(settings, ctx.models_dir)
        for analyzer in analyzers:
            for model in analyzer.models:
                model.check()
        pipeline = Pipeline(ctx.catalog, settings, analyzers, prefixes=roots)
    indexed = index_roots(ctx.catalog, make_walker(ctx), roots, sinks)
    _print_index(indexed)
    if getattr(args, "from_stash", False) and settings.stash.enabled:
        from tagd.sinks.stash_source import queue_listed

        queue_listed(ctx.catalog, roots)
    stats.indexed, stats.new, stats.changed = indexed.seen, indexed.new, indexed.changed
    stats.moved, stats.deleted = indexed.moved, indexed.deleted
    if pipeline is None:
        record_scan(ctx.catalog, stats)
        return EXIT_OK
    pipeline.rederive_if_policy_changed()
    analysed = _analyse(pipeline)
    _cluster(ctx)
    delivered = _deliver(ctx, args.dry_run, roots) if settings.xmp.enabled else None
    stash_failed = 0
    if settings.stash.enabled and not args.dry_run:
        from tagd.sinks import stash

        # Every queued write, backing off or not: whoever runs `tagd scan` may just
        # have fixed what made them fail.
        to_stash = stash.deliver_stash(ctx.catalog, settings, now=math.inf)
        print(stash.summary(to_stash))
        stash_failed = to_stash.failed + to_stash.left
    stats.analysed, stats.failed, stats.frames = analysed.done, analysed.failed, analysed.frames
    stats.analyse_seconds = analysed.seconds
    if delivered is not None and not args.dry_run:
        stats.written, stats.write_failed = delivered.written, delivered.failed
    record_scan(ctx.catalog, stats)
    code = _summary(ctx, roots, pipeline, analysed, delivered, args.dry_run)
    return EXIT_FAILURES if stash_failed else code


def _analyse(pipeline: Pipeline) -> AnalyzeReport:
    total = pipeline.pending_count()
    with tqdm(total=total, unit="file", disable=not sys.stderr.isatty(), leave=False) as bar:
        return pipeline.run(progress=bar.update)


def _cluster(ctx: Context) -> None:
    from tagd.people.cluster import after_scan

    report = after_scan(ctx.catalog, ctx.settings)
    if report is not None and report.new:
        print(
            f"faces: {report.new} new, {report.assigned} joined people "
            f"({report.created} new people); {report.waiting} waiting: see `tagd people list`"
        )

def _deliver(ctx: Context, dry_run: bool, roots: list[str]) -> DeliveryReport:
    def show(change: XmpChange) -> None:
        if dry_run:
            print(f"would update {change.sidecar}")
            for tag in change.added:
                print(f"  + {tag}")
            for tag in change.removed:
                print(f"  - {tag}")
            for region in change.regions_added:
                print(f"  + face region {region}")
            for region in change.regions_removed:
                print(f"  - face region {region}")

    # The paths this scan was given count as library roots for its writes. now=inf:
    # every queued write, also those backing off after a failure (a read-only folder
    # or a full disk fixed since); the daemon's retry timer keeps the backoff.
    return deliver_xmp(
        ctx.catalog, ctx.settings, dry_run=dry_run, on_change=show, roots=roots, now=math.inf
    )


def _print_index(r: IndexReport) -> None:
    print(
        f"indexed {r.seen} files: {r.new} new, {r.changed} changed, {r.moved} moved, "
        f"{r.deleted} deleted"
    )
    for problem in r.problems[:MAX_LISTED]:
        print(f"  warning: {problem}", file=sys.stderr)


def _summary(
    ctx: Context,
    roots: list[str],
    pipeline: Pipeline,
    a: AnalyzeReport,
    d: DeliveryReport | None,
    dry_run: bool,
) -> int:
    rate = a.done / a.seconds if a.seconds > 0 else 0.0
    print(
        f"analysed {a.done} files ({a.frames} frames) in {a.seconds:.1f} s ({rate:.1f} files/s); "
        f"{a.failed} failed"
    )
    if a.unsettled:
        print(
            f"{len(a.unsettled)} files changed while tagd read them (still being copied?): "
            "not recorded; the next scan analyses them"
        )
        for path in a.unsettled[:MAX_LISTED]:
            print(f"  {path}")
    if d is not None:
        verb = "would change" if dry_run else "written"
        count = len(d.changes) if dry_run else d.written
        print(f"sidecars {verb}: {count}; failed: {d.failed}")
        if d.vanished:
            print(f"  {d.vanished} files were deleted meanwhile: no sidecar for them")
        for _path, reason in d.errors[:MAX_LISTED]:
            print(f"  {reason}", file=sys.stderr)
        if d.failed:
            print(
                f"  {d.failed} sidecar writes stay queued: retried by the next `tagd scan` "
                "(by `tagd run` after a backoff); "
                "for a library tagd must not write to, set [xmp] enabled = false",
                file=sys.stderr,
            )
    errors = [r for r in ctx.catalog.records(pipeline.shas, roots) if r.status == "error"]
    for record in errors[:MAX_LISTED]:
        print(f"  error: {record.path}: {record.error}", file=sys.stderr)
    if len(errors) > MAX_LISTED:
        print(f"  ... and {len(errors) - MAX_LISTED} more: see `tagd status`", file=sys.stderr)
    return EXIT_FAILURES if errors or (d and d.failed) else EXIT_OK
