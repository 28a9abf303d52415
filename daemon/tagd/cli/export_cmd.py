"""`tagd export`: every file's status, tags and raw findings as JSONL or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tagd.analyzers.registry import plugins
from tagd.catalog.catalog import Catalog
from tagd.catalog.connect import DiskFullError, disk_full
from tagd.cli.context import EXIT_OK, Context
from tagd.paths import shown
from tagd.records import FileRecord


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("export", help="write results as JSONL (one object per file) or CSV")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    p.set_defaults(handler=run)


def _segments(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    # Stored at derive time with the tags (policy/segments.py), in timeline order.
    ranges = [
        {"tag": t.name, "start": s.start, "end": s.end, "score": s.score}
        for t in catalog.tags(content_id)
        for s in t.segments
    ]
    return sorted(ranges, key=lambda r: (r["start"], r["tag"]))


def keys() -> dict[str, Callable[[Catalog, int], Any]]:
    """Export key -> its value for a content: the tags' time ranges, then each
    analyzer's own key (tagd.analyzers.registry), in the analyzers' order."""
    out: dict[str, Callable[[Catalog, int], Any]] = {"segments": _segments}
    for plugin in plugins():
        if plugin.export_key and plugin.export:
            out[plugin.export_key] = plugin.export
    return out


def file_results(catalog: Catalog, record: FileRecord) -> dict[str, Any]:
    """The export object of one file: status, tags, then one key per analyzer."""
    cid = record.content_id
    base = {
        # JSON and CSV are UTF-8: a name that is not shows its odd bytes as \xNN.
        "path": shown(record.path),
        "kind": record.kind,
        "status": record.status,
        "error": record.error,
        "width": record.width,
        "height": record.height,
        "duration": record.duration,
        "tags": [{"name": t.name, "score": t.score} for t in (catalog.tags(cid) if cid else [])],
    }
    return base | {key: (fn(catalog, cid) if cid else []) for key, fn in keys().items()}


def rows(ctx: Context) -> Iterator[dict[str, Any]]:
    for record in ctx.catalog.records(ctx.analyzer_shas()):
        yield file_results(ctx.catalog, record)


def write_jsonl(out: TextIO, items: Iterator[dict[str, Any]]) -> None:
    for item in items:
        out.write(json.dumps(item, ensure_ascii=False) + "\n")


def write_csv(out: TextIO, items: Iterator[dict[str, Any]]) -> None:
    writer = csv.writer(out)
    writer.writerow(["path", "kind", "status", "error", "tags", "objects"])
    for item in items:
        tags = "; ".join(f"{t['name']}:{t['score']:.2f}" for t in item["tags"])
        labels = "; ".join(sorted({o["label"] for o in item["objects"]}))
        writer.writerow(
            [item["path"], item["kind"], item["status"], item["error"] or "", tags, labels]
        )


def run(ctx: Context, args: argparse.Namespace) -> int:
    write = write_jsonl if args.format == "jsonl" else write_csv
    try:
        if args.output:
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                write(out, rows(ctx))
        else:
            write(sys.stdout, rows(ctx))
            sys.stdout.flush()
    except OSError as exc:
        if not disk_full(exc):
            raise
        # The output's disk, not the state directory's (the catalog is only read).
        raise DiskFullError(args.output or "standard output") from None
    return EXIT_OK
