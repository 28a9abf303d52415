"""CLIP zero-shot tags, scored from stored image embeddings.

The clip analyzer stores one image embedding per photo (per video frame);
here each tag's prompts are embedded by the text tower (once per prompt and
process, cached), averaged into a tag vector and compared with the stored
embedding through ClipModel.probabilities. Changing prompts or thresholds
therefore re-derives tags without reading a photo or running the image tower.

`frame_scores` and `passing` are the per-frame rule the video time-range
aggregation can call on each frame's embedding.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from tagd.config import ClipTagSettings, PromptSet
from tagd.policy.label_names import unknown_labels
from tagd.policy.rules import LabelRule, group_rule
from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.runtime.clip import ClipModel

SOURCE = "clip"
log = logging.getLogger(__name__)


@cache
def shipped_prompts() -> tuple[tuple[str, ...], dict[str, PromptSet]]:
    """(background prompts, tag -> prompt set) from clip_prompts.toml."""
    text = resources.files("tagd.policy").joinpath("clip_prompts.toml").read_text("utf-8")
    data: dict[str, Any] = tomllib.loads(text)
    tags = {
        name: PromptSet(
            prompts=list(e["prompts"]), parent=e.get("parent"), threshold=e.get("threshold")
        )
        for name, e in data.get("tag", {}).items()
    }
    return tuple(data.get("background", ())), tags


def prompt_sets(settings: ClipTagSettings) -> dict[str, PromptSet]:
    """Shipped prompt sets with config's added (same name replaces)."""
    return {**shipped_prompts()[1], **settings.prompts}


def problems(settings: ClipTagSettings) -> list[str]:
    out = [
        f"tags.clip.prompts.{name}.prompts: give at least one prompt"
        for name, p in settings.prompts.items()
        if not [t for t in p.prompts if t.strip()]
    ]
    what = "not a CLIP prompt set (daemon/tagd/policy/clip_prompts.toml, [tags.clip.prompts])"
    out += unknown_labels("clip", settings.labels, prompt_sets(settings), what)
    return out


class TextEncoder:
    """A CLIP model's text side for tag derivation: prompt embeddings cached by text."""

    def __init__(self, model: ClipModel) -> None:
        self.model = model
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.prompts_encoded = 0  # how many prompts the text tower has run (for tests, stats)

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
            if missing:
                for p, e in zip(missing, self.model.encode_texts(missing), strict=True):
                    self._cache[p] = e
                self.prompts_encoded += len(missing)
            return np.stack([self._cache[p] for p in prompts])

    def class_vectors(self, sets: Sequence[Sequence[str]]) -> np.ndarray:
        """One L2-normalised mean embedding per prompt set (CLIP's prompt ensembling)."""
        flat = [p for s in sets for p in s]
        embeds = self.embed(flat)
        out, pos = [], 0
        for s in sets:
            mean = embeds[pos : pos + len(s)].mean(0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            pos += len(s)
        return np.stack(out).astype(np.float32)


# model name (the label of its stored findings) -> its text encoder; the clip
# analyzer registers its model when it is built, before anything is derived.
ENCODERS: dict[str, TextEncoder] = {}


def register(model: ClipModel) -> TextEncoder:
    encoder = ENCODERS.get(model.spec.name)
    if encoder is None or encoder.model.spec.sha256 != model.spec.sha256:
        encoder = ENCODERS[model.spec.name] = TextEncoder(model)
    return encoder


def _rules(
    root: str, settings: ClipTagSettings, sets: dict[str, PromptSet]
) -> dict[str, LabelRule]:
    return {
        name: group_rule(root, settings, name, own_parent=ps.parent, own_threshold=ps.threshold)
        for name, ps in sets.items()
    }


def frame_scores(
    encoder: TextEncoder, settings: ClipTagSettings, embeddings: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """(tag names, probabilities N x tags) for stored image embeddings (N x D)."""
    sets = prompt_sets(settings)
    names = list(sets)
    background = list(shipped_prompts()[0])
    groups = [sets[n].prompts for n in names] + ([background] if background else [])
    probs = encoder.model.probabilities(embeddings, encoder.class_vectors(groups))
    return names, probs[:, : len(names)]


def passing(
    root: str, settings: ClipTagSettings, names: Sequence[str], probs: np.ndarray
) -> dict[str, float]:
    """Best score per full tag path over the frames, for tags that reach their threshold."""
    rules = _rules(root, settings, prompt_sets(settings))
    best: dict[str, float] = {}
    for j, name in enumerate(names):
        rule = rules[name]
        if rule.tag is None:
            continue
        score = float(probs[:, j].max()) if len(probs) else 0.0
        if score >= rule.threshold and score > best.get(rule.tag, -1.0):
            best[rule.tag] = score
    return best


def derive(policy: Any, detections: Sequence[Detection], media: Media) -> list[Tag]:
    settings: ClipTagSettings = policy.settings.clip
    rows: dict[str, list[Detection]] = {}
    for d in detections:
        if d.vector is not None:
            rows.setdefault(d.label, []).append(d)
    hits: dict[str, dict[float, float]] = {}  # tag -> frame time -> best score
    for model_name, found in rows.items():
        encoder = ENCODERS.get(model_name)
        if encoder is None:
            # Only possible outside the pipeline (which builds the analyzer first).
            log.warning("clip: model %r is not built; its embeddings give no tags", model_name)
            continue
        names, probs = frame_scores(encoder, settings, np.stack([d.vector for d in found]))
        for i, d in enumerate(found):
            frame = passing(policy.settings.root, settings, names, probs[i : i + 1])
            t = round(d.t or 0.0, 6)
            for path, score in frame.items():
                by_time = hits.setdefault(path, {})
                by_time[t] = max(score, by_time.get(t, 0.0))
    if media.kind == "video":
        # Where in the video each prompt set holds, by the [tags.video] rules.
        from tagd.policy.segments import ranged_tags

        return ranged_tags(policy, hits, media, detections, SOURCE)
    tags = [Tag(path, round(max(by_time.values()), 4), SOURCE) for path, by_time in hits.items()]
    return sorted(tags, key=lambda t: t.name)
