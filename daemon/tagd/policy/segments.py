"""Video tags as time ranges, the way Stash's AI tagging plugins do it.

A video's frames are sampled every ``interval`` seconds and each one goes
through the analyzers, so a label has a score per sampled frame. For a video,
"the best frame passes the threshold" (the photo rule) tags a whole film
after one wrong frame; instead, per tag:

1. **Hits.** A sampled frame is a hit when one of the tag's detections in it
   scores at least the label's threshold (several boxes in one frame are one
   hit, with the best score; labels sharing an alias share one timeline).
2. **Ranges.** A frame stands for the time until the next sample, so a run
   of hits spans ``[first hit, last hit + interval]``, clamped to the
   duration when it is known. Two hits stay in one range when the time
   without a hit between them, ``t_next - (t_prev + interval)``, is at most
   ``max_gap`` (plus a little slack, a quarter interval but at most 0.5 s:
   frames are "the first frame at or after" each sample time, so times jitter
   by up to a frame).
   Measuring the gap from the end of a frame's span, not from hit to hit, means
   consecutive hits always merge whatever the interval, and ``max_gap`` keeps
   its meaning ("seconds unseen") when a profile changes the interval.
3. **Drop short ranges**: shorter than ``min_segment`` seconds.
4. **File tag** when the kept ranges add up to at least ``min_total`` seconds.
   Its score, like each range's, is the best frame score in it (the same
   meaning as a photo's tag score: the strongest evidence; a mean would drop
   as a range grows by frames at the threshold's edge, which says nothing
   about whether the tag holds).

Short clips: a 3 s clip can never show 4 s of anything, so ``min_segment``
and ``min_total`` are capped at ``min_fraction`` of the duration. When the
container gives no duration, the end of the last sampled frame (the latest
detection of any label, plus one interval) stands in for it: a lower bound,
so short unknown-length clips are judged leniently rather than never tagged.

Ranges are kept only for tags the file gets: a range is a claim that the tag
holds there, and ``min_total`` is the noise filter that makes that claim.

Rules come from ``[tags.video]``, overridden per group (``[tags.objects]``)
and per label (``[tags.objects.labels.person]``): ``max_gap``,
``min_segment``, ``min_total``. Results are stored with the tags (the catalog's
``tags.segments``), derived again whenever the tag policy changes, like tags.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tagd.config import DecodeSettings, TagGroupSettings
from tagd.records import Detection, Media, Segment, Tag

if TYPE_CHECKING:  # tags.py imports this module: no import cycle at run time
    from tagd.policy.tags import TagPolicy

# Slack on max_gap for sample times that miss their target by up to a frame:
# a fraction of the interval, capped so long intervals do not widen max_gap much.
_JITTER = 0.25
_JITTER_MAX_S = 0.5
_T_DIGITS = 6  # frames compare by time; rounding absorbs float noise from SQLite


@dataclass(frozen=True)
class SegmentRules:
    max_gap: float
    min_segment: float
    min_total: float
    min_fraction: float


def rules_for(policy: TagPolicy, group: TagGroupSettings, labels: Iterable[str]) -> SegmentRules:
    """Rules for a tag from its labels' overrides, else the group's, else [tags.video].

    Labels sharing an alias share one timeline; for each key the first of them (in
    sorted order) that sets it wins.
    """
    video = policy.settings.video
    rules = [group.labels[label] for label in sorted(labels) if label in group.labels]

    def pick(key: str) -> float:
        for source in (*rules, group):
            value = getattr(source, key, None)
            if value is not None:
                return float(value)
        return float(getattr(video, key))

    return SegmentRules(pick("max_gap"), pick("min_segment"), pick("min_total"), video.min_fraction)


def frame_interval(media: Media, detections: Sequence[Detection]) -> float:
    """Seconds between sampled frames: as recorded at analysis, else estimated.

    Catalogs from before the interval was recorded fall back to the typical
    spacing of the detection times, then to the default decode.video_interval.
    """
    if media.interval:
        return media.interval
    times = sorted({round(d.t or 0.0, 3) for d in detections})
    steps = [b - a for a, b in itertools.pairwise(times) if b - a > 1e-3]
    return statistics.median(steps) if steps else DecodeSettings().video_interval


def merge_hits(
    hits: Iterable[tuple[float, float]],
    interval: float,
    rules: SegmentRules,
    duration: float | None,
    extent: float | None = None,
) -> list[Segment]:
    """Ranges from (time, score) hits, already known to pass the threshold.

    ``duration`` clamps range ends (None: unknown, no clamp); ``extent`` is the
    length the short-clip cap is taken from (default: ``duration``). Returns the
    ranges that pass ``min_segment``, or none when they miss ``min_total``.
    """
    runs: list[list[float]] = []  # [start, last hit, best score]
    slack = min(_JITTER * interval, _JITTER_MAX_S)
    for t, score in sorted(hits):
        if runs and t - (runs[-1][1] + interval) <= rules.max_gap + slack:
            runs[-1][1] = t
            runs[-1][2] = max(runs[-1][2], score)
        else:
            runs.append([t, t, score])
    length = extent if extent is not None else duration
    min_segment, min_total = rules.min_segment, rules.min_total
    if length is not None:
        cap = rules.min_fraction * length
        min_segment, min_total = min(min_segment, cap), min(min_total, cap)
    segments = []
    for start, last, score in runs:
        end = last + interval
        if duration is not None and duration > start:  # a header may undercount
            end = min(end, duration)
        if end - start >= min_segment and end > start:
            segments.append(Segment(round(start, 3), round(end, 3), round(score, 4)))
    total = sum(s.end - s.start for s in segments)
    return segments if segments and total >= min_total - 1e-9 else []


def video_tags(
    policy: TagPolicy,
    group: TagGroupSettings,
    detections: Sequence[Detection],
    media: Media,
    source: str,
) -> list[Tag]:
    """Tags with their time ranges from one analyzer's per-frame detections.

    For every analyzer whose tags come from labels with thresholds (objects,
    NSFW body parts, concepts): call this for videos, keep the photo rule for
    images. ``group`` gives names, thresholds and rules; ``source`` is the
    analyzer's name, stored with the tags.
    """
    interval = frame_interval(media, detections)
    hits: dict[str, dict[float, float]] = {}  # tag name -> frame time -> best score
    labels: dict[str, set[str]] = {}
    for d in detections:
        rule = policy.rule(group, d.label)
        if d.score < rule.threshold or rule.tag is None:
            continue
        name = rule.tag
        t = round(d.t or 0.0, _T_DIGITS)
        frames = hits.setdefault(name, {})
        frames[t] = max(frames.get(t, -1.0), d.score)
        labels.setdefault(name, set()).add(d.label)
    extent = media.duration
    if extent is None and detections:
        extent = max(d.t or 0.0 for d in detections) + interval
    tags = []
    for name, frames in hits.items():
        rules = rules_for(policy, group, labels[name])
        segments = merge_hits(frames.items(), interval, rules, media.duration, extent)
        if segments:
            best = max(s.score for s in segments)
            tags.append(Tag(name, best, source, tuple(segments)))
    return sorted(tags, key=lambda t: t.name)


def ranged_tags(
    policy: TagPolicy,
    hits: dict[str, dict[float, float]],
    media: Media,
    detections: Sequence[Detection],
    source: str,
) -> list[Tag]:
    """Tags with time ranges from per-frame hits ({tag: {time: score}}) by the
    [tags.video] rules, for tag rules without per-label overrides (concepts,
    text, CLIP prompts)."""
    video = policy.settings.video
    rules = SegmentRules(video.max_gap, video.min_segment, video.min_total, video.min_fraction)
    interval = frame_interval(media, detections)
    extent = media.duration
    if extent is None:
        extent = max((d.t or 0.0 for d in detections), default=0.0) + interval
    tags = []
    for name, by_time in hits.items():
        segments = merge_hits(by_time.items(), interval, rules, media.duration, extent)
        if segments:
            best = round(max(s.score for s in segments), 4)
            tags.append(Tag(name, best, source, tuple(segments)))
    return sorted(tags, key=lambda t: t.name)
