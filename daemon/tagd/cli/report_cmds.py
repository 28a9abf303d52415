"""Read-only views of the catalog: `tagd status`, `tagd tags FILE`, `tagd search`."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.cli.context import EXIT_FAILURES, EXIT_OK, Context, UsageError
from tagd.paths import shown
from tagd.service.stats import LAST_SCAN, get_json, status_lines
from tagd.words import count

MAX_FAILED_WRITES = 20  # lines; the rest is counted


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("status", help="counts by state; files in error with their reasons")
    p.set_defaults(handler=status)
    p = verbs.add_parser("tags", help="a file's tags with scores and where they came from")
    p.add_argument("file")
    p.set_defaults(handler=tags)
    p = verbs.add_parser(
        "search", help="find files by words (tags, text in them, CLIP) and filters"
    )
    p.add_argument("words", nargs="*", help="words to look for in tags and recognised text")
    p.add_argument("--tag", help="only files with this tag (AI|Objects|dog, or its last part)")
    p.add_argument("--person", help="only files showing this named person")
    p.add_argument("--kind", choices=("image", "video"), help="only images or only videos")
    p.add_argument("--path", metavar="PREFIX", help="only files in this folder")
    p.add_argument("--limit", type=int, default=50, help="at most this many results (50)")
    p.add_argument("--json", action="store_true", help="one JSON array of results")
    p.set_defaults(handler=search)


def status_report(
    catalog: Catalog, analyzers: dict[str, str], state_dir: Path, now: float | None = None
) -> dict[str, Any]:
    """What `tagd status` shows, as data (the HTTP API's /status returns it as is)."""
    tally = catalog.status_counts(analyzers)
    by_state: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    for (kind, state), n in tally.items():
        by_state[state] += n
        by_kind[kind] += n
    counts = catalog.counts()
    return {
        # Shown as every report prints them: a name that is not UTF-8 has \xNN in it.
        "catalog": shown(catalog.path),
        "files": {
            "total": sum(tally.values()),
            "images": by_kind["image"],
            "videos": by_kind["video"],
            "ok": by_state["ok"],
            "pending": by_state["pending"],
            "error": by_state["error"],
        },
        "detections": counts["detections"],
        "tags": counts["tags"],
        "queued_writes": counts["outbox"],
        "writes": {
            sink: {"queued": queued, "failed": failed, "next_due": due}
            for sink, (queued, failed, due) in sorted(catalog.outbox_by_sink().items())
        },
        # The daemon, schedule, last scan and throughput, worded as `tagd status` says them.
        "service": status_lines(catalog, state_dir, now),
        "last_scan": get_json(catalog, LAST_SCAN) or None,
        "errors": [
            {"path": shown(r.path), "error": r.error} for r in catalog.records_in_error(analyzers)
        ],
        "failed_writes": [
            {"path": shown(path), "sink": sink, "attempts": attempts, "error": error}
            for path, sink, attempts, error in catalog.outbox_errors()
        ],
    }


def status(ctx: Context, args: argparse.Namespace) -> int:
    report = status_report(ctx.catalog, ctx.analyzer_shas(), ctx.state_dir)
    files = report["files"]
    print(f"catalog: {report['catalog']}")
    print(
        f"files: {files['total']} ({count(files['images'], 'image')}, "
        f"{count(files['videos'], 'video')}): "
        f"{files['ok']} ok, {files['pending']} pending, {files['error']} error"
    )
    print(
        f"detections: {report['detections']}; tags: {report['tags']}; "
        f"queued writes: {report['queued_writes']}"
    )
    print(f"queue: {count(files['pending'], 'file')} to analyse, {_writes(report['writes'])}")
    for line in report["service"]:
        print(line)
    errors = report["errors"]
    if errors:
        print("files in error:")
        for e in errors:
            print(f"  {e['path']}: {e['error']}")
    failed_writes = report["failed_writes"]
    if failed_writes:
        print("writes waiting for a retry:")
        # Stash down for a day means every file waits: the first ones say why.
        for w in failed_writes[:MAX_FAILED_WRITES]:
            print(f"  {w['sink']} {w['path']} (attempt {w['attempts']}): {w['error']}")
        if len(failed_writes) > MAX_FAILED_WRITES:
            print(f"  ... and {len(failed_writes) - MAX_FAILED_WRITES} more")
    return EXIT_FAILURES if errors or failed_writes else EXIT_OK


def _writes(by_sink: dict[str, dict[str, Any]]) -> str:
    """'3 writes (xmp 1, stash 2: 2 waiting for a retry, next at 12:03)'."""
    total = sum(w["queued"] for w in by_sink.values())
    parts = []
    for sink, w in sorted(by_sink.items()):
        part = f"{sink} {w['queued']}"
        if w["failed"]:
            due = w["next_due"]
            when = time.strftime("%H:%M", time.localtime(due)) if due else "now"
            part += f": {w['failed']} waiting for a retry, next at {when}"
        parts.append(part)
    return f"{total} writes" + (f" ({'; '.join(parts)})" if parts else "")


def tags(ctx: Context, args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    found = ctx.catalog.file_by_path(path)
    if found is None:
        raise UsageError(f"{path} is not in the catalog; run `tagd scan` on its folder first")
    if found.error:
        print(f"{path}: error: {found.error}")
        return EXIT_FAILURES
    if found.content_id is None:
        print(f"{path}: not analysed yet")
        return EXIT_OK
    record = next(iter(ctx.catalog.records(ctx.analyzer_shas(), [path])))
    print(f"{path}: {record.status}" + (f": {record.error}" if record.error else ""))
    for tag in ctx.catalog.tags(found.content_id):
        ranges = ", ".join(f"{s.start:.1f}-{s.end:.1f}s" for s in tag.segments)
        where = f" at {ranges}" if ranges else ""  # videos: where the tag holds
        print(f"  {tag.name}  {tag.score:.2f}  (from {tag.source}){where}")
    for d in ctx.catalog.detections(found.content_id):
        at = f" at {d.t:.1f}s" if d.t is not None else ""
        box = ", ".join(f"{v:.0f}" for v in d.box or ())  # whole-image findings have none
        said = f" {d.text!r}" if d.text else ""
        print(f"    {d.label}{said} {d.score:.2f} [{box}]{at}")
    return EXIT_FAILURES if record.status == "error" else EXIT_OK


def search(ctx: Context, args: argparse.Namespace) -> int:
    from tagd.search import Filters
    from tagd.search import search as run_search

    query = " ".join(args.words)
    filters = Filters(args.tag, args.person, args.kind, args.path)
    if not query.strip() and not any(vars(filters).values()):
        raise UsageError("give words to search for, or a filter (--tag, --person, --kind, --path)")
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    hits = run_search(ctx.catalog, ctx.settings, ctx.models_dir, query, filters, args.limit)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=1))
    else:
        for h in hits:
            why = "; ".join(f"{m['source']}: {m['value']}" for m in h.matches)
            print(f"{h.score:.2f}  {h.path}" + (f"  ({why})" if why else ""))
    return EXIT_OK if hits else EXIT_FAILURES
