"""`tagd export`: every file's status, tags and raw findings as JSONL or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tagd.catalog.catalog import Catalog, FileRecord
from tagd.cli.context import EXIT_OK, Context


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("export", help="write results as JSONL (one object per file) or CSV")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    p.set_defaults(handler=run)


def _objects(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    return [
        {"label": d.label, "score": d.score, "box": list(d.box or ())}
        | ({"t": d.t} if d.t is not None else {})
        for d in catalog.detections(content_id, "objects")
    ]


# Export key -> its value for a content. Each analyzer adds its own key here.
KEYS: dict[str, Callable[[Catalog, int], Any]] = {
    "objects": _objects,
}


def file_results(catalog: Catalog, record: FileRecord) -> dict[str, Any]:
    """The export object of one file: status, tags, then one key per analyzer."""
    cid = record.content_id
    base = {
        "path": record.path,
        "kind": record.kind,
        "status": record.status,
        "error": record.error,
        "width": record.width,
        "height": record.height,
        "duration": record.duration,
        "tags": [{"name": t.name, "score": t.score} for t in (catalog.tags(cid) if cid else [])],
    }
    return base | {key: (fn(catalog, cid) if cid else []) for key, fn in KEYS.items()}


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
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            write(out, rows(ctx))
    else:
        write(sys.stdout, rows(ctx))
    return EXIT_OK
