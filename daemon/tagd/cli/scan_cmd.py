"""`tagd scan`: index the library, analyse what is new, write the results."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from tagd.cli.context import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Context, UsageError
from tagd.scan.index import IndexReport
from tagd.scan.roots import SKIPPED, usable_roots
from tagd.scan.run import ScanEvents, ScanOptions, ScanReport, checked_analyzers, run_scan
from tagd.service.lock import instance_lock
from tagd.words import count

if TYPE_CHECKING:
    from tagd.people.cluster import ClusterReport
    from tagd.pipeline import AnalyzeReport

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
    from tagd.scan.stash_source import files_from_stash
    from tagd.sinks.stash.client import StashError
    from tagd.sinks.stash.deliver import make_client

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
    # Check the models before touching anything, so a missing one fails fast.
    analyzers = None if args.index_only else checked_analyzers(ctx.settings, ctx.models_dir)
    options = ScanOptions(
        "tagd scan",
        dry_run=args.dry_run,
        from_stash=args.from_stash,
        # Every queued write, backing off or not: whoever runs `tagd scan` may just
        # have fixed what made them fail (a read-only folder, a full disk, Stash
        # down); the daemon's retry timer keeps the backoff.
        retry_all=True,
        # The paths this scan was given count as library roots for its writes.
        write_roots=roots,
    )
    with _Printed() as events:
        report = run_scan(
            ctx.catalog, ctx.settings, roots, analyzers, options=options, events=events
        )
    if report.analysis is None:
        return EXIT_OK
    return _summary(ctx, roots, report, args.dry_run)


class _Printed(ScanEvents):
    """A scan as `tagd scan` shows it: a line per step, a progress bar on a terminal."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.shown = 0

    def __enter__(self) -> _Printed:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def indexed(self, report: IndexReport) -> None:
        print(
            f"indexed {count(report.seen, 'file')}: {report.new} new, {report.changed} changed, "
            f"{report.moved} moved, {report.deleted} deleted"
        )
        for problem in report.problems[:MAX_LISTED]:
            print(f"  warning: {problem}", file=sys.stderr)

    def analysing(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, unit="file", disable=not sys.stderr.isatty(), leave=False)
        self.bar.update(done - self.shown)
        self.shown = done

    def analysed(self, report: AnalyzeReport) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def clustered(self, report: ClusterReport | None) -> None:
        if report is not None and report.new:
            print(
                f"faces: {report.new} new, {report.assigned} joined people "
                f"({count(report.created, 'new person')}); "
                f"{report.waiting} waiting: "
                "see `tagd people list`"
            )


def _summary(ctx: Context, roots: list[str], report: ScanReport, dry_run: bool) -> int:
    a = report.analysis
    assert a is not None
    rate = a.done / a.seconds if a.seconds > 0 else 0.0
    print(
        f"analysed {count(a.done, 'file')} ({count(a.frames, 'frame')}) in {a.seconds:.1f} s "
        f"({rate:.1f} files/s); "
        f"{a.failed} failed"
    )
    if a.unsettled:
        print(
            f"{count(len(a.unsettled), 'file')} changed while tagd read them "
            "(still being copied?): not recorded; the next scan analyses them"
        )
        for path in a.unsettled[:MAX_LISTED]:
            print(f"  {path}")
    if report.vlm is not None:
        v = report.vlm
        print(
            f"vlm: asked about {count(v.asked, 'file')} in {v.seconds:.1f} s"
            + (f"; {len(v.deferred)} left for the next scan" if v.deferred else "")
            + (f" ({v.stopped})" if v.stopped else "")
        )
        for path, why in v.deferred[:MAX_LISTED]:
            print(f"  {path}: {why}", file=sys.stderr)
    for sink, delivered in report.deliveries:
        out, err = sink.explain(delivered, dry_run)
        for line in out:
            print(line)
        for line in err:
            print(line, file=sys.stderr)
    errors = [r for r in ctx.catalog.records(report.shas, roots) if r.status == "error"]
    for record in errors[:MAX_LISTED]:
        print(f"  error: {record.path}: {record.error}", file=sys.stderr)
    if len(errors) > MAX_LISTED:
        print(f"  ... and {len(errors) - MAX_LISTED} more: see `tagd status`", file=sys.stderr)
    return EXIT_FAILURES if errors or report.queued else EXIT_OK
