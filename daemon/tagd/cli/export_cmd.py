"""`tagd export`: every file's status, tags and raw findings as JSONL or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tagd.catalog.catalog import Catalog, FileRecord
from tagd.catalog.connect import DiskFullError, disk_full
from tagd.cli.context import EXIT_OK, Context
from tagd.media.phash import to_unsigned
from tagd.paths import shown
from tagd.people.store import export_faces


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


def _text(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    return [
        {"text": d.text, "score": d.score, "box": list(d.box or ())}
        | ({"t": d.t} if d.t is not None else {})
        for d in catalog.detections(content_id, "ocr")
    ]


def _segments(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    # Stored at derive time with the tags (policy/segments.py), in timeline order.
    ranges = [
        {"tag": t.name, "start": s.start, "end": s.end, "score": s.score}
        for t in catalog.tags(content_id)
        for s in t.segments
    ]
    return sorted(ranges, key=lambda r: (r["start"], r["tag"]))


def _concepts(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    # The raw ImageNet classes; the taxonomy's tags are under "tags".
    return [
        {"label": d.label, "score": d.score} | ({"t": d.t} if d.t is not None else {})
        for d in catalog.detections(content_id, "concepts")
    ]


def _nsfw(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    return [
        {"label": d.label, "score": d.score, "box": list(d.box or ())}
        | ({"t": d.t} if d.t is not None else {})
        for d in catalog.detections(content_id, "nsfw")
    ]


def _phash(catalog: Catalog, content_id: int) -> str | None:
    """The plain 64-bit pHash as 16 hex digits (null when not hashed)."""
    row = catalog.con.execute(
        "SELECT phash FROM hashes WHERE content_id = ?", (content_id,)
    ).fetchone()
    return f"{to_unsigned(row[0]):016x}" if row else None


# Export key -> its value for a content. Each analyzer adds its own key here.
KEYS: dict[str, Callable[[Catalog, int], Any]] = {
    "objects": _objects,
    "segments": _segments,
    "text": _text,
    "concepts": _concepts,
    "nsfw": _nsfw,
    "phash": _phash,
    "faces": export_faces,
}


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
