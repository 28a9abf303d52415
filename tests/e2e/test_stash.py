"""The Stash sink against a server speaking Stash's real GraphQL schema.

The catalog comes from a real `tagd scan` of a copy of chaplin.mp4 (people on
screen for the whole clip: one `AI|Objects|person` range); the server is
tests/stash_server.py on 127.0.0.1, which validates every request against the
vendored schema: `invalid` must stay empty in every test.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import VIDEOS, require_models, write_config
from stash_server import OtherHost, StashServer

from tagd.catalog.catalog import Catalog
from tagd.config import PathMapping, Settings, StashSettings, parse_settings
from tagd.sinks.stash.client import (
    StashClient,
    StashError,
    StashGraphQLError,
    StashProtocolError,
    StashRedirectError,
    StashUnavailable,
)
from tagd.sinks.stash.deliver import SINK, deliver_stash
from tagd.sinks.stash.lookup import local_path, stash_path

LATER = 10**12  # a `now` past every backoff


@pytest.fixture
def server() -> Iterator[StashServer]:
    stash = StashServer(api_key="secret", slow_seconds=1.0).start()
    yield stash
    stash.mode = "ok"
    stash.stop()
    assert stash.invalid == [], "tagd sent requests real Stash would reject"


def only_objects() -> str:
    """Config text switching off every analyzer but objects (xmp too: no sidecars)."""
    defaults = Settings()
    off = [
        f.name
        for f in dataclasses.fields(defaults)
        if f.name not in ("objects", "stash") and hasattr(getattr(defaults, f.name), "enabled")
    ]
    return "".join(f"[{name}]\nenabled = false\n" for name in off)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(library, catalog file) after a real scan of a copy of chaplin.mp4."""
    if not (VIDEOS / "chaplin.mp4").is_file():
        pytest.skip(f"chaplin.mp4 missing from {VIDEOS}")
    require_models("yolox-nano")
    from tagd.cli.main import main

    base = tmp_path_factory.mktemp("stash-scan")
    lib = base / "videos"
    lib.mkdir()
    shutil.copyfile(VIDEOS / "chaplin.mp4", lib / "chaplin.mp4")  # never write to shared
    config = write_config(base / "config.toml", only_objects())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGD_STATE_DIR", str(base / "state"))
        mp.delenv("TAGD_CONFIG", raising=False)
        mp.setenv("XDG_CONFIG_HOME", str(base / "xdg"))
        assert main(["--config", str(config), "scan", str(lib)]) == 0
    catalogs = list((base / "state").rglob("*.db")) + list((base / "state").rglob("*.sqlite"))
    assert len(catalogs) == 1, catalogs
    return lib, catalogs[0]


def settings_for(server: StashServer, lib: Path, **stash: Any) -> Settings:
    s = StashSettings(
        enabled=True,
        url=server.url,
        api_key="secret",
        timeout=5.0,  # generous: a loaded CI machine; the slow-server test sets its own
        retries=0,
        path_mappings=[PathMapping(stash="/data", local=str(lib))],
    )
    return dataclasses.replace(Settings(), stash=dataclasses.replace(s, **stash))


def fresh_catalog(scanned: tuple[Path, Path], tmp_path: Path) -> Catalog:
    """A copy of the scanned catalog with every file queued for Stash."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    copy = tmp_path / "catalog.db"
    shutil.copyfile(scanned[1], copy)
    catalog = Catalog(copy)
    with catalog.transaction():
        ids = [r[0] for r in catalog.con.execute("SELECT id FROM files")]
        catalog.enqueue(ids, SINK)
    return catalog


def populate(server: StashServer) -> str:
    """A Stash that scanned the library: chaplin as a scene with a tag of the user's,
    who also has a tag named "person" of their own (not under AI)."""
    fav = server.state.add_tag("Favourite")
    server.state.add_tag("person")
    return server.state.add_scene("/data/chaplin.mp4", [fav])


def snapshot(server: StashServer) -> dict[str, Any]:
    st = server.state
    name = {t.id: t.name for t in st.tags.values()}
    return {
        "tags": sorted(
            (t.name, t.ignore_auto_tag, tuple(sorted(name[p] for p in t.parent_ids)))
            for t in st.tags.values()
        ),
        "scenes": {s.path: sorted(name[t] for t in s.tag_ids) for s in st.scenes.values()},
        "markers": sorted(
            (st.scenes[m.scene_id].path, name[m.primary_tag_id], m.title, m.seconds, m.end_seconds)
            for m in st.markers.values()
        ),
    }


def cut_and_resume(stash: StashServer, catalog: Catalog, settings: Settings, cut: int) -> None:
    """Deliver with the server going away after `cut` answers, then start it again
    (same port, same state) and deliver what stayed queued."""
    stash.drop_after = cut
    deliver_stash(catalog, settings)
    assert catalog.due(SINK, LATER), f"cut {cut}: work lost"
    stash.stop()
    stash.drop_after, stash.mode = None, "ok"
    stash.start()
    report = deliver_stash(catalog, settings, now=LATER)
    assert report.failed == 0, report.errors
    assert stash.invalid == []


def mutations(server: StashServer) -> list[str]:
    return [q for q in server.requests if q.lstrip().startswith("mutation")]


# ---------------------------------------------------------------- client


def test_client_errors_are_typed(server: StashServer) -> None:
    client = StashClient(server.url, "secret", timeout=5.0, retries=0)
    assert client.call("{ version { version } }")["version"]["version"].startswith("v")
    with pytest.raises(StashError, match="api_key"):
        StashClient(server.url, "wrong", retries=0).call("{ version { version } }")
    with pytest.raises(StashGraphQLError, match="nosuchfield"):
        client.call("{ nosuchfield }")
    server.invalid.clear()  # that one was meant to be invalid
    for mode, error in [("500", StashUnavailable), ("garbage", StashProtocolError)]:
        server.mode = mode
        with pytest.raises(error):
            client.call("{ version { version } }")
    server.mode = "slow"  # sleeps 1 s before answering
    start = time.monotonic()
    with pytest.raises(StashUnavailable, match="did not answer"):
        StashClient(server.url, "secret", timeout=0.3, retries=0).call("{ version { version } }")
    assert time.monotonic() - start < 1.0
    server.mode = "ok"
    port = server.port
    server.stop()
    with pytest.raises(StashUnavailable, match="cannot reach"):
        StashClient(f"http://127.0.0.1:{port}", retries=1, backoff=0.01).call("{ a }")
    server.start()


def test_path_mappings_longest_prefix_wins() -> None:
    maps = [PathMapping("/data", "/srv"), PathMapping("/media/x", "/srv/x")]
    assert stash_path("/srv/a.mp4", maps) == "/data/a.mp4"
    assert stash_path("/srv/x/b.jpg", maps) == "/media/x/b.jpg"
    assert stash_path("/srvother/c.jpg", maps) == "/srvother/c.jpg"
    assert local_path("/media/x/b.jpg", maps) == "/srv/x/b.jpg"  # and back
    assert local_path("/data", maps) == "/srv"


def test_config_rejects_bad_stash_values() -> None:
    from tagd.config import ConfigError

    with pytest.raises(ConfigError, match=r"stash\.url"):
        parse_settings({"stash": {"url": "localhost:9999"}})
    with pytest.raises(ConfigError, match=r"stash\.path_mappings\[0\]"):
        parse_settings({"stash": {"path_mappings": [{"stash": "/data", "local": "rel"}]}})
    with pytest.raises(ConfigError, match=r"stash\.timeout"):
        parse_settings({"stash": {"timeout": 0}})


# ---------------------------------------------------------------- sink


def test_scene_tags_markers_and_idempotent_rerun(
    server: StashServer, scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    lib, _ = scanned
    populate(server)
    catalog = fresh_catalog(scanned, tmp_path)
    settings = settings_for(server, lib)
    report = deliver_stash(catalog, settings)
    assert (report.written, report.failed) == (1, 0), report.errors
    assert catalog.due(SINK, LATER) == []
    st = server.state
    ai = st.tag_by_name("AI")
    ours = st.tag_by_name("person (AI)")  # "person" is the user's: a distinct name
    assert ai is not None and ours is not None and ours.parent_ids == [ai.id]
    assert ours.ignore_auto_tag and st.tag_by_name("person").parent_ids == []
    state = snapshot(server)
    assert state["scenes"]["/data/chaplin.mp4"] == ["Favourite", "person (AI)", "tagd_Tagged"]
    [(_, primary, title, start, end)] = state["markers"]
    assert (primary, title, start) == ("person (AI)", "person", 0.0)
    assert end == pytest.approx(9.64, abs=0.1)

    # Again: nothing new is created or changed.
    before = len(mutations(server))
    catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
    report = deliver_stash(catalog, settings)
    assert (report.written, report.unchanged) == (0, 1)
    assert len(mutations(server)) == before  # queries only
    assert snapshot(server) == state

    # The tag no longer applies: tagd removes its own tag and marker, the user's stay.
    with catalog.transaction():
        catalog.con.execute("DELETE FROM tags WHERE name = 'AI|Objects|person'")
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
    deliver_stash(catalog, settings)
    after = snapshot(server)
    assert after["scenes"]["/data/chaplin.mp4"] == ["Favourite", "tagd_Tagged"]
    assert after["markers"] == []
    catalog.close()


def test_marker_moves_when_the_range_changes(
    server: StashServer, scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    lib, _ = scanned
    populate(server)
    catalog = fresh_catalog(scanned, tmp_path)
    settings = settings_for(server, lib)
    deliver_stash(catalog, settings)
    [marker_id] = server.state.markers
    with catalog.transaction():
        catalog.con.execute(
            "UPDATE tags SET segments = '[[1.0, 5.0, 0.9]]' WHERE name = 'AI|Objects|person'"
        )
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
    deliver_stash(catalog, settings)
    [(mid, marker)] = server.state.markers.items()
    assert mid == marker_id and (marker.seconds, marker.end_seconds) == (1.0, 5.0)
    catalog.close()


@pytest.mark.parametrize("mode", ["down", "slow", "500", "garbage", "missing"])
def test_failures_keep_the_work_queued(
    server: StashServer, scanned: tuple[Path, Path], tmp_path: Path, mode: str
) -> None:
    lib, _ = scanned
    if mode != "missing":
        populate(server)  # "missing": Stash has not scanned the file yet
    catalog = fresh_catalog(scanned, tmp_path)
    # "slow": the server sleeps 1 s, past this timeout.
    settings = settings_for(server, lib, **({"timeout": 0.5} if mode == "slow" else {}))
    if mode == "down":
        server.stop()
    elif mode != "missing":
        server.mode = mode
    report = deliver_stash(catalog, settings)
    assert report.failed == 1 and report.written == 0
    [(_, sink, attempts, error)] = catalog.outbox_errors()
    assert sink == SINK and attempts == 1 and error
    assert catalog.due(SINK, time.time()) == []  # backing off
    if mode == "down":
        server.start()
    server.mode = "ok"
    if mode == "missing":
        populate(server)
    report = deliver_stash(catalog, settings, now=LATER)
    assert report.written == 1 and catalog.due(SINK, LATER) == []
    assert snapshot(server)["markers"]
    catalog.close()


def test_images_and_errored_files(server: StashServer, tmp_path: Path) -> None:
    """Images get bulkImageUpdate; a file tagd could not read gets tagd_Errored."""
    catalog = Catalog(tmp_path / "c.db")
    with catalog.transaction():
        good = catalog.ensure_content("fp-good", "image")
        bad = catalog.ensure_content("fp-bad", "image")
        catalog.set_content_error(bad, "truncated JPEG")
        from tagd.records import Tag

        catalog.replace_tags(good, "objects", [Tag("AI|Objects|dog", 0.9, "objects")])
        ids = [
            catalog.add_file(f"/srv/p/{n}.jpg", "image", 1, 1, cid, None)
            for n, cid in (("good", good), ("bad", bad))
        ]
        catalog.enqueue(ids, SINK)
    server.state.add_image("/data/p/good.jpg")
    server.state.add_image("/data/p/bad.jpg", [server.state.add_tag("tagd_TagMe")])
    base = settings_for(server, Path("/srv"))
    report = deliver_stash(catalog, base)
    assert report.failed == 0, report.errors
    state = snapshot(server)
    images = {
        i.path: sorted(server.state.tags[t].name for t in i.tag_ids)
        for i in server.state.images.values()
    }
    assert images == {
        "/data/p/good.jpg": ["dog", "tagd_Tagged"],
        "/data/p/bad.jpg": ["tagd_Errored"],
    }
    assert ("dog", True, ("AI",)) in state["tags"]
    catalog.close()
    assert os.path.exists(tmp_path / "c.db")


def test_a_stop_ends_the_delivery_between_files(server: StashServer, tmp_path: Path) -> None:
    """The daemon's stop is asked between files: what is left stays queued."""
    catalog = Catalog(tmp_path / "c.db")
    with catalog.transaction():
        ids = []
        for name in ("a", "b", "c"):
            cid = catalog.ensure_content(f"fp-{name}", "image")
            ids.append(catalog.add_file(f"/srv/p/{name}.jpg", "image", 1, 1, cid, None))
            server.state.add_image(f"/data/p/{name}.jpg")
        catalog.enqueue(ids, SINK)
    asked: list[int] = []

    def deadline() -> float | None:
        asked.append(1)
        return time.monotonic() if len(asked) > 2 else None  # a stop during the run

    report = deliver_stash(catalog, settings_for(server, Path("/srv")), deadline=deadline)
    assert report.written >= 1 and report.left >= 1, report
    assert report.written + report.left == 3 and report.failed == 0
    assert len(catalog.due(SINK, time.time())) == report.left
    catalog.close()


@pytest.mark.usefixtures("default_models")
def test_tagd_scan_writes_to_stash(
    server: StashServer,
    cli: Any,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    """`tagd scan` with [stash] enabled queues and delivers through the outbox."""
    if not (VIDEOS / "chaplin.mp4").is_file():
        pytest.skip(f"chaplin.mp4 missing from {VIDEOS}")
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(VIDEOS / "chaplin.mp4", lib / "chaplin.mp4")
    populate(server)
    config = write_config(
        tmp_path / "config.toml",
        only_objects()
        + f'[stash]\nenabled = true\nurl = "{server.url}"\napi_key = "secret"\n'
        + f'timeout = 10.0\npath_mappings = [{{ stash = "/data", local = "{lib}" }}]\n',
    )
    code, out, err = cli("--config", config, "scan", lib)
    assert code == 0, err
    assert "stash: 1 updated" in out
    assert "person (AI)" in snapshot(server)["scenes"]["/data/chaplin.mp4"]
    code, out, _ = cli("--config", config, "scan", lib)
    assert code == 0 and "stash: 0 updated" in out  # nothing queued: nothing to do


def test_doctor_checks_stash(
    server: StashServer, cli: Any, state_dir: Path, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()

    def doctor(api_key: str) -> tuple[int, str]:
        config = write_config(
            tmp_path / "config.toml",
            f'[library]\nroots = ["{lib}"]\n[stash]\nenabled = true\nurl = "{server.url}"\n'
            f'api_key = "{api_key}"\nretries = 0\ntimeout = 10.0\n'
            f'path_mappings = [{{ stash = "/data", local = "{lib}" }}]\n',
        )
        code, out, _ = cli("--config", config, "doctor")
        return code, out

    code, out = doctor("secret")
    assert f"stash: {server.url}: Stash v0.28.0-test, API key accepted" in out, out
    assert f"library root {lib} is /data in Stash" in out
    code, out = doctor("wrong")
    assert code == 1 and "PROBLEM: stash: " in out and "api_key" in out
    server.stop()
    code, out = doctor("secret")
    assert code == 1 and "cannot reach Stash" in out
    server.start()


# ---------------------------------------------------------------- Stash as the source


def stash_config(path: Path, server: StashServer, lib: Path, enabled: bool = True) -> Path:
    return write_config(
        path,
        only_objects()
        + f'[stash]\nenabled = {"true" if enabled else "false"}\nurl = "{server.url}"\n'
        + 'api_key = "secret"\ntimeout = 5.0\npage_size = 1\n'  # 1: every page is walked
        + f'path_mappings = [{{ stash = "/data", local = "{lib}" }}]\n',
    )


def image_tags(server: StashServer) -> dict[str, list[str]]:
    st = server.state
    return {i.path: sorted(st.tags[t].name for t in i.tag_ids) for i in st.images.values()}


@pytest.mark.usefixtures("default_models")
def test_scan_from_stash_picks_the_files_stash_lists(
    server: StashServer,
    cli: Any,
    state_dir: Path,
    tmp_path: Path,
    coco_photos: Any,
) -> None:
    lib = tmp_path / "lib"
    marked, plain, _unlisted = coco_photos(3, dest=lib)  # _unlisted: local only
    st = server.state
    marked_id = st.add_image(f"/data/{marked.name}")
    st.add_image(f"/data/{plain.name}")
    st.add_image("/data/gone/never-here.jpg")  # Stash has it, this machine does not
    config = stash_config(tmp_path / "config.toml", server, lib)

    # No TagMe tag in Stash yet: nothing is queued (and the tag is not created).
    code, out, _ = cli("--config", config, "scan", "--from-stash", "--tagme-only")
    assert code == 0 and "nothing to scan" in out
    assert st.tag_by_name("tagd_TagMe") is None and "indexed" not in out

    tagme = st.add_tag("tagd_TagMe")
    st.images[marked_id].tag_ids.append(tagme)
    code, out, err = cli("--config", config, "scan", "--from-stash", "--tagme-only")
    assert code == 0, err
    assert "stash: 1 file to scan" in out and "indexed 1 file: 1 new" in out
    tags = image_tags(server)
    assert "tagd_Tagged" in tags[f"/data/{marked.name}"]
    assert "tagd_TagMe" not in tags[f"/data/{marked.name}"]
    assert tags[f"/data/{plain.name}"] == []  # not TagMe: untouched

    # Every scene and image: the missing one is reported, the others are scanned.
    code, out, err = cli("--config", config, "scan", "--from-stash")
    assert code == 0, err
    assert "stash: 2 files to scan, 1 missing here" in out
    assert "indexed 2 files: 1 new" in out  # the unlisted local photo is never indexed
    assert f"{lib}/gone/never-here.jpg" in err
    assert "tagd_Tagged" in image_tags(server)[f"/data/{plain.name}"]
    [db] = list(state_dir.rglob("*.db")) + list(state_dir.rglob("*.sqlite"))
    catalog = Catalog(db)
    indexed = sorted(r[0] for r in catalog.con.execute("SELECT path FROM files"))
    catalog.close()
    assert indexed == sorted([str(marked), str(plain)])  # not `unlisted`: no folder walk


def test_scan_from_stash_needs_stash_enabled(
    server: StashServer, cli: Any, state_dir: Path, tmp_path: Path
) -> None:
    config = stash_config(tmp_path / "config.toml", server, tmp_path, enabled=False)
    code, _, err = cli("--config", config, "scan", "--from-stash")
    assert code == 2 and "[stash] enabled = true" in err
    assert server.requests == []


# ---------------------------------------------------------------- the whole eval video folder


@pytest.fixture(scope="module")
def eval_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(library, catalog file) after a real scan, default analyzers, of a copy of
    every file in ../shared/eval/video (a zero-byte one included)."""
    if not VIDEOS.is_dir() or len(list(VIDEOS.iterdir())) < 4:
        pytest.skip(f"{VIDEOS} is missing")
    require_models()
    from tagd.cli.main import main

    base = tmp_path_factory.mktemp("stash-videos")
    lib = base / "videos"
    lib.mkdir()
    for video in sorted(VIDEOS.iterdir()):
        shutil.copyfile(video, lib / video.name)  # never write to shared
    config = write_config(base / "config.toml", "[xmp]\nenabled = false\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGD_STATE_DIR", str(base / "state"))
        mp.delenv("TAGD_CONFIG", raising=False)
        mp.setenv("XDG_CONFIG_HOME", str(base / "xdg"))
        assert main(["--config", str(config), "scan", str(lib)]) == 1  # empty.mp4 fails
    [catalog] = list((base / "state").rglob("catalog.db"))
    return lib, catalog


def expected_from_catalog(catalog: Catalog) -> dict[str, Any]:
    """What Stash should hold per scene, read from the catalog: tag leaves (the
    user's "person" makes tagd's "person (AI)"), workflow tag, markers."""

    def leaf(name: str) -> str:
        last = name.rsplit("|", 1)[-1]
        return "person (AI)" if last == "person" else last

    scenes: dict[str, list[str]] = {}
    # A set: "AI|Objects|bird" and "AI|Concepts|Animals|bird" are one Stash tag,
    # and one marker per tag and range.
    markers = set()
    rows = catalog.con.execute("SELECT path, content_id FROM files ORDER BY path").fetchall()
    for path, cid in rows:
        stash = "/data/" + Path(path).name
        error = catalog.con.execute("SELECT error FROM contents WHERE id = ?", (cid,)).fetchone()
        if error is None or error[0]:
            scenes[stash] = ["Favourite", "tagd_Errored"]
            continue
        tags = catalog.tags(cid)
        scenes[stash] = sorted({leaf(t.name) for t in tags} | {"Favourite", "tagd_Tagged"})
        for t in tags:
            for s in t.segments:
                short = t.name.rsplit("|", 1)[-1]
                markers.add((stash, leaf(t.name), short, round(s.start, 2), round(s.end, 2)))
    return {"scenes": scenes, "markers": sorted(markers)}


def test_eval_video_folder_into_stash_and_a_cut_at_every_request(
    eval_videos: tuple[Path, Path], tmp_path: Path
) -> None:
    """Done-when of the Stash sink on real media: tagging ../shared/eval/video creates
    the AI tags, scene tags and markers; a re-run creates nothing; a Stash that goes
    away after any number of requests and comes back ends the same."""
    lib, db = eval_videos

    def with_scenes(stash: StashServer) -> StashServer:
        stash.state.add_tag("person")  # a tag of the user's
        fav = stash.state.add_tag("Favourite")  # and one on every scene: it stays
        for video in sorted(lib.iterdir()):
            stash.state.add_scene(f"/data/{video.name}", [fav])
        return stash

    def fresh(where: Path) -> Catalog:
        where.mkdir(parents=True)
        shutil.copyfile(db, where / "catalog.db")
        catalog = Catalog(where / "catalog.db")
        with catalog.transaction():
            catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
        return catalog

    reference = with_scenes(StashServer().start())
    try:
        catalog = fresh(tmp_path / "ref")
        settings = settings_for(reference, lib, api_key="")
        report = deliver_stash(catalog, settings)
        assert report.failed == 0 and report.written == len(list(lib.iterdir())), report.errors
        expected = expected_from_catalog(catalog)
        state = snapshot(reference)
        st = reference.state
        assert state["scenes"] == expected["scenes"]
        assert sum(len(tags) > 1 for tags in expected["scenes"].values()) >= 3  # real tags
        got_markers = sorted(
            (path, primary, title, round(start, 2), round(end, 2))
            for path, primary, title, start, end in state["markers"]
        )
        assert got_markers == expected["markers"] and len(got_markers) >= 3
        ai = st.tag_by_name("AI")
        assert ai is not None
        ours = [t for t in st.tags.values() if ai.id in t.parent_ids]
        assert ours and all(t.ignore_auto_tag for t in ours)
        total = len(reference.requests)
        # A re-run: nothing created or changed.
        before = len(mutations(reference))
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
        assert deliver_stash(catalog, settings).written == 0
        assert len(mutations(reference)) == before and snapshot(reference) == state
        catalog.close()
    finally:
        reference.stop()

    # One server made empty again for each cut (building its schema is the slow part).
    stash = StashServer().start()
    try:
        for cut in range(1, total):
            stash.reset()
            with_scenes(stash)
            catalog = fresh(tmp_path / f"cut{cut}")
            settings = settings_for(stash, lib, api_key="")
            cut_and_resume(stash, catalog, settings, cut)
            assert snapshot(stash) == state, f"cut after {cut} of {total} requests"
            catalog.close()
    finally:
        stash.stop()


# ---------------------------------------------------------------- finding many files


def ops(server: StashServer, name: str) -> int:
    """How many requests ran the named operation (`query NAME`)."""
    return sum(1 for q in server.requests if f"query {name}" in q)


def test_many_due_files_are_found_by_listing_stash(tmp_path: Path) -> None:
    """More files due than pages to list: Stash is listed, not asked once per file;
    the end state equals asking per file."""
    from test_stash_people import catalog_with

    from tagd.records import Tag

    names = [f"p{i}.jpg" for i in range(6)]
    files = {
        n: [Tag(f"AI|Objects|{'dog' if i % 2 else 'cat'}", 0.9, "objects")]
        for i, n in enumerate(names)
    }
    states = {}
    for page_size in (2, 1):  # 3 pages < 6 files: list; 6 pages: ask per file
        stash = StashServer().start()
        try:
            for n in names:
                stash.state.add_image(f"/data/{n}")
            catalog = catalog_with(tmp_path / f"c{page_size}.db", files)
            settings = settings_for(stash, Path("/srv"), api_key="", page_size=page_size)
            told: list[tuple[int, int]] = []
            report = deliver_stash(catalog, settings, progress=lambda *p, t=told: t.append(p))
            assert (report.written, report.failed) == (6, 0), report.errors
            assert told == [(i, 6) for i in range(6)]
            listed, found = ops(stash, "ListImages"), ops(stash, "FindImage")
            assert (listed, found) == ((3, 0) if page_size == 2 else (0, 6))
            states[page_size] = image_tags(stash)
            assert stash.invalid == []
            catalog.close()
        finally:
            stash.stop()
    assert states[2] == states[1]
    assert states[2]["/data/p1.jpg"] == ["dog", "tagd_Tagged"]


def test_a_scene_with_two_files_is_seen_fresh_for_the_second(tmp_path: Path) -> None:
    """Listed once, written for its first file: the second file is planned after that
    write, from a fresh answer, so the marker made for the first is not made twice."""
    from test_stash_people import catalog_with

    from tagd.records import Segment, Tag

    stash = StashServer().start()
    try:
        scene = stash.state.add_scene("/data/a.mp4")
        stash.state.scenes[scene].more_paths.append("/data/b.mp4")
        stash.state.add_scene("/data/c.mp4")
        person = [Tag("AI|Objects|person", 0.9, "objects", (Segment(0.0, 5.0, 0.9),))]
        catalog = catalog_with(
            tmp_path / "c.db", {"a.mp4": person, "b.mp4": person, "c.mp4": person}
        )
        settings = settings_for(stash, Path("/srv"), api_key="", page_size=1)
        report = deliver_stash(catalog, settings)
        assert report.failed == 0, report.errors
        # b.mp4 is asked for twice: once to see it is a.mp4's scene (already in the
        # batch), once more after that batch was written.
        assert ops(stash, "ListScenes") == 2 and ops(stash, "FindScene") == 2
        markers = [m for m in stash.state.markers.values() if m.scene_id == scene]
        assert len(markers) == 1 and len(stash.state.markers) == 2
        assert stash.invalid == []
        catalog.close()
    finally:
        stash.stop()


def test_stash_down_while_listing_keeps_everything_queued(tmp_path: Path) -> None:
    from test_stash_people import catalog_with

    stash = StashServer().start()
    try:
        for n in ("a", "b", "c"):
            stash.state.add_image(f"/data/{n}.jpg")
        catalog = catalog_with(tmp_path / "c.db", {f"{n}.jpg": [] for n in "abc"})
        settings = settings_for(stash, Path("/srv"), api_key="", page_size=1)
        stash.stop()
        report = deliver_stash(catalog, settings)
        assert (report.failed, report.left, report.written) == (1, 2, 0)
        [(_, _, attempts, error)] = catalog.outbox_errors()
        assert attempts == 1 and "cannot reach Stash" in error
        assert catalog.due(SINK, time.time()) == []  # all backing off together
        stash.start()
        assert deliver_stash(catalog, settings, now=LATER).written == 3
        catalog.close()
    finally:
        stash.stop()


def test_one_object_stash_refuses_does_not_fail_its_batch(tmp_path: Path) -> None:
    """Objects with the same change share one update; when Stash refuses it (one of
    them was deleted meanwhile), each is sent alone and only that one fails."""
    from test_stash_people import catalog_with

    from tagd.records import Tag
    from tagd.sinks.stash.deliver import StashWriter, make_client

    stash = StashServer().start()
    try:
        ids = [stash.state.add_image(f"/data/{n}.jpg") for n in "abc"]
        dog = [Tag("AI|Objects|dog", 0.9, "objects")]
        catalog = catalog_with(tmp_path / "c.db", {f"{n}.jpg": dog for n in "abc"})
        settings = settings_for(stash, Path("/srv"), api_key="")
        writer = StashWriter(catalog, settings, make_client(settings))
        batch = [writer.prepare(*item) for item in catalog.due(SINK, LATER)]
        del stash.state.images[ids[1]]  # gone from Stash after it was found
        result = writer.apply(batch)
        assert set(result.failed) == {f"image:{ids[1]}"}
        assert result.changed == {f"image:{ids[0]}", f"image:{ids[2]}"}
        assert image_tags(stash) == {
            "/data/a.jpg": ["dog", "tagd_Tagged"],
            "/data/c.jpg": ["dog", "tagd_Tagged"],
        }
        bulk = [q for q in stash.requests if "bulkImageUpdate" in q]
        assert len(bulk) == 1 + 3  # the shared update, refused; then one each
        assert stash.invalid == []  # refused by Stash's logic, not by its schema
        catalog.close()
    finally:
        stash.stop()


# ---------------------------------------------------------------- redirects and odd answers


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_never_gets_the_api_key(server: StashServer, code: int) -> None:
    """urllib follows redirects with every header: the ApiKey must not reach
    another origin (here: another port of 127.0.0.1). Nothing is sent there, and
    the error names both URLs."""
    other = OtherHost()
    try:
        server.redirects = {"/graphql": (code, other.url)}
        client = StashClient(server.url, "secret", timeout=5.0, retries=0)
        with pytest.raises(StashRedirectError) as info:
            client.call("{ version { version } }")
        assert server.url in str(info.value) and other.url in str(info.value)
        assert "[stash] url" in str(info.value)
        assert other.api_keys() == [] and other.received == []
    finally:
        other.stop()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_within_stash_is_followed_with_the_same_post(
    server: StashServer, code: int
) -> None:
    """Stash behind a proxy that moved its endpoint: same origin, so the POST (and
    its key) goes to the new path, as GraphQL needs it."""
    server.redirects = {"/old/graphql": (code, "/graphql")}
    old = server.url.replace("/graphql", "/old/graphql")
    client = StashClient(old, "secret", timeout=5.0, retries=0)
    assert client.call("{ version { version } }")["version"]["version"].startswith("v")


@pytest.mark.parametrize(
    ("match", "answer", "needle"),
    [
        ("findImages", {"data": {}}, "lacks findImages"),
        ("findImages", {"data": None}, "holds no data"),
        ("findImages", {"data": {"findImages": None}}, "has findImages = null"),
        ("findImages", {"data": {"findImages": {"count": 1, "images": "none"}}}, "'none'"),
        (
            "findImages",
            {
                "data": {
                    "findImages": {
                        "count": 1,
                        "images": [{"id": "1", "visual_files": [], "tags": 3}],
                    }
                }
            },
            "findImages.images[0].tags = 3, not an object",
        ),
        (
            "findImages",
            {
                "data": {
                    "findImages": {
                        "count": 1,
                        "images": [{"id": True, "visual_files": [], "tags": []}],
                    }
                }
            },
            "findImages.images[0].id = True, not an id",
        ),
        # The image is found; creating its tag answers nothing usable.
        ("tagCreate", {"data": {"tagCreate": None}}, "has tagCreate = null"),
        (
            "findTags",
            {"data": {"findTags": {"tags": [{"id": "7"}]}}},
            "lacks findTags.tags[0].name",
        ),
    ],
)
def test_an_answer_of_the_wrong_shape_keeps_the_work_queued(
    tmp_path: Path, match: str, answer: dict[str, Any], needle: str
) -> None:
    """Valid JSON that is not what was asked for: the write stays queued with a
    message naming the field, like a 5xx; nothing crashes, and it goes out once
    Stash answers properly."""
    from test_stash_people import catalog_with

    from tagd.records import Tag

    stash = StashServer().start()
    try:
        stash.state.add_image("/data/a.jpg")
        dog = [Tag("AI|Objects|dog", 0.9, "objects")]
        catalog = catalog_with(tmp_path / "c.db", {"a.jpg": dog})
        settings = settings_for(stash, Path("/srv"), api_key="")
        stash.mode, stash.canned_match, stash.canned = "canned", match, answer
        report = deliver_stash(catalog, settings)
        assert (report.failed, report.written) == (1, 0)
        [(_, sink, attempts, error)] = catalog.outbox_errors()
        assert sink == SINK and attempts == 1 and needle in error, error
        assert catalog.due(SINK, time.time()) == []  # backing off
        stash.mode = "ok"
        report = deliver_stash(catalog, settings, now=LATER)
        assert report.written == 1, report.errors
        assert image_tags(stash) == {"/data/a.jpg": ["dog", "tagd_Tagged"]}
        assert stash.invalid == []
        catalog.close()
    finally:
        stash.stop()


def test_tagd_scan_reports_an_empty_answer_instead_of_crashing(
    server: StashServer, cli: Any, state_dir: Path, tmp_path: Path, make_jpeg: Any
) -> None:
    """`{"data": {}}` (a proxy answering for Stash): `tagd scan` keeps the write
    queued and says why; `--from-stash` says it cannot list. No traceback."""
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    server.state.add_image("/data/a.jpg")
    off = "".join(
        f"[{name}]\nenabled = false\n"
        for name in ("objects", "ocr", "faces", "concepts", "clip", "duplicates", "xmp")
    )
    config = write_config(
        tmp_path / "config.toml",
        off + f'[stash]\nenabled = true\nurl = "{server.url}"\napi_key = "secret"\nretries = 0\n'
        f'path_mappings = [{{ stash = "/data", local = "{lib}" }}]\n',
    )
    server.mode, server.canned = "canned", {"data": {}}
    code, out, err = cli("--config", config, "scan", lib)
    assert code in (0, 1), err
    assert "stash: 0 updated, 0 unchanged, 1 queued for a retry" in out, out
    assert "lacks findImages" in out
    code, out, err = cli("--config", config, "scan", "--from-stash")
    assert code == 1 and "cannot list files from Stash: Stash's answer lacks" in err, err


def tagd_queries() -> list[str]:
    """Every query and mutation the Stash sink and source send, in every variant."""
    from tagd.scan import stash_source
    from tagd.sinks.stash import deliver as sink
    from tagd.sinks.stash import fields as stash_fields
    from tagd.sinks.stash import lookup as stash_lookup
    from tagd.sinks.stash import tags as stash_tags

    out = [*stash_lookup.COUNT.values(), stash_source.SCENES, stash_source.IMAGES]
    for performers in (False, True):
        for studio in (False, True):
            settings = parse_settings({"stash": {"performers": performers, "studio": studio}})
            lookup = stash_lookup.StashLookup(StashClient("http://x"), settings)
            out += [*lookup.find_query.values(), *lookup.list_query.values()]
    out += [stash_tags.FIND_TAGS, stash_tags.CREATE_TAG, stash_fields.FIND_PERFORMERS]
    out += [stash_fields.CREATE_PERFORMER, stash_fields.FIND_STUDIOS, stash_fields.CREATE_STUDIO]
    return [*out, *sink.BULK.values(), sink.CREATE_MARKER, sink.UPDATE_MARKER, sink.DESTROY_MARKER]


def schema_fields(schema: Any, query: str) -> list[tuple[str, str, bool, bool]]:
    """(name, GraphQL type, may be null, is a leaf) of every field `query` selects;
    a mutation's result never counts as "may be null" (null without an error
    means the mutation did not happen)."""
    from graphql import TypeInfo, TypeInfoVisitor, Visitor, is_non_null_type, parse, visit

    info = TypeInfo(schema)
    document = parse(query)
    mutation = document.definitions[0].operation.value == "mutation"  # type: ignore[attr-defined]
    found: list[tuple[str, str, bool, bool]] = []

    class Fields(Visitor):
        def enter_field(self, node: Any, *_: Any) -> None:
            kind = info.get_type()
            result = mutation and info.get_parent_type() is schema.mutation_type
            null = not is_non_null_type(kind) and not result
            found.append((node.name.value, str(kind), null, node.selection_set is None))

    visit(document, TypeInfoVisitor(info, Fields()))
    return found


def test_answer_checks_agree_with_stashs_schema() -> None:
    """The fields the answer check lets be null are exactly those Stash's schema
    lets be null in tagd's queries, and the leaves it types have those types."""
    from graphql import build_schema
    from stash_server import SCHEMA_FILE

    from tagd.sinks.stash.shape import LEAVES, NULLABLE, selection

    schema = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))
    nullable: set[str] = set()
    leaves: dict[str, set[str]] = {}
    for query in tagd_queries():
        assert selection(query) is not None, query  # every query is checked
        for name, kind, null, leaf in schema_fields(schema, query):
            if null:
                nullable.add(name)
            if leaf:
                leaves.setdefault(name, set()).add(kind.replace("!", ""))
    assert nullable == NULLABLE
    graphql_type = {"id": "ID", "int": "Int", "number": "Float", "str": "String"}
    graphql_type["strs"] = "[String]"
    for name, kind in LEAVES.items():
        assert leaves.get(name) == {graphql_type[kind]}, (name, leaves.get(name))
