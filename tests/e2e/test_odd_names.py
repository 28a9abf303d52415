"""File names that are not UTF-8 (b"caf\\xe9.jpg", written by an old Latin-1 system
onto a Linux disk), beside normal ones: real photos, real scans in real processes,
real sidecars read back by exiftool, the real daemon and a Stash stand-in."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXIFTOOL, PERSON_PHOTO, run_tagd, write_config
from stash_server import StashServer
from test_end_to_end import db_rows, tags_by_path
from test_service import running_daemon, stop, tagged_and_written, wait_until

from tagd.catalog.catalog import Catalog
from tagd.config import PathMapping, Settings, StashSettings
from tagd.paths import ESCAPE, escape_streams, shown
from tagd.records import Tag
from tagd.sinks.stash.deliver import SINK, deliver_stash

ODD_FILE = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 e-acute
ODD_DIR = os.fsdecode(b"F\xfcr Oma")  # Latin-1 u-umlaut
ODD_IN_DIR = os.fsdecode(b"\xff\xfe.jpg")  # bytes no encoding makes text of
PERSON = "AI|Objects|person"

# Every test here runs tagd with its default analyzers.
pytestmark = pytest.mark.usefixtures("default_models")


def sidecar(photo: Path) -> Path:
    return photo.with_name(photo.name + ".xmp")


def sidecar_tags(photo: Path) -> set[str]:
    """tagd's hierarchical keywords in the photo's sidecar, as exiftool reads them."""
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed")
    done = subprocess.run(
        [EXIFTOOL, "-j", "-XMP-lr:HierarchicalSubject", sidecar(photo)],
        capture_output=True,
        check=True,
    )
    value = json.loads(done.stdout.decode("utf-8", "replace"))[0].get("HierarchicalSubject")
    values = value if isinstance(value, list) else [value] if value else []
    return {v for v in values if v.startswith("AI|")}


@pytest.fixture
def library(coco_photos, tmp_path: Path) -> tuple[Path, list[Path]]:
    """(library, photos): four real photos, two under names that are not UTF-8 (one
    of them, the one showing a person, in a folder whose name is not UTF-8 either)."""
    photos = coco_photos(4, tmp_path / "lib", first=PERSON_PHOTO)
    lib = photos[0].parent
    (lib / ODD_DIR).mkdir()
    person = photos[0].rename(lib / ODD_DIR / ODD_IN_DIR)
    odd = photos[1].rename(lib / ODD_FILE)
    return lib, [person, odd, photos[2], photos[3]]


def tagd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run_tagd(*args)
    assert "Traceback" not in done.stderr, done.stderr
    return done


# ---------------------------------------------------------------- the catalog


def test_catalog_keeps_such_paths_as_their_bytes(tmp_path: Path) -> None:
    """Stored as they are, read back as the same str, found by folder, in byte order."""
    odd_dir = "/lib/" + ODD_DIR
    paths = ["/lib/a.jpg", "/lib/" + ODD_FILE, odd_dir + "/x.jpg", "/lib/z.jpg", "/libz/y.jpg"]
    catalog = Catalog(tmp_path / "c.db")
    with catalog.transaction():
        ids = {p: catalog.add_file(p, "image", 1, 1, None, None) for p in paths}
    assert [r.path for r in catalog.records({})] == sorted(paths, key=os.fsencode)
    assert sorted(catalog.files_under("/lib"), key=os.fsencode) == sorted(
        paths[:4], key=os.fsencode
    )
    assert list(catalog.files_under(odd_dir)) == [odd_dir + "/x.jpg"]
    assert catalog.file_by_path("/lib/" + ODD_FILE).id == ids["/lib/" + ODD_FILE]  # type: ignore[union-attr]
    found = catalog.files_starting_with("/lib/caf")
    assert [(f.path, f.content_id) for f in found] == [("/lib/" + ODD_FILE, None)]
    # A move into the odd folder, and a message quoting an odd name (shown escaped).
    with catalog.transaction():
        catalog.update_file(
            ids["/lib/a.jpg"],
            path=odd_dir + "/" + ODD_IN_DIR,
            size=1,
            mtime_ns=1,
            content_id=None,
            error=f"cannot read {ODD_FILE}",
        )
        catalog.enqueue([ids["/lib/z.jpg"]], "xmp")
        catalog.outbox_failed(ids["/lib/z.jpg"], "xmp", f"{odd_dir}: read-only", 30.0)
    assert sorted(catalog.files_under(odd_dir)) == sorted(
        [odd_dir + "/x.jpg", odd_dir + "/" + ODD_IN_DIR]
    )
    assert catalog.file_by_path(odd_dir + "/" + ODD_IN_DIR).error == "cannot read caf\\xe9.jpg"  # type: ignore[union-attr]
    assert catalog.outbox_errors()[0][3] == "/lib/F\\xfcr Oma: read-only"
    types = {r[0] for r in catalog.con.execute("SELECT typeof(path) FROM files")}
    assert types == {"text"}
    catalog.close()


def test_names_are_shown_escaped_and_streams_never_fail_on_them() -> None:
    assert shown("/lib/" + ODD_FILE) == "/lib/caf\\xe9.jpg"
    assert shown(Path("/lib") / ODD_DIR / ODD_IN_DIR) == "/lib/F\\xfcr Oma/\\xff\\xfe.jpg"
    assert shown("/lib/café.jpg") == "/lib/café.jpg"  # UTF-8 names stay as they are
    escape_streams()
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors=ESCAPE)
    stream.write(f"/lib/{ODD_FILE} café\n")
    stream.flush()
    assert raw.getvalue() == "/lib/caf\\xe9.jpg café\n".encode()


# ---------------------------------------------------------------- tagd scan and the reports


def test_scan_tags_them_and_writes_their_sidecars(state_dir: Path, library) -> None:
    lib, photos = library
    done = tagd("scan", lib)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "indexed 4 files: 4 new" in done.stdout
    assert "analysed 4 files" in done.stdout and "; 0 failed" in done.stdout
    assert "sidecars written: 4; failed: 0" in done.stdout
    stored = db_rows(state_dir, "SELECT path, typeof(path) FROM files")
    assert {r[0] for r in stored} == {str(p) for p in photos}  # the same str back
    assert {r[1] for r in stored} == {"text"}
    tags = tags_by_path(state_dir)
    assert PERSON in tags[str(photos[0])]
    for photo in photos:
        assert tags.get(str(photo)), photo
        assert sidecar_tags(photo) == tags[str(photo)], photo
    # Next to each photo, named from its own bytes.
    assert sorted(os.listdir(os.fsencode(lib / ODD_DIR))) == [b"\xff\xfe.jpg", b"\xff\xfe.jpg.xmp"]


def test_reports_show_them_escaped(state_dir: Path, library) -> None:
    lib, photos = library
    person, odd = photos[0], photos[1]
    assert tagd("scan", lib).returncode == 0

    done = tagd("tags", odd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{shown(odd)}: ok\n")
    assert "caf\\xe9.jpg" in done.stdout and "  AI|" in done.stdout

    done = tagd("search", "person")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if shown(person) in line and PERSON in line]

    done = tagd("search", "--json", "--path", lib / ODD_DIR)
    assert [hit["path"] for hit in json.loads(done.stdout)] == [shown(person)]

    done = tagd("export")
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in done.stdout.splitlines()]
    assert {e["path"] for e in exported} == {shown(p) for p in photos}
    assert all(e["status"] == "ok" and e["tags"] for e in exported)
    out = lib.parent / "export.csv"
    assert tagd("export", "--format", "csv", "-o", out).returncode == 0
    assert f"{lib}/caf\\xe9.jpg,image,ok," in out.read_text("utf-8")

    done = tagd("status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files: 4 (4 images, 0 videos): 4 ok, 0 pending, 0 error" in done.stdout

    done = tagd("dupes", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["hashed"] == 4


def test_a_move_or_rename_keeps_their_results(state_dir: Path, library) -> None:
    lib, photos = library
    assert tagd("scan", lib).returncode == 0
    before = tags_by_path(state_dir)
    # The odd file into the odd folder under another odd name; a normal file renamed
    # to an odd name.
    moved = photos[1].rename(lib / ODD_DIR / os.fsdecode(b"caf\xe9 (2).jpg"))
    renamed = photos[2].rename(lib / os.fsdecode(b"\xe0 trier.jpg"))
    for old in (photos[1], photos[2]):
        sidecar(old).unlink()  # what a file manager moving the photo alone leaves

    done = tagd("scan", lib)
    assert done.returncode == 0, done.stderr
    assert "indexed 4 files: 0 new, 0 changed, 2 moved, 0 deleted" in done.stdout
    assert "analysed 0 files" in done.stdout
    after = tags_by_path(state_dir)
    assert after[str(moved)] == before[str(photos[1])]
    assert after[str(renamed)] == before[str(photos[2])]
    assert str(photos[1]) not in after and str(photos[2]) not in after
    for photo in (moved, renamed):
        assert sidecar_tags(photo) == after[str(photo)]
    assert tagd("tags", moved).stdout.startswith(f"{shown(moved)}: ok")


# ---------------------------------------------------------------- the daemon


def test_the_daemon_tags_them_too(tmp_path: Path, state_dir: Path, library) -> None:
    lib, photos = library
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[daemon]\nschedule = ""\nwatch = false\n',
    )
    with running_daemon(tmp_path, state_dir, config) as (proc, log, notify):
        notify.wait_for("READY=1", 60, proc)
        wait_until(lambda: tagged_and_written(state_dir, photos), 60, "the first scan")
        code, _ = stop(proc)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text and "scan (start) failed" not in text, text
    assert "4 analysed (0 failed)" in text
    assert all(sidecar(p).exists() for p in photos)


# ---------------------------------------------------------------- Stash


@pytest.fixture
def server() -> Iterator[StashServer]:
    stash = StashServer(api_key="secret").start()
    yield stash
    stash.stop()
    assert stash.invalid == [], "tagd sent requests real Stash would reject"


def test_stash_skips_them_with_a_warning(
    server: StashServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stash takes paths as text: such a file is left out (and out of the outbox),
    the others are written."""
    catalog = Catalog(tmp_path / "c.db")
    with catalog.transaction():
        ids = []
        for n, name in enumerate(("good.jpg", ODD_FILE)):
            cid = catalog.ensure_content(f"fp-{n}", "image")
            catalog.replace_tags(cid, "objects", [Tag("AI|Objects|dog", 0.9, "objects")])
            ids.append(catalog.add_file(f"/srv/p/{name}", "image", 1, 1, cid, None))
        catalog.enqueue(ids, SINK)
    server.state.add_image("/data/p/good.jpg")
    stash = StashSettings(
        enabled=True,
        url=server.url,
        api_key="secret",
        timeout=5.0,
        retries=0,
        path_mappings=[PathMapping(stash="/data", local="/srv")],
    )
    settings = dataclasses.replace(Settings(), stash=stash)
    with caplog.at_level(logging.WARNING, logger="tagd"):
        report = deliver_stash(catalog, settings, now=time.time())
    assert (report.written, report.failed) == (1, 0), report.errors
    assert catalog.counts()["outbox"] == 0
    warned = [r.getMessage() for r in caplog.records if "caf" in r.getMessage()]
    assert warned == [
        "stash: /srv/p/caf\\xe9.jpg: not sent to Stash: the name is not UTF-8 "
        "(/data/p/caf\\xe9.jpg there) and Stash takes paths as text; rename the file to have "
        "its tags in Stash"
    ]
    images = {
        i.path: sorted(server.state.tags[t].name for t in i.tag_ids)
        for i in server.state.images.values()
    }
    assert images == {"/data/p/good.jpg": ["dog", "tagd_Tagged"]}
    catalog.close()
