"""Writes stay in the library: symlinked sidecars, photos and folders that lead
elsewhere are refused, new files go to owners who could have made them, and
photos that share one sidecar (``xmp.sidecar = "stem"``) share their tags.

The tests run as root where they can, as tagd does in a NAS container: that is
where a planted link would do harm."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from conftest import PERSON_PHOTO, VIDEOS, exiftool_keywords, write_config, write_jpeg

from tagd.sinks.xmp.embed import sync_embedded
from tagd.sinks.xmp.sidecar import XmpWriteError, sync_sidecar

TAGS = ["AI|Objects|dog"]
GIRAFFES = "000000000025.jpg"  # COCO: two giraffes, no person
USER = 4242  # any uid that is neither root nor the test's own user
OTHER_GROUP = 4343

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")

ONLY_OBJECTS = "".join(
    f"[{name}]\nenabled = false\n" for name in ("ocr", "faces", "concepts", "clip", "duplicates")
)


@pytest.fixture
def farm(tmp_path: Path) -> dict[str, Path]:
    """A library owned by a user, and a root-only place outside it."""
    library = tmp_path / "library"
    secret = tmp_path / "root-only"
    library.mkdir()
    secret.mkdir(mode=0o700)
    photo = write_jpeg(library / "a.jpg")
    if os.geteuid() == 0:
        os.chown(library, USER, USER)
        os.chown(photo, USER, USER)
    return {"library": library, "secret": secret, "photo": photo}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int, int]]:
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out[str(path)] = (data, st.st_mtime_ns, st.st_uid, st.st_mode)
    return out


def test_a_sidecar_linked_out_of_the_library_creates_nothing(farm: dict[str, Path]) -> None:
    library, secret, photo = farm["library"], farm["secret"], farm["photo"]
    (library / "a.jpg.xmp").symlink_to(secret / "planted")
    with pytest.raises(XmpWriteError, match="outside the library roots"):
        sync_sidecar(photo, TAGS, roots=[library])
    assert not (secret / "planted").exists()
    assert (library / "a.jpg.xmp").is_symlink()  # the link itself is left for its owner


def test_an_existing_file_behind_a_link_is_not_modified(farm: dict[str, Path]) -> None:
    library, secret, photo = farm["library"], farm["secret"], farm["photo"]
    target = secret / "root.xmp"
    sync_sidecar(write_jpeg(secret / "root.jpg"), ["AI|Objects|cat"])  # a real sidecar there
    shutil.move(secret / "root.jpg.xmp", target)
    before = snapshot(secret)
    (library / "a.jpg.xmp").symlink_to(target)
    with pytest.raises(XmpWriteError, match="outside the library roots"):
        sync_sidecar(photo, TAGS, roots=[library])
    # Not even read into a dry run's report.
    with pytest.raises(XmpWriteError, match="outside the library roots"):
        sync_sidecar(photo, TAGS, roots=[library], dry_run=True)
    assert snapshot(secret) == before


def test_a_folder_linked_out_of_the_library_is_refused(farm: dict[str, Path]) -> None:
    library, secret = farm["library"], farm["secret"]
    outside_photo = write_jpeg(secret / "b.jpg")
    (library / "elsewhere").symlink_to(secret, target_is_directory=True)
    before = snapshot(secret)
    with pytest.raises(XmpWriteError, match="outside the library roots"):
        sync_sidecar(library / "elsewhere" / "b.jpg", TAGS, roots=[library])
    with pytest.raises(XmpWriteError, match="outside the library roots"):
        sync_embedded(library / "elsewhere" / "b.jpg", TAGS, roots=[library])
    assert snapshot(secret) == before
    assert outside_photo.exists()


def test_embedding_through_a_linked_photo_leaves_the_target_alone(farm: dict[str, Path]) -> None:
    library, secret = farm["library"], farm["secret"]
    target = write_jpeg(secret / "root-photo.jpg", seed=3)
    (library / "c.jpg").symlink_to(target)
    before = snapshot(secret)
    with pytest.raises(XmpWriteError, match="outside the library roots"):
        sync_embedded(library / "c.jpg", TAGS, roots=[library])
    assert snapshot(secret) == before


def test_links_inside_the_library_are_followed(farm: dict[str, Path]) -> None:
    library, photo = farm["library"], farm["photo"]
    shared = library / "sidecars"
    shared.mkdir()
    (library / "a.jpg.xmp").symlink_to(shared / "a.xmp")
    change = sync_sidecar(photo, TAGS, roots=[library])
    assert change.added == tuple(TAGS)
    assert (library / "a.jpg.xmp").is_symlink()
    keywords = exiftool_keywords([shared / "a.xmp"])[str(shared / "a.xmp")]
    assert keywords["HierarchicalSubject"] == TAGS


def test_a_fifo_named_like_the_sidecar_is_refused_without_hanging(farm: dict[str, Path]) -> None:
    library, photo = farm["library"], farm["photo"]
    os.mkfifo(library / "a.jpg.xmp")
    result: list[BaseException] = []

    def write() -> None:
        try:
            sync_sidecar(photo, TAGS, roots=[library])
        except BaseException as exc:  # handed to the test thread
            result.append(exc)

    worker = threading.Thread(target=write, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO blocked the writer"
    assert isinstance(result[0], XmpWriteError) and "not a regular file" in str(result[0])
    assert stat.S_ISFIFO((library / "a.jpg.xmp").lstat().st_mode)


@needs_root
def test_new_sidecars_go_to_whoever_owns_the_folder(tmp_path: Path) -> None:
    # The photo's owner owns the folder: the sidecar is theirs, so they can edit it.
    own = tmp_path / "own"
    own.mkdir()
    photo = write_jpeg(own / "a.jpg")
    os.chown(own, USER, OTHER_GROUP)
    os.chown(photo, USER, OTHER_GROUP)
    sync_sidecar(photo, TAGS)
    st = (own / "a.jpg.xmp").stat()
    assert (st.st_uid, st.st_gid) == (USER, OTHER_GROUP)

    # A photo of theirs in root's folder: no file of theirs is planted there.
    rootdir = tmp_path / "rootdir"
    rootdir.mkdir(mode=0o755)
    photo = write_jpeg(rootdir / "b.jpg")
    os.chown(photo, USER, OTHER_GROUP)
    sync_sidecar(photo, TAGS)
    st = (rootdir / "b.jpg.xmp").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)


@needs_root
def test_an_existing_sidecar_keeps_its_owner_and_mode(farm: dict[str, Path]) -> None:
    library, photo = farm["library"], farm["photo"]
    sync_sidecar(photo, ["AI|Objects|cat"], roots=[library])
    sidecar = library / "a.jpg.xmp"
    os.chown(sidecar, USER + 1, OTHER_GROUP)
    os.chmod(sidecar, 0o640)
    sync_sidecar(photo, TAGS, roots=[library])
    st = sidecar.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (USER + 1, OTHER_GROUP, 0o640)


def test_a_killed_writes_temp_file_is_removed_by_the_next_write(farm: dict[str, Path]) -> None:
    library, photo = farm["library"], farm["photo"]
    leftover = library / ".a.jpg.xmp.tagd-tmp"
    leftover.write_bytes(b"<x:xmpmeta half")
    sync_sidecar(photo, TAGS, roots=[library])
    assert not leftover.exists()
    assert sorted(p.name for p in library.iterdir()) == ["a.jpg", "a.jpg.xmp"]


@pytest.mark.usefixtures("default_models")
@needs_root
def test_a_scan_as_root_over_a_symlink_farm_writes_only_inside(
    tmp_path: Path, state_dir: Path, coco_photos, cli
) -> None:
    """The whole path, `tagd scan` as root: planted links are reported, every good
    photo is tagged, nothing outside the library changes."""
    library = tmp_path / "library"
    secret = tmp_path / "root-only"
    secret.mkdir(mode=0o700)
    good, linked, embedded = coco_photos(3, dest=library, first=PERSON_PHOTO)
    shutil.copyfile(embedded, secret / "root-photo.jpg")
    embedded.unlink()
    (library / embedded.name).symlink_to(secret / "root-photo.jpg")
    (library / (linked.name + ".xmp")).symlink_to(secret / "planted.xmp")
    for path in (library, good, linked):
        os.chown(path, USER, USER)
    before = snapshot(secret)
    config = write_config(tmp_path / "config.toml", ONLY_OBJECTS + '[xmp]\nembed = ["jpeg"]\n')
    code, out, err = cli("--config", config, "scan", library)
    assert code == 1, out + err  # some files could not be written: said, not hidden
    assert snapshot(secret) == before
    assert "outside the library roots" in out + err
    # The photo of the library itself was embedded as asked, and stays its owner's.
    assert good.stat().st_uid == USER
    assert not (library / (good.name + ".xmp")).exists()


@pytest.mark.usefixtures("default_models")
def test_photos_sharing_a_stem_sidecar_share_their_tags(
    tmp_path: Path, state_dir: Path, coco_photos, cli
) -> None:
    """IMG_0001.jpg and IMG_0001.mp4 both write IMG_0001.xmp: it holds both files'
    tags, whichever is written last."""
    library = tmp_path / "library"
    # Giraffes in the photo, people in the video: each adds tags of its own.
    (photo,) = coco_photos(1, dest=library, first=GIRAFFES)
    photo = photo.rename(library / "IMG_0001.jpg")
    video = Path(shutil.copyfile(VIDEOS / "chaplin.mp4", library / "IMG_0001.mp4"))
    other = Path(shutil.copyfile(photo, library / "IMG_0001.edit.jpg"))
    config = write_config(tmp_path / "config.toml", ONLY_OBJECTS + '[xmp]\nsidecar = "stem"\n')
    code, out, err = cli("--config", config, "scan", library)
    assert code == 0, out + err

    from tagd.catalog.catalog import Catalog

    with Catalog(state_dir / "catalog.db") as catalog:

        def tags_of(path: Path) -> set[str]:
            known = catalog.file_by_path(str(path))
            assert known is not None and known.content_id is not None
            return {t.name for t in catalog.tags(known.content_id)}

        photo_tags, video_tags = tags_of(photo), tags_of(video)
    assert photo_tags - video_tags and video_tags - photo_tags
    sidecar = library / "IMG_0001.xmp"
    keywords = exiftool_keywords([sidecar])[str(sidecar)]
    assert set(keywords["HierarchicalSubject"]) == photo_tags | video_tags
    # A different stem keeps a sidecar of its own.
    edit = library / "IMG_0001.edit.xmp"
    assert set(exiftool_keywords([edit])[str(edit)]["HierarchicalSubject"]) == photo_tags
    assert other.exists()

    # The video goes: the shared sidecar keeps only what the photo holds.
    video.unlink()
    code, out, err = cli("--config", config, "scan", library)
    assert code == 0, out + err
    assert set(exiftool_keywords([sidecar])[str(sidecar)]["HierarchicalSubject"]) == photo_tags


@pytest.mark.usefixtures("default_models")
def test_a_path_given_to_scan_counts_as_a_library_root(
    tmp_path: Path, state_dir: Path, coco_photos, cli
) -> None:
    """library.roots names another folder: `tagd scan OTHER` still writes in OTHER."""
    elsewhere = tmp_path / "elsewhere"
    (photo,) = coco_photos(1, dest=elsewhere, first=PERSON_PHOTO)
    config = write_config(
        tmp_path / "config.toml",
        ONLY_OBJECTS + f'[library]\nroots = ["{tmp_path / "library"}"]\n',
    )
    code, out, err = cli("--config", config, "scan", elsewhere)
    assert code == 0, out + err
    assert (elsewhere / (photo.name + ".xmp")).is_file()


def test_a_new_sidecar_is_as_readable_as_its_photo(farm: dict[str, Path]) -> None:
    """A service's umask (0027) must not hide sidecars from the photo's readers."""
    library, photo = farm["library"], farm["photo"]
    os.chmod(photo, 0o644)
    old = os.umask(0o027)
    try:
        sync_sidecar(photo, TAGS, roots=[library])
    finally:
        os.umask(old)
    assert stat.S_IMODE((library / "a.jpg.xmp").stat().st_mode) == 0o644
    os.chmod(photo, 0o755)  # no execute bits for a sidecar, whatever the photo has
    (library / "a.jpg.xmp").unlink()
    sync_sidecar(photo, TAGS, roots=[library])
    assert stat.S_IMODE((library / "a.jpg.xmp").stat().st_mode) == 0o644
