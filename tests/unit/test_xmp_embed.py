"""Tests for tagd.sinks.xmp.embed: XMP written into real JPEG/PNG/WebP/TIFF files, read
back with exiftool, pixels compared, and writes killed at every step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tagd.catalog.catalog import Catalog
from tagd.config import ConfigError, LibrarySettings, parse_settings
from tagd.records import Tag
from tagd.scan.index import index_root
from tagd.scan.walk import Walker
from tagd.sinks.xmp.deliver import deliver_xmp
from tagd.sinks.xmp.embed import KILL_ENV, recover, sync_embedded
from tagd.sinks.xmp.sidecar import XmpWriteError, sidecar_path

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")

TAGS = ["AI|Objects|cat", "AI|Objects|dog", "AI|Scenes|beach"]
EXTS = ["jpg", "png", "webp", "tif"]
OLD_TIME = 1_500_000_000


def make_image(path: Path) -> Path:
    rng = np.random.default_rng(7)
    pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), pixels)
    os.utime(path, (OLD_TIME, OLD_TIME))
    return path


def pixels(path: Path) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)


def exif_keys(path: Path) -> dict:
    out = subprocess.run(
        [EXIFTOOL, "-j", "-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)[0]


def as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tagd-" in p.name)


@pytest.mark.parametrize("ext", EXTS)
def test_embedded_keywords_read_back_pixels_kept_rerun_noop(tmp_path: Path, ext: str) -> None:
    photo = make_image(tmp_path / f"photo.{ext}")
    before = pixels(photo)
    change = sync_embedded(photo, TAGS)
    assert change.added == tuple(TAGS) and change.sidecar == photo
    got = exif_keys(photo)
    assert sorted(as_list(got["Subject"])) == ["beach", "cat", "dog"]
    assert sorted(as_list(got["HierarchicalSubject"])) == sorted(TAGS)
    assert "AI/Objects/dog" in as_list(got["TagsList"])
    assert np.array_equal(pixels(photo), before)
    assert photo.stat().st_mtime == OLD_TIME  # preserve_mtime defaults on
    assert not sidecar_path(photo).exists() and leftovers(tmp_path) == []
    data, mtime = photo.read_bytes(), photo.stat().st_mtime_ns
    assert not sync_embedded(photo, TAGS).changed
    assert photo.read_bytes() == data and photo.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_peoples_embedded_keywords_survive(tmp_path: Path, ext: str) -> None:
    photo = make_image(tmp_path / f"photo.{ext}")
    subprocess.run(
        [
            EXIFTOOL,
            "-q",
            "-overwrite_original",
            "-XMP-dc:Subject=Holiday",
            "-XMP-dc:Subject=dog",
            "-XMP-xmp:Rating=4",
            str(photo),
        ],
        check=True,
    )
    sync_embedded(photo, TAGS)
    sync_embedded(photo, [])  # tagd's go again; "dog" was a person's first
    got = exif_keys(photo)
    assert as_list(got["Subject"]) == ["Holiday", "dog"]
    assert "HierarchicalSubject" not in got
    rating = subprocess.run(
        [EXIFTOOL, "-s3", "-XMP:Rating", str(photo)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert rating == "4"


def test_preserve_mtime_off_updates_mtime(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.jpg")
    sync_embedded(photo, TAGS, preserve_mtime=False)
    assert photo.stat().st_mtime > OLD_TIME + 10**6


def test_existing_sidecar_is_left_alone(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.jpg")
    side = sidecar_path(photo)
    side.write_bytes(b"not touched")
    sync_embedded(photo, TAGS)
    assert side.read_bytes() == b"not touched"


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.png")
    data = photo.read_bytes()
    assert sync_embedded(photo, TAGS, dry_run=True).added == tuple(TAGS)
    assert photo.read_bytes() == data and leftovers(tmp_path) == []


def test_read_only_file_and_folder_refused(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.jpg")
    data = photo.read_bytes()
    photo.chmod(0o444)
    with pytest.raises(XmpWriteError, match="file is read-only"):
        sync_embedded(photo, TAGS)
    photo.chmod(0o644)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(XmpWriteError, match="folder is read-only"):
            sync_embedded(photo, TAGS)
    finally:
        tmp_path.chmod(0o755)
    assert photo.read_bytes() == data and leftovers(tmp_path) == []


def test_undecodable_image_is_not_written(tmp_path: Path) -> None:
    photo = tmp_path / "broken.jpg"
    photo.write_bytes(make_image(tmp_path / "ok.jpg").read_bytes()[:200])
    data = photo.read_bytes()
    with pytest.raises(XmpWriteError):
        sync_embedded(photo, TAGS)
    assert photo.read_bytes() == data and leftovers(tmp_path) == []


def test_config_embed_is_validated() -> None:
    settings = parse_settings({"xmp": {"embed": ["jpeg", "webp"], "preserve_mtime": False}})
    assert settings.xmp.embed == ["jpeg", "webp"] and not settings.xmp.preserve_mtime
    with pytest.raises(ConfigError, match=r"xmp\.embed"):
        parse_settings({"xmp": {"embed": ["gif"]}})
    with pytest.raises(ConfigError, match=r"xmp\.embed"):
        parse_settings({"xmp": {"embed": "jpeg"}})


_CHILD = """
import sys
from pathlib import Path
from tagd.sinks.xmp.embed import sync_embedded
sync_embedded(Path(sys.argv[1]), sys.argv[2:])
"""


def test_killed_at_every_step_recovers(tmp_path: Path) -> None:
    reference = make_image(tmp_path / "reference.jpg")
    old = reference.read_bytes()
    sync_embedded(reference, TAGS)
    new = reference.read_bytes()
    assert new != old
    for step in range(1, 6):
        folder = tmp_path / f"step{step}"
        folder.mkdir()
        photo = folder / "photo.jpg"
        photo.write_bytes(old)
        os.utime(photo, (OLD_TIME, OLD_TIME))
        env = {**os.environ, KILL_ENV: str(step)}
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(photo), *TAGS], env=env, timeout=60
        )
        assert proc.returncode == -9, f"step {step}: child was not killed"
        assert photo.read_bytes() in (old, new), f"step {step}: torn file"
        assert pixels(photo) is not None
        sync_embedded(photo, TAGS)
        assert leftovers(folder) == [], f"step {step}"
        assert photo.read_bytes() == new, f"step {step}"
        assert photo.stat().st_mtime == OLD_TIME


def test_recover_restores_damaged_file_from_backup(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.png")
    old = photo.read_bytes()
    (tmp_path / ".photo.png.tagd-backup").write_bytes(old)
    (tmp_path / ".photo.png.tagd-tmp").write_bytes(b"half")
    photo.write_bytes(old[:40])  # as if the file itself had been torn
    recover(photo)
    assert photo.read_bytes() == old and leftovers(tmp_path) == []


def test_deliver_embeds_for_listed_formats_and_a_rescan_sees_no_change(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    jpeg = make_image(library / "a.jpg")
    png = make_image(library / "b.png")  # not listed in xmp.embed: gets a sidecar
    lib = LibrarySettings()
    walker = Walker(lib.image_extensions, lib.video_extensions, lib.exclude)
    with Catalog(tmp_path / "catalog.db") as catalog:
        assert index_root(catalog, walker, str(library), ["xmp"]).new == 2
        for path in (jpeg, png):
            known = catalog.file_by_path(str(path))
            assert known is not None and known.content_id is not None
            catalog.replace_tags(known.content_id, "objects", [Tag(TAGS[1], 0.9, "objects")])
        settings = parse_settings({"xmp": {"embed": ["jpeg"]}})
        told: list[tuple[int, int]] = []
        report = deliver_xmp(catalog, settings, progress=lambda *p: told.append(p))
        assert report.written == 2 and report.failed == 0, report.errors
        assert told == [(0, 2), (1, 2)]  # between files: the daemon's watchdog heartbeat
        assert as_list(exif_keys(jpeg)["HierarchicalSubject"]) == [TAGS[1]]
        assert not sidecar_path(jpeg).exists() and sidecar_path(png).exists()
        # tagd's own rewrite must not turn the photo into new, unanalysed content.
        again = index_root(catalog, walker, str(library), ["xmp"])
        assert (again.new, again.changed, again.moved) == (0, 0, 0)


def test_jpeg_xmp_beyond_one_segment_is_refused_untouched(tmp_path: Path) -> None:
    # ~300 bytes of XMP per tag: far beyond the 65,502 bytes of the standard JPEG segment.
    many = [f"AI|Objects|{'long name ' * 4}{i}" for i in range(400)]
    photo = make_image(tmp_path / "photo.jpg")
    data = photo.read_bytes()
    with pytest.raises(XmpWriteError, match=r"photo\.jpg: the XMP packet is .* at most 65,502"):
        sync_embedded(photo, many)
    assert photo.read_bytes() == data and leftovers(tmp_path) == []
    png = make_image(tmp_path / "photo.png")  # a PNG chunk has room for it
    assert sorted(sync_embedded(png, many).added) == sorted(many)
    assert len(as_list(exif_keys(png)["HierarchicalSubject"])) == 400
