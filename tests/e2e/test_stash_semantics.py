"""tagd against Stash as its server code behaves, point by point: names compared
with SQL LIKE, servers older than v0.28.0, 401/403, slow update hooks, Windows
paths, zip galleries and image clips, path lookups that match other files.

The server is tests/stash_server.py, which follows Stash's own code on each of
these (see its docstring); the catalogs are built directly (no models needed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stash_server import StashServer
from test_stash_people import catalog_with

from tagd.config import PathMapping, Settings, StashSettings
from tagd.records import Segment, Tag
from tagd.sinks.stash.deliver import SINK, deliver_stash
from tagd.sinks.stash.lookup import local_path, stash_path

LATER = 10**12  # a `now` past every backoff
DOG = [Tag("AI|Objects|dog", 0.9, "objects")]


@pytest.fixture
def stash() -> Iterator[StashServer]:
    server = StashServer().start()
    yield server
    server.mode = "ok"
    server.stop()
    assert server.invalid == [], "tagd sent requests real Stash would reject"


def settings(server: StashServer, **stash: Any) -> Settings:
    s = StashSettings(
        enabled=True,
        url=server.url,
        api_key="",
        timeout=5.0,
        retries=0,
        path_mappings=[PathMapping(stash="/data", local="/srv")],
    )
    return dataclasses.replace(Settings(), stash=dataclasses.replace(s, **stash))


def tags_of(server: StashServer, kind: str = "images") -> dict[str, list[str]]:
    st = server.state
    rows = st.images if kind == "images" else st.scenes
    return {r.path: sorted(st.tags[t].name for t in r.tag_ids) for r in rows.values()}


def requests(server: StashServer, text: str) -> int:
    return sum(1 for q in server.requests if text in q)


# ---------------------------------------------------------------- 1. names are LIKE-matched


def test_a_name_stash_likens_to_a_users_tag_gets_the_fallback_name(
    stash: StashServer, tmp_path: Path
) -> None:
    """Stash refuses to create FEMALE_BREAST_EXPOSED while Female Breast Exposed
    exists ('_' matches the space): tagd takes its fallback name, leaves the
    user's tag alone, and the file is written instead of failing forever."""
    users = stash.state.add_tag("Female Breast Exposed")
    stash.state.add_image("/data/a.jpg", [users])
    leaf = [Tag("AI|Adult|FEMALE_BREAST_EXPOSED", 0.8, "objects")]
    catalog = catalog_with(tmp_path / "c.db", {"a.jpg": leaf})
    report = deliver_stash(catalog, settings(stash))
    assert (report.written, report.failed) == (1, 0), report.errors
    assert tags_of(stash) == {
        "/data/a.jpg": ["FEMALE_BREAST_EXPOSED (AI)", "Female Breast Exposed", "tagd_Tagged"]
    }
    ours = stash.state.tag_by_name("FEMALE_BREAST_EXPOSED (AI)")
    assert ours is not None and ours.parent_ids == [stash.state.tag_by_name("AI").id]
    assert stash.state.tag_by_name("Female Breast Exposed").parent_ids == []
    catalog.close()


def test_a_workflow_tag_stash_refuses_to_create_says_what_to_rename(
    stash: StashServer, tmp_path: Path
) -> None:
    stash.state.add_tag("tagd Tagged")  # LIKE 'tagd_Tagged' matches it
    stash.state.add_image("/data/a.jpg")
    catalog = catalog_with(tmp_path / "c.db", {"a.jpg": DOG})
    report = deliver_stash(catalog, settings(stash))
    assert report.failed == 1
    [(_, message)] = report.errors
    assert "tagd_Tagged" in message and "'tagd Tagged'" in message and "LIKE" in message
    assert catalog.due(SINK, LATER)  # still queued: renaming the tag fixes it
    catalog.close()


# ---------------------------------------------------------------- 2. Stash before v0.28.0


def test_a_stash_older_than_0_28_works_without_markers_and_says_why_with_them(
    tmp_path: Path,
) -> None:
    from tagd.sinks.stash.lookup import markers_problem

    old = StashServer(version="v0.27.2").start()
    try:
        old.state.add_scene("/data/a.mp4")
        person = [Tag("AI|Objects|person", 0.9, "objects", (Segment(0.0, 5.0, 0.9),))]
        catalog = catalog_with(tmp_path / "c.db", {"a.mp4": person})
        report = deliver_stash(catalog, settings(old, markers=True))
        assert (report.written, report.failed) == (0, 1)
        [(_, message)] = report.errors
        assert "v0.27.2" in message and "v0.28.0" in message and "markers = false" in message
        assert catalog.due(SINK, LATER)
        assert requests(old, "end_seconds") == 0  # never asked what it does not know

        report = deliver_stash(catalog, settings(old, markers=False), now=LATER)
        assert (report.written, report.failed) == (1, 0), report.errors
        assert tags_of(old, "scenes") == {"/data/a.mp4": ["person", "tagd_Tagged"]}
        assert old.state.markers == {}
        assert old.invalid == [] and requests(old, "end_seconds") == 0
        catalog.close()
    finally:
        old.stop()
    assert markers_problem("v0.28.0") is None and markers_problem("v0.30.1-5-gabc") is None
    assert markers_problem("garbage") is None  # a build we cannot read: not refused


# ---------------------------------------------------------------- 4. 401 and 403


@pytest.mark.parametrize(
    ("server_key", "our_key", "mode", "says"),
    [
        ("secret", "stale", "ok", "refused tagd's API key"),
        ("", "a-key", "ok", "leave api_key empty"),  # login off: any key is refused
        ("secret", "", "ok", "asks for a login"),
        ("", "", "tripwire", "locked itself"),
    ],
)
def test_a_refused_key_stops_the_delivery_at_once_and_keeps_the_queue(
    tmp_path: Path, server_key: str, our_key: str, mode: str, says: str
) -> None:
    server = StashServer(api_key=server_key).start()
    try:
        for n in range(5):
            server.state.add_image(f"/data/{n}.jpg")
        catalog = catalog_with(tmp_path / "c.db", {f"{n}.jpg": DOG for n in range(5)})
        server.mode = mode
        server.requests.clear()
        report = deliver_stash(catalog, settings(server, api_key=our_key, page_size=1))
        assert (report.failed, report.left, report.written) == (1, 4, 0)
        [(_, message)] = report.errors
        assert says in message, message
        assert len(catalog.due(SINK, LATER)) == 5  # nothing lost, all backing off
        assert len(catalog.outbox_errors()) == 1  # one failure recorded, not one per file
        catalog.close()
    finally:
        server.mode = "ok"
        server.stop()


# ---------------------------------------------------------------- 5. slow update hooks


def test_slow_update_hooks_shrink_the_bulk_updates_instead_of_deferring(
    tmp_path: Path,
) -> None:
    """Stash runs each object's Update.Post hooks before it answers a bulk update:
    40 objects at 60 ms each outlast a 1 s timeout. tagd sends smaller updates
    (the timed-out one went in: updates are idempotent) and writes every file."""
    server = StashServer(hook_seconds=0.06).start()
    try:
        names = [f"p{i}.jpg" for i in range(40)]
        for n in names:
            server.state.add_image(f"/data/{n}")
        catalog = catalog_with(tmp_path / "c.db", {n: DOG for n in names})
        report = deliver_stash(catalog, settings(server, timeout=1.0, page_size=100))
        assert (report.written, report.failed, report.left) == (40, 0, 0), report.errors
        assert all(t == ["dog", "tagd_Tagged"] for t in tags_of(server).values())
        assert catalog.due(SINK, LATER) == []
        catalog.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- 6. Stash on Windows


def test_windows_paths_map_both_ways(stash: StashServer, tmp_path: Path) -> None:
    maps = [PathMapping(stash="D:\\Media", local="/srv")]
    assert stash_path("/srv/sub/a.jpg", maps) == "D:\\Media\\sub\\a.jpg"
    assert local_path("D:\\Media\\sub\\a.jpg", maps) == "/srv/sub/a.jpg"
    assert local_path("d:\\media\\b.jpg", maps) == "/srv/b.jpg"  # Windows ignores case
    assert local_path("E:\\other\\c.jpg", maps) == "E:\\other\\c.jpg"

    stash.state.add_image("D:\\Media\\sub\\a.jpg")
    catalog = catalog_with(tmp_path / "c.db", {"sub/a.jpg": DOG})
    report = deliver_stash(catalog, settings(stash, path_mappings=maps))
    assert (report.written, report.failed) == (1, 0), report.errors
    assert tags_of(stash) == {"D:\\Media\\sub\\a.jpg": ["dog", "tagd_Tagged"]}
    catalog.close()


# ---------------------------------------------------------------- 7. zip galleries, image clips


def test_zip_gallery_images_are_skipped_with_their_own_message(
    stash: StashServer, tmp_path: Path
) -> None:
    from tagd.scan.stash_source import files_from_stash
    from tagd.sinks.stash.deliver import make_client

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.jpg").write_bytes(b"x")
    (lib / "album.zip").write_bytes(b"PK")
    stash.state.add_image("/data/a.jpg")
    stash.state.add_image("/data/album.zip/001.jpg")
    stash.state.add_image("/data/gone.jpg")
    s = settings(stash, path_mappings=[PathMapping(stash="/data", local=str(lib))])
    listed = files_from_stash(make_client(s), s, tagme_only=False)
    assert listed.local == [str(lib / "a.jpg")]
    assert listed.in_archives == [str(lib / "album.zip" / "001.jpg")]
    assert listed.missing == [str(lib / "gone.jpg")]
    assert "1 image inside zip galleries skipped" in listed.summary()


def test_a_video_stash_keeps_as_an_image_clip_is_found(stash: StashServer, tmp_path: Path) -> None:
    stash.state.add_image("/data/clip.mp4")  # imported as an image clip
    catalog = catalog_with(tmp_path / "c.db", {"clip.mp4": DOG})
    assert catalog.file_kind(catalog.due(SINK, LATER)[0][0]) == "video"
    report = deliver_stash(catalog, settings(stash))
    assert (report.written, report.failed) == (1, 0), report.errors
    assert tags_of(stash) == {"/data/clip.mp4": ["dog", "tagd_Tagged"]}
    catalog.close()


# ---------------------------------------------------------------- 8. lookups that match others


def test_a_path_whose_wildcards_match_many_others_still_finds_its_own(
    stash: StashServer, tmp_path: Path
) -> None:
    """'_' and '%' in a path make Stash's EQUALS match other files: tagd reads the
    pages (sorted by id) until its own turns up."""
    for i in range(60):  # older (lower ids) and matching /data/clip_1%.jpg
        stash.state.add_image(f"/data/clipX1{i:03d}.jpg")
    stash.state.add_image("/data/clip_1%.jpg")
    catalog = catalog_with(tmp_path / "c.db", {"clip_1%.jpg": DOG})
    report = deliver_stash(catalog, settings(stash))
    assert (report.written, report.failed) == (1, 0), report.errors
    assert tags_of(stash)["/data/clip_1%.jpg"] == ["dog", "tagd_Tagged"]
    assert tags_of(stash)["/data/clipX1000.jpg"] == []
    finds = [q for q in stash.requests if "FindImage" in q]
    assert len(finds) == 3  # pages of 25 until the 61st
    catalog.close()
