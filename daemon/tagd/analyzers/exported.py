"""What `tagd export` shows of an analyzer's stored detections, by their shape.

Raw findings in the original's pixels; a video's carry their time `t`. The
tags derived from them are exported once for all analyzers, under "tags".
"""

from __future__ import annotations

from typing import Any

from tagd.analyzers.registry import Exporter
from tagd.catalog.catalog import Catalog
from tagd.records import Detection


def _at(d: Detection) -> dict[str, Any]:
    return {"t": d.t} if d.t is not None else {}


def boxes(analyzer: str) -> Exporter:
    """Labelled boxes (objects, body parts)."""

    def rows(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
        return [
            {"label": d.label, "score": d.score, "box": list(d.box or ())} | _at(d)
            for d in catalog.detections(content_id, analyzer)
        ]

    return rows


def labels(analyzer: str, skip: str | None = None) -> Exporter:
    """Whole-image class scores (no box); `skip`: a label that is no class (an
    embedding's carrier)."""

    def rows(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
        return [
            {"label": d.label, "score": d.score} | _at(d)
            for d in catalog.detections(content_id, analyzer)
            if d.label != skip
        ]

    return rows


def texts(analyzer: str) -> Exporter:
    """Recognised lines of text with their boxes."""

    def rows(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
        return [
            {"text": d.text, "score": d.score, "box": list(d.box or ())} | _at(d)
            for d in catalog.detections(content_id, analyzer)
        ]

    return rows
