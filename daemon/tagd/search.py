"""`tagd search`: rank files by words, from tags, recognised text and CLIP.

Three kinds of evidence, each scored in [0, 1] and added per file:

- tags: a query word (or the whole query) equal to a tag's leaf or full path,
  or to a label whose tag has an alias (`person` finds `AI|Objects|people`);
  it scores the tag's score;
- text: an FTS5 match over OCR text (every word, prefix-matched, OR-ed so a
  partial match still ranks), bm25 mapped to [0, 1) by -r / (1 - r);
- CLIP: when a CLIP model is installed and image embeddings are stored
  (sqlite-vec table `vec_clip`), the query's text embedding against them;
  the cosine similarity is the score.

Filters (tag, person, kind, path prefix) restrict the files before ranking.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.paths import shown

log = logging.getLogger(__name__)
CLIP_ANALYZER = "clip"  # the analyzer whose embeddings live in vec_clip
CLIP_K = 200


@dataclass
class Filters:
    tag: str | None = None
    person: str | None = None
    kind: str | None = None
    path: str | None = None


@dataclass
class Hit:
    path: str
    kind: str
    score: float = 0.0
    matches: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: str, value: str, score: float) -> None:
        self.score += score
        self.matches.append({"source": source, "value": value, "score": round(score, 4)})

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": shown(self.path),  # JSON is UTF-8: a non-UTF-8 name's bytes as \xNN
            "kind": self.kind,
            "score": round(self.score, 4),
            "matches": self.matches,
        }


def terms(query: str) -> list[str]:
    return [t for t in re.split(r"\s+", query.strip().casefold()) if t]


def fts_query(query: str) -> str | None:
    """Every word as a quoted FTS5 string (no operator injection), OR-ed, prefix-matched."""
    words = re.findall(r"\w+", query.casefold())
    if not words:
        return None
    return " OR ".join(f'"{w}"*' if len(w) >= 3 else f'"{w}"' for w in words)


def candidates(catalog: Catalog, filters: Filters) -> dict[int, list[tuple[str, str]]]:
    """content id -> [(path, kind)] of the analysed files passing every filter."""
    under = str(Path(filters.path).expanduser().absolute()) if filters.path else None
    return catalog.search_candidates(
        kind=filters.kind, under=under, tag=filters.tag, person=filters.person
    )


def aliases(settings: Settings) -> dict[str, str]:
    """label -> its tag's leaf name, where a rule renames it."""
    rules = settings.tags.objects.labels
    return {label.casefold(): r.name.casefold() for label, r in rules.items() if r.name}


def tag_scores(
    catalog: Catalog, content_ids: set[int], words: list[str], renamed: dict[str, str]
) -> dict[int, list[tuple[str, float]]]:
    """content id -> [(tag, score)] for tags whose leaf or path a word names."""
    wanted = set(words) | {renamed[w] for w in words if w in renamed}
    out: dict[int, list[tuple[str, float]]] = {}
    for cid, name, score in catalog.all_tags():
        if cid not in content_ids:
            continue
        lower = name.casefold()
        if lower in wanted or lower.rsplit("|", 1)[-1] in wanted:
            out.setdefault(cid, []).append((name, score))
    return out


def text_scores(
    catalog: Catalog, content_ids: set[int], query: str, limit: int
) -> dict[int, tuple[str, float]]:
    """content id -> (best matching line, score in [0, 1)) from the FTS5 index, by bm25."""
    match = fts_query(query)
    if match is None:
        return {}
    out: dict[int, tuple[str, float]] = {}
    for cid, text, rank in catalog.text_matches(match, max(limit * 20, 200)):
        if cid in content_ids and cid not in out:  # rows come best first
            out[cid] = (text, -rank / (1 - rank))
    return out


def clip_scores(
    catalog: Catalog, settings: Settings, models_dir: Path, query: str
) -> dict[int, float]:
    """content id -> best cosine similarity of its CLIP image embeddings to the query.

    Empty unless both a CLIP model is installed and image embeddings are stored.
    """
    if not catalog.has_vectors(CLIP_ANALYZER):
        return {}
    from tagd.runtime.clip import ClipModel
    from tagd.runtime.manifest import ModelError, default_for, load_manifest

    try:
        spec = default_for(load_manifest(models_dir), "clip")
        if spec is None:
            return {}
        model = ClipModel(
            spec, models_dir, backend=settings.runtime.backend, threads=settings.runtime.threads
        )
        vector = model.encode_texts([query])[0]
    except ModelError as exc:
        log.warning("CLIP text search is off: %s", exc)
        return {}
    out: dict[int, float] = {}
    nearest = catalog.nearest(CLIP_ANALYZER, vector, CLIP_K)
    if not nearest:
        return out
    ids = {det: dist for det, dist in nearest}
    for det, cid in catalog.detection_contents(list(ids)).items():
        cosine = 1 - ids[det] ** 2 / 2  # both sides are unit vectors
        out[cid] = max(out.get(cid, -1.0), cosine)
    return out


def search(
    catalog: Catalog,
    settings: Settings,
    models_dir: Path,
    query: str,
    filters: Filters,
    limit: int = 50,
) -> list[Hit]:
    files = candidates(catalog, filters)
    ids = set(files)
    hits: dict[int, Hit] = {}

    def hit(cid: int) -> Hit:
        if cid not in hits:
            path, kind = files[cid][0]
            hits[cid] = Hit(path, kind)
        return hits[cid]

    words = terms(query)
    if not words:
        # Filters only: every file passing them, best --tag evidence first.
        scores = tag_scores(catalog, ids, terms(filters.tag or ""), {}) if filters.tag else {}
        for cid in ids:
            h = hit(cid)
            for name, score in scores.get(cid, []):
                h.add("tag", name, score)
    else:
        phrase = " ".join(words)
        for cid, found in tag_scores(catalog, ids, [*words, phrase], aliases(settings)).items():
            for name, score in found:
                hit(cid).add("tag", name, score)
        for cid, (text, score) in text_scores(catalog, ids, query, limit).items():
            hit(cid).add("text", text, score)
        for cid, score in clip_scores(catalog, settings, models_dir, query).items():
            if cid in ids:
                hit(cid).add("clip", query, score)
    out = []
    for cid, h in hits.items():
        out.append(h)
        for path, kind in files[cid][1:]:  # copies of one content: each file is a result
            out.append(Hit(path, kind, h.score, list(h.matches)))
    out.sort(key=lambda h: (-h.score, h.path))
    return out[:limit]
