"""Teach a tag by example: a few photos of something the models do not know
("grandma's house", "our boat"), optionally a few that are not it, and tagd
finds it in the whole library without running a model.

Every photo and video frame keeps a general image embedding (the concepts
classifier's pooled features, int8; tagd.embedding), and CLIP's once a CLIP
model is installed: a taught tag reads CLIP's when they cover the library as
well (embedding_source), the general ones otherwise. A taught tag is a
direction in that space: from the library's mean (a fixed sample of it)
towards the mean of its examples, pushed away from its counter-examples
(Rocchio), scored by cosine. On the dev sets it ranks as well as a logistic
regression and, unlike one, does not latch onto what a few examples share by
chance (bench/teach.py). The score is calibrated per tag: 0.5 lies halfway
between the least sure example, scored without it, and the library's top
scores. The user's review decisions on the tag join its examples (accepted:
an example, rejected: a counter-example), so each one refines it.
Applying it is one matrix product over the stored embeddings, block by block
(100,000 photos: about a second, bench/teach.py); each file's score is stored
as a finding of the `taught` analyzer and becomes a tag by [tags.taught]'s
rules, through the same derive-and-queue path as every other tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagd.analyzers.taught import NAME as SOURCE
from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.embedding import EMBEDDING, embedding_floats
from tagd.policy.apply import derive_and_queue
from tagd.policy.rules import tag_path
from tagd.policy.tags import TagPolicy
from tagd.records import Detection
from tagd.sinks.select import enabled_sinks

CLIP = "clip"
BACKGROUND = 400  # library photos standing in for "not it"
COUNTER_WEIGHT = 0.5  # Rocchio's: how far counter-examples push the direction away
FLOOR = 0.2  # scores kept below the tag's threshold: the review page's candidates
LOO_MAX = 10  # examples scored left out, for the calibration
LIBRARY_PERCENTILE = 99  # ...against this percentile of the library's scores
MIN_SCALE = 0.02  # cosine units
MAX_NAME = 100
MODEL = "fitted"  # stands for a model sha: taught scores change when re-applied, not by model


@dataclass(frozen=True)
class Source:
    """Whose stored embeddings a taught tag reads: (analyzer, label of the
    findings that carry them; None: every one with a vector)."""

    analyzer: str
    label: str | None


DEFAULT_SOURCE = Source("concepts", EMBEDDING)


def embedding_source(catalog: Catalog) -> Source:
    """CLIP's embeddings once they cover the library as well as the general ones
    (a CLIP model installed and the library scanned with it), else the general
    embedding every photo keeps."""
    clip = catalog.embedded_contents(CLIP)
    if clip and clip >= catalog.embedded_contents(DEFAULT_SOURCE.analyzer):
        return Source(CLIP, None)
    return DEFAULT_SOURCE


def as_floats(stored: np.ndarray) -> np.ndarray:
    """Stored embeddings as float32: int8 ones back on their scale, floats as they are."""
    if stored.dtype == np.int8:
        return embedding_floats(stored)
    return np.asarray(stored, np.float32)


class TeachError(ValueError):
    """The tag cannot be taught as asked; the message says why."""


@dataclass(frozen=True)
class Classifier:
    """Cosine to a direction in the embedding space, centred on the library's
    mean, turned into a probability: sigmoid((cosine - centre) / scale)."""

    direction: np.ndarray  # float32[dim], unit length
    mean: np.ndarray  # float32[dim]: the library sample's, subtracted first
    centre: float
    scale: float


def cosines(x: np.ndarray, mean: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Cosines of the rows of x, less `mean`, to unit `directions` (dim x k), in
    one matrix product: |x - mean|^2 = |x|^2 - 2 x.mean + |mean|^2."""
    both = x @ np.concatenate([directions, mean[:, None]], axis=1)
    norms = np.sqrt(np.maximum((x * x).sum(axis=1) - 2 * both[:, -1] + float(mean @ mean), 1e-12))
    return (both[:, :-1] - (mean @ directions)[None, :]) / norms[:, None]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


@dataclass
class Taught:
    name: str
    tag: str  # the full tag
    examples: int
    counter: int
    files: int = 0  # files that have the tag now


def check_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME or "|" in name:
        raise TeachError(
            f"tag name {name!r}: give 1-{MAX_NAME} characters, without '|' "
            "(it goes under [tags.taught] parent)"
        )
    return name


def teach(
    catalog: Catalog,
    settings: Settings,
    name: str,
    examples: Sequence[int],
    counter: Sequence[int] = (),
) -> Taught:
    """Store the tag's examples (content ids), fit it and apply it to every file
    (call outside a transaction). TeachError for a bad name or examples without
    stored embeddings."""
    name = check_name(name)
    examples, counter = sorted(set(examples)), sorted(set(counter) - set(examples))
    if not examples:
        raise TeachError("give at least one example (a photo of what the tag is)")
    source = embedding_source(catalog)
    found = catalog.embeddings_of(source.analyzer, source.label, [*examples, *counter])
    missing = [c for c in [*examples, *counter] if c not in found]
    if missing:
        raise TeachError(
            f"content ids {missing[:10]}: no image embedding stored (not analysed yet, "
            f"or analysed by a tagd or model without them: rescan with [{source.analyzer}] on)"
        )
    with catalog.transaction():
        catalog.save_taught(name, examples, counter)
    apply_all(catalog, settings)
    return describe(catalog, settings, name)


def describe(catalog: Catalog, settings: Settings, name: str) -> Taught:
    taught = next((t for t in catalog.taught_tags() if t.name == name), None)
    if taught is None:
        raise TeachError(f"no taught tag {name!r}")
    tag = full_tag(settings, name)
    files = catalog.count_tagged(tag)
    return Taught(name, tag, len(taught.examples), len(taught.counter), files)


def full_tag(settings: Settings, name: str) -> str:
    group = settings.tags.taught
    rule = group.labels.get(name)
    label = rule.name if rule is not None and rule.name else name
    parent = rule.parent if rule is not None and rule.parent is not None else group.parent
    return tag_path(settings.tags.root, parent, label)


def forget(catalog: Catalog, settings: Settings, name: str) -> bool:
    """Remove a taught tag from every file and forget it."""
    with catalog.transaction():
        gone = catalog.forget_taught(name)
    if gone:
        apply_all(catalog, settings)
    return gone


def fit(
    catalog: Catalog,
    settings: Settings,
    examples: Sequence[int],
    counter: Sequence[int],
    source: Source = DEFAULT_SOURCE,
) -> Classifier:
    """The classifier from these examples and counter-examples (content ids): the
    direction of the examples' mean (Rocchio: less part of the counter-examples')
    from the library's mean, its cosine calibrated so that 0.5 lies halfway
    between the least sure example left out of the mean and the library's top
    scores."""
    taken = set(examples) | set(counter)
    sampled = catalog.sample_embedded(source.analyzer, source.label, BACKGROUND)
    sample = [c for c in sampled if c not in taken]
    found = catalog.embeddings_of(source.analyzer, source.label, [*examples, *counter, *sample])
    positives = [as_floats(found[c]) for c in examples if c in found]
    if not positives:
        raise TeachError("none of the examples has a stored image embedding")
    negatives = [as_floats(found[c]) for c in counter if c in found]
    library = [as_floats(found[c][:1]) for c in sample if c in found]
    rows = library or positives
    mean = np.concatenate(rows).mean(axis=0).astype(np.float32)
    direction = _direction(positives, negatives, mean)
    # Each example against the direction made without it (up to LOO_MAX of them).
    held: list[float] = []
    for i in range(min(len(positives), LOO_MAX)) if len(positives) > 1 else ():
        without = _direction(positives[:i] + positives[i + 1 :], negatives, mean)
        held += cosines(positives[i], mean, without[:, None])[:, 0].tolist()
    if not held:
        held = cosines(positives[0], mean, direction[:, None])[:, 0].tolist()
    others = cosines(np.concatenate(library), mean, direction[:, None])[:, 0] if library else [0.0]
    # Of the rules tried on the dev sets (bench/teach.py), the best F1.
    high, low = float(np.min(held)), float(np.percentile(others, LIBRARY_PERCENTILE))
    return Classifier(direction, mean, (high + low) / 2, max(abs(high - low) / 4, MIN_SCALE))


def _direction(
    positives: list[np.ndarray], negatives: list[np.ndarray], mean: np.ndarray
) -> np.ndarray:
    """Unit vector: the mean of the examples' unit vectors (from `mean`), less
    COUNTER_WEIGHT times the counter-examples' mean."""

    def unit_mean(rows: list[np.ndarray]) -> np.ndarray:
        x = np.concatenate(rows) - mean
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x.mean(axis=0)

    d = unit_mean(positives)
    if negatives:
        d = d - COUNTER_WEIGHT * unit_mean(negatives)
    return (d / max(float(np.linalg.norm(d)), 1e-12)).astype(np.float32)


def apply_all(catalog: Catalog, settings: Settings) -> list[int]:
    """Score every file with every taught tag and store what changed (files
    whose taught scores moved are derived again and queued for the sinks);
    returns the contents queued."""
    taught = catalog.taught_tags()
    verdicts = catalog.taught_verdicts(SOURCE)
    source = embedding_source(catalog)
    classifiers = []
    for t in taught:
        tag = full_tag(settings, t.name)
        accepted = [c for c, v in verdicts.get(tag, {}).items() if v == "accept"]
        rejected = [c for c, v in verdicts.get(tag, {}).items() if v == "reject"]
        examples = sorted(set(t.examples) | set(accepted))
        counter = sorted((set(t.counter) | set(rejected)) - set(examples))
        classifiers.append((t.name, fit(catalog, settings, examples, counter, source)))
    wanted = _scores(catalog, classifiers, source)
    stored = catalog.taught_detections(SOURCE)
    changed = [
        cid
        for cid in sorted(set(wanted) | set(stored))
        if wanted.get(cid, []) != [(label, t, round(s, 4)) for label, t, s in stored.get(cid, [])]
    ]
    policy = TagPolicy(settings.tags)
    with catalog.transaction():
        for cid in changed:
            found = [Detection(label, score, None, t) for label, t, score in wanted.get(cid, [])]
            catalog.save_analysis(cid, SOURCE, MODEL, found)
        return derive_and_queue(
            catalog, policy, enabled_sinks(settings), {cid: [SOURCE] for cid in changed}
        )


def _scores(
    catalog: Catalog, classifiers: list[tuple[str, Classifier]], source: Source
) -> dict[int, list[tuple[str, float | None, float]]]:
    """content id -> (taught name, video time, score) at or above FLOOR, sorted."""
    out: dict[int, list[tuple[str, float | None, float]]] = {}
    if not classifiers:
        return out
    directions = np.stack([c.direction for _, c in classifiers], axis=1)
    centres = np.array([c.centre for _, c in classifiers], np.float32)
    scales = np.array([c.scale for _, c in classifiers], np.float32)
    mean = classifiers[0][1].mean  # the same library sample for every tag
    names = [n for n, _ in classifiers]
    for block in catalog.embedding_blocks(source.analyzer, source.label):
        probs = _sigmoid((cosines(as_floats(block.values), mean, directions) - centres) / scales)
        rows, cols = np.nonzero(probs >= FLOOR)
        for r, k in zip(rows.tolist(), cols.tolist(), strict=True):
            cid = int(block.contents[r])
            out.setdefault(cid, []).append((names[k], block.times[r], round(float(probs[r, k]), 4)))
    return {cid: sorted(found, key=_order) for cid, found in out.items()}


def _order(item: tuple[str, float | None, float]) -> tuple[str, float]:
    label, t, _ = item
    return label, -1.0 if t is None else t
