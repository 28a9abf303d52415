"""Face regions in sidecars: real photos, real sidecars, read back with exiftool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from tagd.config import ConfigError, parse_settings
from tagd.sinks.xmp.regions import face_region
from tagd.sinks.xmp.sidecar import sidecar_path, sync_sidecar

EXIFTOOL = shutil.which("exiftool")
FACE_PHOTO = Path("/work/shared/eval/faces/images/couple.jpg")

pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")


def exif(path: Path, *tags: str) -> dict:
    out = subprocess.run(
        [str(EXIFTOOL), "-j", "-struct", *tags, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)[0]


def as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    if not FACE_PHOTO.exists():
        pytest.skip(f"{FACE_PHOTO} is not available")
    # Never write next to the shared original.
    dest = tmp_path / "couple.jpg"
    shutil.copyfile(FACE_PHOTO, dest)
    return dest


def dims(path: Path) -> tuple[int, int]:
    h, w = cv2.imread(str(path)).shape[:2]
    return w, h


def test_regions_keywords_and_people_read_back_by_exiftool(photo: Path) -> None:
    w, h = dims(photo)
    faces = [
        face_region("Alice", (w * 0.1, h * 0.2, w * 0.3, h * 0.5), w, h),
        face_region(None, (w * 0.6, h * 0.2, w * 0.8, h * 0.5), w, h),
    ]
    change = sync_sidecar(photo, ["AI|People|Alice"], faces=faces, dims=(w, h))
    assert len(change.regions_added) == 2
    sidecar = sidecar_path(photo)
    info = exif(sidecar, "-XMP:all")
    regions = info["RegionInfo"]
    assert regions["AppliedToDimensions"] == {"W": w, "H": h, "Unit": "pixel"}
    (alice,) = [r for r in regions["RegionList"] if r.get("Name") == "Alice"]
    (unnamed,) = [r for r in regions["RegionList"] if "Name" not in r]
    assert alice["Type"] == "Face" and unnamed["Type"] == "Face"
    area = alice["Area"]
    assert area.pop("Unit") == "normalized"
    # Normalised centre and size of the box, within the written 6 decimals.
    assert area == pytest.approx({"X": 0.2, "Y": 0.35, "W": 0.2, "H": 0.3}, abs=2e-3)
    assert as_list(info["PersonInImage"]) == ["Alice"]
    assert as_list(info["Subject"]) == ["Alice"]
    assert as_list(info["HierarchicalSubject"]) == ["AI|People|Alice"]
    assert as_list(info["TagsList"]) == ["AI/People/Alice"]
    # The MWG composite view exiftool offers for digiKam-style readers.
    listed = exif(sidecar, "-XMP-mwg-rs:all")["RegionInfo"]["RegionList"]
    assert sorted(r.get("Name", "") for r in listed) == ["", "Alice"]


def test_persons_regions_survive_and_rerun_is_noop(photo: Path) -> None:
    w, h = dims(photo)
    sidecar = sidecar_path(photo, "stem")
    subprocess.run(
        [
            str(EXIFTOOL),
            "-q",
            "-o",
            str(sidecar),
            f"-XMP-mwg-rs:RegionInfo={{AppliedToDimensions={{W={w},H={h},Unit=pixel}},"
            "RegionList=[{Area={X=0.7,Y=0.35,W=0.2,H=0.3,Unit=normalized},Name=Carol,"
            "Type=Face,Description=mine},{Area={X=0.1,Y=0.9,W=0.1,H=0.1,Unit=normalized},"
            "Name=Rex,Type=Pet}]}",
            "-XMP-dc:Subject=Holiday",
            "-XMP-iptcExt:PersonInImage=Carol",
            str(photo),
        ],
        check=True,
    )
    faces = [
        face_region("Alice", (w * 0.1, h * 0.2, w * 0.3, h * 0.5), w, h),
        # The same face Carol's region marks: tagd must not add a second region for it.
        face_region("Bob", (w * 0.6, h * 0.2, w * 0.8, h * 0.5), w, h),
    ]
    tags = ["AI|People|Alice", "AI|People|Bob"]
    sync_sidecar(photo, tags, naming="stem", faces=faces, dims=(w, h))
    before = sidecar.read_bytes(), sidecar.stat().st_mtime_ns
    assert not sync_sidecar(photo, tags, naming="stem", faces=faces, dims=(w, h)).changed
    assert (sidecar.read_bytes(), sidecar.stat().st_mtime_ns) == before

    info = exif(sidecar, "-XMP:all")
    names = [r.get("Name") for r in info["RegionInfo"]["RegionList"]]
    assert names == ["Carol", "Rex", "Alice"]
    carol = info["RegionInfo"]["RegionList"][0]
    assert carol["Description"] == "mine" and carol["Area"]["X"] == 0.7
    assert as_list(info["PersonInImage"]) == ["Carol", "Alice", "Bob"]
    assert as_list(info["Subject"]) == ["Holiday", "Alice", "Bob"]

    # Alice renamed to Alicia, Bob gone: only tagd's entries change.
    renamed = [face_region("Alicia", (w * 0.1, h * 0.2, w * 0.3, h * 0.5), w, h)]
    change = sync_sidecar(photo, ["AI|People|Alicia"], naming="stem", faces=renamed, dims=(w, h))
    assert change.regions_removed and change.regions_added
    info = exif(sidecar, "-XMP:all")
    assert [r.get("Name") for r in info["RegionInfo"]["RegionList"]] == ["Carol", "Rex", "Alicia"]
    assert as_list(info["PersonInImage"]) == ["Carol", "Alicia"]
    assert as_list(info["Subject"]) == ["Holiday", "Alicia"]

    # No faces wanted any more (xmp.faces = "none"): tagd's region and name go, the rest stays.
    sync_sidecar(photo, [], naming="stem", faces=[], dims=(w, h))
    info = exif(sidecar, "-XMP:all")
    assert [r.get("Name") for r in info["RegionInfo"]["RegionList"]] == ["Carol", "Rex"]
    assert info["RegionInfo"]["AppliedToDimensions"] == {"W": w, "H": h, "Unit": "pixel"}
    assert as_list(info["PersonInImage"]) == ["Carol"]
    assert "Regions" not in exif(sidecar, "-XMP-tagd:all")


def test_only_tagd_regions_removes_the_whole_tree(photo: Path) -> None:
    w, h = dims(photo)
    faces = [face_region("Alice", (10, 10, 50, 60), w, h)]
    sync_sidecar(photo, ["AI|People|Alice"], faces=faces, dims=(w, h))
    sync_sidecar(photo, [], faces=[], dims=(w, h))
    info = exif(sidecar_path(photo), "-XMP:all")
    assert "RegionInfo" not in info and "PersonInImage" not in info and "Subject" not in info


def test_faces_key_is_validated() -> None:
    assert parse_settings({"xmp": {"faces": "all"}}).xmp.faces == "all"
    with pytest.raises(ConfigError, match=r"xmp\.faces"):
        parse_settings({"xmp": {"faces": "some"}})


DIMS_ONLY = """<x:xmpmeta xmlns:x='adobe:ns:meta/'>
 <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
  <rdf:Description rdf:about=''
    xmlns:mwg-rs='http://www.metadataworkinggroup.com/schemas/regions/'
    xmlns:stDim='http://ns.adobe.com/xap/1.0/sType/Dimensions#'
    xmlns:xmp='http://ns.adobe.com/xap/1.0/'>
   <mwg-rs:Regions rdf:parseType='Resource'>
    <mwg-rs:AppliedToDimensions stDim:w='640' stDim:h='480' stDim:unit='pixel'/>
    <xmp:Label>kept</xmp:Label>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_stale_dimensions_without_regions_are_replaced_in_place(photo: Path) -> None:
    """A region tree that holds no region but old dimensions: tagd's faces are measured
    against the photo, so its dimensions replace the old ones where they were."""
    w, h = dims(photo)
    sidecar = sidecar_path(photo)
    sidecar.write_text(DIMS_ONLY, encoding="utf-8")
    faces = [face_region("Alice", (w * 0.1, h * 0.2, w * 0.3, h * 0.5), w, h)]
    sync_sidecar(photo, ["AI|People|Alice"], faces=faces, dims=(w, h))
    regions = exif(sidecar, "-XMP:all")["RegionInfo"]
    assert regions["AppliedToDimensions"] == {"W": w, "H": h, "Unit": "pixel"}
    assert [r["Name"] for r in regions["RegionList"]] == ["Alice"]
    text = sidecar.read_text(encoding="utf-8")
    # Same place (before the other field), and that field untouched.
    assert text.index("<mwg-rs:AppliedToDimensions") < text.index("<xmp:Label>kept</xmp:Label>")
    assert text.startswith(DIMS_ONLY[: DIMS_ONLY.index("    <mwg-rs:AppliedToDimensions")])
    # tagd's region gone again: so are the list and the dimensions, not the other field.
    sync_sidecar(photo, [], faces=[], dims=(w, h))
    text = sidecar.read_text(encoding="utf-8")
    assert "RegionList" not in text and "AppliedToDimensions" not in text
    assert "   <mwg-rs:Regions rdf:parseType='Resource'>\n    <xmp:Label>kept</xmp:Label>" in text
