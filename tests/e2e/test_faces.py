"""Faces and people on real photos (../shared/eval/faces) with the installed models:
detection + landmarks, descriptors, clustering in a real catalog through `tagd scan`,
naming / merging / splitting with tags and sidecars, the contact sheet, export."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, require_models
from PIL import Image

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.media.image import decode_image
from tagd.people import ops, store
from tagd.runtime.face_embedding import distance
from tagd.runtime.manifest import load_manifest

FACES = SHARED / "eval" / "faces" / "images"
# id00: img10, img11, img5; id01: img27, img28; id10's img20 alone (its twin img21
# arrives in a later scan).
ID00 = ("img10.jpg", "img11.jpg", "img5.jpg")
ID01 = ("img27.jpg", "img28.jpg")
LONELY, TWIN = "img20.jpg", "img21.jpg"
OTHERS_OFF = "".join(
    f"[{name}]\nenabled = false\n" for name in ("objects", "ocr", "concepts", "clip", "nsfw")
)


def _skip_without_data() -> None:
    if not FACES.is_dir():
        pytest.skip(f"shared eval faces {FACES} are absent")


@pytest.fixture(scope="module")
def analyzer():  # type: ignore[no-untyped-def]
    _skip_without_data()
    from tagd.analyzers.faces import build

    md = require_models()
    built = build(Settings(), load_manifest(md), md)
    assert built is not None
    return built


def _analyze(analyzer, name: str):  # type: ignore[no-untyped-def]
    image = decode_image((FACES / name).read_bytes(), min_long_side=analyzer.min_long_side)
    return analyzer.analyze([image.image])[0]


def test_one_face_with_landmarks_inside_its_box(analyzer) -> None:  # type: ignore[no-untyped-def]
    found = _analyze(analyzer, "img10.jpg")
    assert len(found) == 1
    face = found[0]
    assert face.label == "face" and face.score >= analyzer.min_score
    x0, y0, x1, y1 = face.box
    points = np.array(face.points).reshape(5, 2)
    assert ((points[:, 0] > x0) & (points[:, 0] < x1)).all()
    assert ((points[:, 1] > y0) & (points[:, 1] < y1)).all()
    assert face.vector is not None and face.vector.shape == (128,)
    # Eyes above the nose, the nose above the mouth corners.
    assert points[:2, 1].max() < points[2, 1] < points[3:, 1].min()


def test_several_faces_on_a_group_photo(analyzer) -> None:  # type: ignore[no-untyped-def]
    assert len(_analyze(analyzer, "selfie-many-people.jpg")) >= 4
    assert len(_analyze(analyzer, "couple.jpg")) >= 2


def test_same_person_closer_than_dlib_threshold(analyzer) -> None:  # type: ignore[no-untyped-def]
    a, b, other = (_analyze(analyzer, n)[0].vector for n in ("img1.jpg", "img2.jpg", "img26.jpg"))
    assert distance(a, b) < 0.6
    assert distance(a, other) > 0.6 and distance(b, other) > 0.6


def test_model_sha_combines_both_models(analyzer) -> None:  # type: ignore[no-untyped-def]
    sha = analyzer.model_sha256
    assert len(sha) == 64
    assert sha not in (analyzer.model.spec.sha256, analyzer.embedder.spec.sha256)


# ---------------------------------------------------------------- through `tagd scan`


@dataclasses.dataclass
class Library:
    root: Path
    config: Path
    state: Path

    def catalog(self) -> Catalog:
        return Catalog(self.state / "catalog.db")

    def settings(self) -> Settings:
        from tagd.config import load_settings

        return load_settings(self.config)

    def tagd(self, *args: str | Path) -> int:
        from tagd.cli.main import main

        return main(["--config", str(self.config), *map(str, args)])

    def person_of(self, name: str) -> int | None:
        with self.catalog() as cat:
            found = cat.file_by_path(str(self.root / name))
            assert found is not None and found.content_id is not None
            faces = cat.detections(found.content_id, "faces")
            assert faces, name
            big = max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
            return big.person_id


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, analyzer) -> Iterator[Library]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("people")
    root = tmp / "photos"
    root.mkdir()
    for name in (*ID00, *ID01, LONELY):
        shutil.copyfile(FACES / name, root / name)  # copies: scan writes sidecars
    state = tmp / "state"
    config = tmp / "config.toml"
    config.write_text(f'{OTHERS_OFF}[daemon]\nstate_dir = "{state}"\n', encoding="utf-8")
    lib = Library(root, config, state)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TAGD_STATE_DIR", raising=False)
        assert lib.tagd("scan", root) == 0
        yield lib


def test_scan_clusters_identities_and_keeps_a_singleton_waiting(library: Library) -> None:
    id00 = {library.person_of(n) for n in ID00}
    id01 = {library.person_of(n) for n in ID01}
    assert len(id00) == 1 and None not in id00
    assert len(id01) == 1 and None not in id01
    assert id00 != id01
    assert library.person_of(LONELY) is None  # no one like it yet: waits


def test_a_later_scan_wakes_the_waiting_face(library: Library) -> None:
    shutil.copyfile(FACES / TWIN, library.root / TWIN)
    assert library.tagd("scan", library.root) == 0
    lonely, twin = library.person_of(LONELY), library.person_of(TWIN)
    assert lonely is not None and lonely == twin


def test_naming_tags_the_catalog_and_the_sidecar(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    person = library.person_of(ID00[0])
    assert library.tagd("people", "name", str(person), "Alice") == 0
    with library.catalog() as cat:
        for name in ID00:
            found = cat.file_by_path(str(library.root / name))
            assert "AI|People|Alice" in {t.name for t in cat.tags(found.content_id)}
        queued = {p for _, p, _ in cat.due("xmp", now=1e12)}
    assert {str(library.root / n) for n in ID00} <= queued
    capsys.readouterr()
    assert library.tagd("scan", "--dry-run", library.root) == 0  # shows, writes nothing
    shown = capsys.readouterr().out
    assert "+ AI|People|Alice" in shown and "+ face region" in shown
    assert library.tagd("scan", library.root) == 0  # writes the queued sidecars
    for name in ID00:
        text = (library.root / f"{name}.xmp").read_text(encoding="utf-8")
        assert "AI|People|Alice" in text
    other = library.root / f"{ID01[0]}.xmp"  # an unnamed cluster makes no tag
    assert not other.exists() or "People" not in other.read_text(encoding="utf-8")
    # A second name for another person may not take Alice's.
    assert library.tagd("people", "name", str(library.person_of(ID01[0])), "alice") == 2


def test_split_then_merge_moves_tags(library: Library) -> None:
    alice = library.person_of(ID00[0])
    with library.catalog() as cat:
        moved = [f.detection_id for f in cat.faces_of(alice) if f.path.endswith(ID00[2])]
    assert library.tagd("people", "split", str(alice), *map(str, moved)) == 0
    split_off = library.person_of(ID00[2])
    assert split_off not in (None, alice)
    settings = library.settings()
    with library.catalog() as cat:
        content = cat.file_by_path(str(library.root / ID00[2])).content_id
        assert not [t for t in cat.tags(content) if "People" in t.name]
        ops.merge(cat, settings, str(alice), str(split_off))
        assert "AI|People|Alice" in {t.name for t in cat.tags(content)}
        assert store.person(cat, str(split_off)) is None
    assert library.person_of(ID00[2]) == alice


def test_sheet_is_a_png_of_the_expected_size(library: Library, tmp_path: Path) -> None:
    from tagd.people.sheet import LABEL_H, TILE

    out = tmp_path / "alice.png"
    assert library.tagd("people", "sheet", "Alice", "-o", out) == 0
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == (len(ID00) * TILE, TILE + LABEL_H)
        pixels = np.asarray(im.convert("L"))
    assert pixels[:TILE].std() > 20  # real crops, not a blank sheet


def test_export_has_faces_with_person_and_cluster(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert library.tagd("export") == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    face = rows[ID00[0]]["faces"][0]
    assert set(face) >= {"box", "score", "person", "cluster"}
    assert face["person"] == "Alice" and isinstance(face["cluster"], int)
    assert len(face["box"]) == 4
    assert all(f["person"] is None for f in rows[ID01[0]]["faces"])


def _alice(library: Library) -> int | None:
    """The person of ID00's photos, named Alice (here, when the test runs alone)."""
    alice = library.person_of(ID00[0])
    with library.catalog() as cat:
        if store.person(cat, "Alice") is None:
            ops.name(cat, library.settings(), str(alice), "Alice")
    return alice


def _assert_alice_tagged(library: Library, cat: Catalog) -> None:
    for name in ID00:
        found = cat.file_by_path(str(library.root / name))
        assert found is not None and found.content_id is not None
        assert "AI|People|Alice" in {t.name for t in cat.tags(found.content_id)}


def test_a_new_face_model_keeps_the_names(library: Library) -> None:
    """A re-analysis (what a new detector or embedder triggers) replaces the face
    rows; the people and their names must carry over to the new faces."""
    alice = _alice(library)
    with library.catalog() as cat:
        before = cat.con.execute("SELECT MAX(id) FROM detections").fetchone()[0]
        # Pretend the faces were made by another model version.
        cat.con.execute("UPDATE analyses SET model_sha256 = 'old' WHERE analyzer = 'faces'")
    assert library.tagd("scan", library.root) == 0
    with library.catalog() as cat:
        after = cat.con.execute("SELECT MIN(id) FROM detections WHERE analyzer = 'faces'")
        assert after.fetchone()[0] > before  # every face row is new
        _assert_alice_tagged(library, cat)
    assert all(library.person_of(name) == alice for name in ID00)


def test_another_face_detector_keeps_the_names(library: Library) -> None:
    """faces.detector changed (YuNet <-> RetinaFace): every face is found again by the
    other network, and the people and names follow the faces by position."""
    from tagd.analyzers.faces import build

    md = require_models("yunet-n", "retinaface-mnet025")
    alice = _alice(library)
    other_person = library.person_of(ID01[0])
    with library.catalog() as cat:
        before = cat.con.execute("SELECT MAX(id) FROM detections").fetchone()[0]
    current = build(library.settings(), load_manifest(md), md)
    assert current is not None
    other = "retinaface-mnet025" if current.model.spec.family == "yunet" else "yunet-n"
    original = library.config.read_text(encoding="utf-8")
    library.config.write_text(f'{original}[faces]\ndetector = "{other}"\n', encoding="utf-8")
    try:
        assert library.tagd("scan", library.root) == 0
        with library.catalog() as cat:
            after = cat.con.execute("SELECT MIN(id) FROM detections WHERE analyzer = 'faces'")
            assert after.fetchone()[0] > before  # every face row is new
            _assert_alice_tagged(library, cat)
        assert all(library.person_of(name) == alice for name in ID00)
        assert all(library.person_of(name) == other_person for name in ID01)
    finally:
        library.config.write_text(original, encoding="utf-8")
