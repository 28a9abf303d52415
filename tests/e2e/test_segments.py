"""Video time ranges: per-frame detections merged per tag (tagd.policy.segments),
stored with the tags, exported as `segments`, and a real clip end to end."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import VIDEOS, write_config

from tagd.catalog.catalog import Catalog
from tagd.config import (
    Settings,
    TagGroupSettings,
    TagRule,
    TagSettings,
    VideoTagSettings,
    parse_settings,
)
from tagd.pipeline import video_interval
from tagd.policy.segments import SegmentRules, frame_interval, merge_hits
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media, Segment, Tag

RULES = SegmentRules(max_gap=4.0, min_segment=2.0, min_total=4.0, min_fraction=0.25)


def frames(label: str, scores: dict[float, float]) -> list[Detection]:
    """One detection of `label` per sampled time."""
    return [Detection(label, s, (0.0, 0.0, 10.0, 10.0), t) for t, s in scores.items()]


def policy(**video: float) -> TagPolicy:
    labels = {
        "person": TagRule(min_total=10.0),
        "dog": TagRule(max_gap=0.0, min_segment=0.0),
        "cat": TagRule(name="pet"),
        "kitten": TagRule(name="pet", min_segment=5.0),
    }
    group = TagGroupSettings(labels=labels)
    return TagPolicy(TagSettings(objects=group, video=VideoTagSettings(**video)))


def video(duration: float | None = 60.0, interval: float | None = 2.0) -> Media:
    return Media("video", 640, 360, duration, interval)


def spans(tags: list[Tag]) -> dict[str, list[tuple[float, float]]]:
    return {t.name: [(s.start, s.end) for s in t.segments] for t in tags}


def objects_tags(p: TagPolicy, detections: list[Detection], media: Media) -> list[Tag]:
    return p.derive("objects", detections, media)


# ---------------------------------------------------------------- merge rules


def test_hits_merge_across_gaps_up_to_max_gap() -> None:
    # Sampled every 2 s; hits 0, 2, 4 | 10 (4 s unseen: merged) | 20 (8 s unseen: split).
    hits = [(0.0, 0.6), (2.0, 0.9), (4.0, 0.7), (10.0, 0.8), (20.0, 0.95), (22.0, 0.6)]
    got = merge_hits(hits, 2.0, RULES, duration=60.0)
    assert got == [Segment(0.0, 12.0, 0.9), Segment(20.0, 24.0, 0.95)]
    # A tighter max_gap splits at the 4 s hole; consecutive frames still merge.
    tight = SegmentRules(max_gap=1.0, min_segment=0.0, min_total=0.0, min_fraction=0.25)
    assert [(s.start, s.end) for s in merge_hits(hits, 2.0, tight, 60.0)] == [
        (0.0, 6.0),
        (10.0, 12.0),
        (20.0, 24.0),
    ]


def test_frame_time_jitter_does_not_split_consecutive_hits() -> None:
    # "First frame at or after each target": 29.97 fps times drift a little.
    hits = [(0.0, 0.9), (2.002, 0.9), (4.004, 0.9), (6.006, 0.9)]
    no_gap = SegmentRules(max_gap=0.0, min_segment=0.0, min_total=0.0, min_fraction=0.25)
    assert merge_hits(hits, 2.0, no_gap, 60.0) == [Segment(0.0, 8.006, 0.9)]


def test_short_segments_dropped_and_min_total_decides_the_file_tag() -> None:
    one_frame = [(10.0, 0.9)]  # spans 2 s: passes min_segment 2, misses min_total 4
    assert merge_hits(one_frame, 2.0, RULES, 60.0) == []
    strict = SegmentRules(max_gap=0.0, min_segment=3.0, min_total=0.0, min_fraction=0.25)
    # 0-4 s kept, the lone frame at 30 (2 s) dropped even though min_total is 0.
    got = merge_hits([(0.0, 0.7), (2.0, 0.7), (30.0, 0.99)], 2.0, strict, 60.0)
    assert got == [Segment(0.0, 4.0, 0.7)]
    # Two separate 2 s ranges add up to 4 s: the file gets the tag, both ranges kept.
    got = merge_hits([(0.0, 0.7), (30.0, 0.8)], 2.0, RULES, 60.0)
    assert [(s.start, s.end) for s in got] == [(0.0, 2.0), (30.0, 32.0)]


def test_end_clamped_to_duration_and_short_clips_need_a_fraction() -> None:
    # A 3 s clip cannot show 4 s of anything: min_total becomes 0.25 * 3 = 0.75 s.
    assert merge_hits([(2.0, 0.9)], 2.0, RULES, duration=3.0) == [Segment(2.0, 3.0, 0.9)]
    # 0.3 s left after the last sample of a 2.38 s clip: below 0.25 * 2.38.
    assert merge_hits([(2.08, 0.9)], 2.0, RULES, duration=2.38) == []
    # A long video keeps the full thresholds.
    assert merge_hits([(2.0, 0.9)], 2.0, RULES, duration=600.0) == []


def test_unknown_duration_no_clamp_and_extent_as_lower_bound() -> None:
    got = merge_hits([(0.0, 0.9), (2.0, 0.9)], 2.0, RULES, duration=None)
    assert got == [Segment(0.0, 4.0, 0.9)]  # no clamp, full thresholds
    # With only a lower bound on the length (last sample + interval = 4 s), a single
    # frame is enough: 2 s >= 0.25 * 4 s.
    assert merge_hits([(0.0, 0.9)], 2.0, RULES, duration=None, extent=4.0) == [
        Segment(0.0, 2.0, 0.9)
    ]
    assert merge_hits([(0.0, 0.9)], 2.0, RULES, duration=None) == []


# ---------------------------------------------------------------- the policy


def test_video_tags_use_thresholds_overrides_and_best_score() -> None:
    p = policy()
    dets = (
        # person: 3 frames (6 s) pass, but its own min_total is 10 s -> no tag
        frames("person", {0.0: 0.9, 2.0: 0.9, 4.0: 0.9})
        # dog: max_gap 0 and no min_segment: two ranges; 0.3 is below the threshold
        + frames("dog", {10.0: 0.8, 12.0: 0.6, 14.0: 0.3, 16.0: 0.7, 18.0: 0.75})
        # two boxes in one frame are one hit with the best score
        + frames("dog", {12.0: 0.65})
        # bus: default rules; the lone frame at 50 s counts because 30-34 s already
        # makes min_total (4 s), and each range passes min_segment (2 s)
        + frames("bus", {30.0: 0.55, 32.0: 0.6, 50.0: 0.99})
    )
    tags = objects_tags(p, dets, video())
    assert spans(tags) == {
        "AI|Objects|bus": [(30.0, 34.0), (50.0, 52.0)],
        "AI|Objects|dog": [(10.0, 14.0), (16.0, 20.0)],
    }
    by_name = {t.name: t for t in tags}
    assert by_name["AI|Objects|bus"].score == 0.99  # best frame of the kept ranges
    assert by_name["AI|Objects|dog"].segments[0].score == 0.8
    assert all(t.source == "objects" for t in tags)
    # The same detections in a photo: today's rule, best score, no ranges.
    image = objects_tags(p, [Detection(d.label, d.score, d.box) for d in dets], Media("image"))
    assert {t.name for t in image} == {"AI|Objects|bus", "AI|Objects|dog", "AI|Objects|person"}
    assert all(not t.segments for t in image)


def test_group_and_default_rules_and_aliases() -> None:
    # [tags.video] defaults, overridden by the group, overridden by a label.
    settings = parse_settings(
        {
            "tags": {
                "video": {"min_total": 1.0},
                "objects": {"max_gap": 0.0, "labels": {"car": {"max_gap": 20.0}}},
            }
        }
    )
    p = TagPolicy(settings.tags)
    dets = frames("bus", {0.0: 0.9, 8.0: 0.9}) + frames("car", {0.0: 0.9, 8.0: 0.9})
    assert spans(p.derive("objects", dets, video())) == {
        "AI|Objects|bus": [(0.0, 2.0), (8.0, 10.0)],
        "AI|Objects|car": [(0.0, 10.0)],
    }
    # cat and kitten share the alias "pet": one timeline, with the best score.
    cats = frames("cat", {20.0: 0.7, 22.0: 0.6})
    pets = objects_tags(policy(), cats, video())
    assert spans(pets) == {"AI|Objects|pet": [(20.0, 24.0)]}
    # kitten's own min_segment (5 s) applies to the shared timeline once it is seen:
    # 20-26 s passes, 20-24 s does not.
    longer = frames("cat", {20.0: 0.7}) + frames("kitten", {22.0: 0.9, 24.0: 0.9})
    assert objects_tags(policy(), longer, video()) == [
        Tag("AI|Objects|pet", 0.9, "objects", (Segment(20.0, 26.0, 0.9),))
    ]
    assert objects_tags(policy(), cats + frames("kitten", {22.0: 0.55}), video()) == []
    assert TagPolicy(settings.tags).fingerprint != TagPolicy(TagSettings()).fingerprint


def test_interval_from_media_else_estimated() -> None:
    dets = frames("bus", {0.0: 0.9, 5.0: 0.9, 10.0: 0.9, 20.0: 0.9})
    assert frame_interval(video(interval=5.0), dets) == 5.0
    assert frame_interval(video(interval=None), dets) == 5.0  # median spacing
    assert frame_interval(video(interval=None), frames("bus", {3.0: 0.9})) == 2.0
    # With the recorded 5 s interval, the hits at 0-10 form one 15 s range.
    tags = objects_tags(policy(), dets, video(interval=5.0))
    assert spans(tags) == {"AI|Objects|bus": [(0.0, 15.0), (20.0, 25.0)]}


def test_unknown_duration_through_the_policy() -> None:
    # no_duration.webm-like: 2 frames, no header. The extent (last detection of any
    # label + interval) stands in for the length.
    dets = frames("bus", {0.0: 0.9}) + frames("tv", {2.0: 0.1})
    assert spans(objects_tags(policy(), dets, video(duration=None))) == {
        "AI|Objects|bus": [(0.0, 2.0)]
    }


def test_long_videos_spread_their_frames() -> None:
    assert video_interval(None, 2.0, 300) == 2.0
    assert video_interval(60.0, 2.0, 300) == 2.0
    assert video_interval(3600.0, 2.0, 300) == 12.0  # 300 frames over the whole hour


def test_catalog_stores_segments_with_tags(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.db") as catalog:
        cid = catalog.ensure_content("fp", "video")
        catalog.set_media_info(cid, kind="video", width=640, height=360, duration=9.5, interval=2.0)
        assert catalog.media(cid) == Media("video", 640, 360, 9.5, 2.0)
        tag = Tag("AI|Objects|dog", 0.8, "objects", (Segment(0.0, 4.0, 0.8), Segment(6, 9.5, 0.7)))
        with catalog.transaction():
            assert catalog.replace_tags(cid, "objects", [tag])
            assert not catalog.replace_tags(cid, "objects", [tag])  # unchanged
            moved = Tag(tag.name, tag.score, tag.source, (Segment(0.0, 6.0, 0.8),))
            assert catalog.replace_tags(cid, "objects", [moved])  # a moved range is a change
        assert catalog.tags(cid) == [moved]


# ---------------------------------------------------------------- end to end


def other_analyzers() -> list[str]:
    """Config sections of every analyzer but objects (switched off: tested elsewhere)."""
    defaults = Settings()
    return [
        f.name
        for f in dataclasses.fields(defaults)
        if f.name not in ("objects", "xmp") and hasattr(getattr(defaults, f.name), "enabled")
    ]


@pytest.fixture
def clips(tmp_path: Path) -> Callable[..., Path]:
    def copy(*names: str) -> Path:
        if not VIDEOS.is_dir():
            pytest.skip(f"shared video folder {VIDEOS} is absent")
        lib = tmp_path / "videos"
        lib.mkdir(exist_ok=True)
        for name in names:
            if not (VIDEOS / name).is_file():
                pytest.skip(f"{name} missing from {VIDEOS}")
            shutil.copyfile(VIDEOS / name, lib / name)  # copies: scans never touch shared
        return lib

    return copy


@pytest.mark.usefixtures("default_models")
def test_scan_and_export_give_time_ranges(
    clips: Callable[..., Path],
    cli: Callable[..., tuple[int, str, str]],
    state_dir: Path,
    tmp_path: Path,
) -> None:
    lib = clips("chaplin.mp4", "fire2.mp4", "empty.mp4")
    # Only the objects analyzer (others are tested elsewhere); no sidecars.
    config = write_config(
        tmp_path / "config.toml",
        "[xmp]\nenabled = false\n"
        + "".join(f"[{s}]\nenabled = false\n" for s in other_analyzers()),
    )
    code, _, err = cli("--config", config, "scan", lib)
    assert code == 1 and "empty.mp4: zero-byte file" in err  # one failed file: exit 1
    code, out, _ = cli("--config", config, "export")
    assert code == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert rows["empty.mp4"]["status"] == "error" and rows["empty.mp4"]["segments"] == []

    chaplin = rows["chaplin.mp4"]
    person = [s for s in chaplin["segments"] if s["tag"] == "AI|Objects|person"]
    # People are on screen for the whole 9.64 s clip, sampled every 2 s.
    assert len(person) == 1 and person[0]["start"] == 0.0
    assert person[0]["end"] == pytest.approx(chaplin["duration"])
    tag = {t["name"]: t["score"] for t in chaplin["tags"]}["AI|Objects|person"]
    assert tag == person[0]["score"] >= 0.5
    # The tag's score is the best detection among its frames.
    assert tag == round(max(o["score"] for o in chaplin["objects"] if o["label"] == "person"), 4)

    # Every tag of a video comes with its ranges, inside the video (fire2.mp4: a
    # 2.4 s clip whose last sample is 0.3 s before its end).
    for row in rows.values():
        assert {t["name"] for t in row["tags"]} == {s["tag"] for s in row["segments"]}
        for seg in row["segments"]:
            assert 0.0 <= seg["start"] < seg["end"] <= row["duration"] + 1e-9
    assert rows["fire2.mp4"]["status"] == "ok"

    # A stricter rule in the config re-derives from stored detections, no model run.
    stricter = config.read_text() + "[tags.objects.labels.person]\nmin_total = 60.0\n"
    config.write_text(stricter)
    code, out, _ = cli("--config", config, "scan", lib)
    code, out, _ = cli("--config", config, "export")
    chaplin = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}["chaplin.mp4"]
    # 60 s is capped at 0.25 * 9.64 s for this short clip: the tag stays...
    assert [s["tag"] for s in chaplin["segments"]] == ["AI|Objects|person"]
    config.write_text(stricter.replace("min_total = 60.0", "min_total = 60.0\nthreshold = 0.95"))
    cli("--config", config, "scan", lib)
    code, out, _ = cli("--config", config, "export")
    chaplin = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}["chaplin.mp4"]
    # ...while a threshold no frame reaches removes both the tag and its ranges.
    assert chaplin["segments"] == [] and "AI|Objects|person" not in str(chaplin["tags"])


@pytest.mark.usefixtures("default_models")
def test_concept_tags_of_a_video_have_time_ranges(
    clips: Callable[..., Path],
    cli: Callable[..., tuple[int, str, str]],
    state_dir: Path,
    tmp_path: Path,
) -> None:
    lib = clips("video_with_failing_audio.mp4")
    config = write_config(
        tmp_path / "config.toml",
        "[xmp]\nenabled = false\n"
        + "".join(f"[{s}]\nenabled = false\n" for s in other_analyzers() if s != "concepts")
        + "[objects]\nenabled = false\n",
    )
    code, _, err = cli("--config", config, "scan", lib)
    assert code == 0, err
    code, out, _ = cli("--config", config, "export")
    (row,) = map(json.loads, out.splitlines())
    concept_tags = {t["name"] for t in row["tags"] if "|Concepts|" in t["name"]}
    assert concept_tags, row["tags"]  # an airplane clip has concepts
    assert concept_tags == {s["tag"] for s in row["segments"]}
    for seg in row["segments"]:
        assert 0.0 <= seg["start"] < seg["end"] <= row["duration"] + 1e-9
