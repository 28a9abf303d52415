"""Tests for tagd.sinks.xmp.sidecar: real sidecar files, read back with exiftool (an independent
XMP reader) where available."""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from tagd.sinks.xmp.sidecar import XmpChange, XmpWriteError, sidecar_path, sync_sidecar

EXIFTOOL = shutil.which("exiftool")
NOBODY = 65534

# A sidecar as a person's tools might leave it: keywords, a rating, a label, a
# description, a face region and a namespace nobody registered.
PERSON_SIDECAR = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/'>
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
 <rdf:Description rdf:about=''
  xmlns:dc='http://purl.org/dc/elements/1.1/'
  xmlns:lr='http://ns.adobe.com/lightroom/1.0/'
  xmlns:xmp='http://ns.adobe.com/xap/1.0/'
  xmlns:foo='http://example.com/foo/1.0/'
  xmlns:mwg-rs='http://www.metadataworkinggroup.com/schemas/regions/'
  xmlns:stArea='http://ns.adobe.com/xmp/sType/Area#'>
  <xmp:Rating>4</xmp:Rating>
  <xmp:Label>Red</xmp:Label>
  <foo:Bar>kept &amp; sound</foo:Bar>
  <dc:description><rdf:Alt><rdf:li xml:lang='x-default'>At the beach</rdf:li></rdf:Alt>
  </dc:description>
  <dc:subject><rdf:Bag><rdf:li>Holiday</rdf:li><rdf:li>dog</rdf:li></rdf:Bag></dc:subject>
  <lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Rome</rdf:li></rdf:Bag>
  </lr:hierarchicalSubject>
  <mwg-rs:Regions rdf:parseType='Resource'>
   <mwg-rs:RegionList><rdf:Bag>
    <rdf:li rdf:parseType='Resource'>
     <mwg-rs:Name>Alice</mwg-rs:Name>
     <mwg-rs:Type>Face</mwg-rs:Type>
     <mwg-rs:Area stArea:x='0.5' stArea:y='0.4' stArea:w='0.1' stArea:h='0.2'
      stArea:unit='normalized'/>
    </rdf:li>
   </rdf:Bag></mwg-rs:RegionList>
  </mwg-rs:Regions>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>
"""

TAGS = ["AI|Objects|cat", "AI|Objects|dog", "AI|Scenes|beach"]


def read_xmp(path: Path) -> dict:
    """All XMP of `path` as exiftool sees it, keys like 'XMP-dc:Subject'."""
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed; cannot read sidecars back independently")
    out = subprocess.run(
        [EXIFTOOL, "-j", "-struct", "-G1", "-XMP:all", str(path)],
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
def media(tmp_path: Path) -> Path:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"not really a jpeg; tagd only needs the name")
    return photo


@pytest.fixture
def person_sidecar(media: Path) -> Path:
    sidecar = sidecar_path(media)
    sidecar.write_text(PERSON_SIDECAR, encoding="utf-8")
    return sidecar


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_sidecar_path_naming() -> None:
    assert sidecar_path(Path("/p/photo.jpg")) == Path("/p/photo.jpg.xmp")
    assert sidecar_path(Path("/p/photo.jpg"), "stem") == Path("/p/photo.xmp")
    with pytest.raises(ValueError):
        sidecar_path(Path("/p/photo.jpg"), "other")


def test_new_sidecar_has_three_properties(media: Path) -> None:
    change = sync_sidecar(media, TAGS)
    sidecar = media.parent / "photo.jpg.xmp"
    assert change == XmpChange(sidecar, tuple(TAGS), ())
    assert change.changed
    xmp = read_xmp(sidecar)
    assert as_list(xmp["XMP-dc:Subject"]) == ["beach", "cat", "dog"]
    assert as_list(xmp["XMP-lr:HierarchicalSubject"]) == TAGS
    assert as_list(xmp["XMP-digiKam:TagsList"]) == [
        "AI/Objects/cat",
        "AI/Objects/dog",
        "AI/Scenes/beach",
    ]
    assert as_list(xmp["XMP-tagd:Keywords"]) == ["beach", "cat", "dog"]
    raw = sidecar.read_text(encoding="utf-8")
    # dc:subject and hierarchicalSubject must be bags, TagsList a seq.
    assert "<dc:subject>\n    <rdf:Bag>" in raw
    assert "<lr:hierarchicalSubject>\n    <rdf:Bag>" in raw
    assert "<digiKam:TagsList>\n    <rdf:Seq>" in raw


def test_existing_sidecar_is_merged_and_second_run_is_noop(
    media: Path, person_sidecar: Path
) -> None:
    sync_sidecar(media, TAGS)
    before = snapshot(person_sidecar)
    second = sync_sidecar(media, TAGS)
    assert not second.changed
    assert snapshot(person_sidecar) == before

    xmp = read_xmp(person_sidecar)
    assert as_list(xmp["XMP-dc:Subject"]) == ["Holiday", "dog", "beach", "cat"]
    assert as_list(xmp["XMP-lr:HierarchicalSubject"]) == ["Places|Rome", *TAGS]
    # "dog" was the person's keyword already, so tagd does not claim it.
    assert as_list(xmp["XMP-tagd:Keywords"]) == ["beach", "cat"]
    assert xmp["XMP-xmp:Rating"] == 4
    assert xmp["XMP-xmp:Label"] == "Red"
    assert xmp["XMP-dc:Description"] == "At the beach"
    assert xmp["XMP-foo:Bar"] == "kept & sound"
    region = xmp["XMP-mwg-rs:RegionInfo"]["RegionList"][0]
    assert region["Name"] == "Alice"
    assert region["Area"]["Y"] == 0.4


def test_exiftool_made_sidecar_survives(media: Path) -> None:
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed; cannot create the sidecar with it")
    sidecar = sidecar_path(media)
    subprocess.run(
        [
            EXIFTOOL, "-q", "-o", str(sidecar), "-XMP-dc:Subject=Holiday",
            "-XMP-lr:HierarchicalSubject=Places|Rome", "-XMP-xmp:Rating=4",
        ],
        check=True,
    )  # fmt: skip
    for _ in range(2):
        sync_sidecar(media, ["AI|Objects|dog"])
    xmp = read_xmp(sidecar)
    assert as_list(xmp["XMP-dc:Subject"]) == ["Holiday", "dog"]
    assert as_list(xmp["XMP-lr:HierarchicalSubject"]) == ["Places|Rome", "AI|Objects|dog"]
    assert xmp["XMP-xmp:Rating"] == 4


def test_removing_tags_removes_only_tagd_entries(media: Path, person_sidecar: Path) -> None:
    sync_sidecar(media, TAGS)
    change = sync_sidecar(media, ["AI|Objects|cat"])
    assert change.added == ()
    assert change.removed == ("AI|Objects|dog", "AI|Scenes|beach")
    xmp = read_xmp(person_sidecar)
    # The person's "dog" stays although tagd's dog tag went away.
    assert as_list(xmp["XMP-dc:Subject"]) == ["Holiday", "dog", "cat"]
    assert as_list(xmp["XMP-lr:HierarchicalSubject"]) == ["Places|Rome", "AI|Objects|cat"]
    assert as_list(xmp["XMP-digiKam:TagsList"]) == ["AI/Objects/cat"]

    change = sync_sidecar(media, [])
    assert change.removed == ("AI|Objects|cat",)
    xmp = read_xmp(person_sidecar)
    assert as_list(xmp["XMP-dc:Subject"]) == ["Holiday", "dog"]
    assert as_list(xmp["XMP-lr:HierarchicalSubject"]) == ["Places|Rome"]
    assert "XMP-digiKam:TagsList" not in xmp
    assert "XMP-tagd:Keywords" not in xmp
    assert xmp["XMP-xmp:Rating"] == 4


def test_tagd_keyword_goes_but_shared_leaf_stays(media: Path) -> None:
    sync_sidecar(media, ["AI|Objects|dog", "AI|Breeds|dog", "AI|Objects|cat"])
    sync_sidecar(media, ["AI|Breeds|dog"])
    xmp = read_xmp(sidecar_path(media))
    # "dog" is still wanted by another path; "cat" was tagd's and is gone.
    assert as_list(xmp["XMP-dc:Subject"]) == ["dog"]
    assert as_list(xmp["XMP-lr:HierarchicalSubject"]) == ["AI|Breeds|dog"]


def test_hand_edited_tagd_keyword_is_repaired(media: Path) -> None:
    """A person deletes tagd's flat keyword but the hierarchical tag stays wanted."""
    sidecar = sidecar_path(media)
    sync_sidecar(media, ["AI|Objects|dog"])
    text = sidecar.read_text(encoding="utf-8")
    sidecar.write_text(text.replace("<rdf:li>dog</rdf:li>", "", 1), encoding="utf-8")
    change = sync_sidecar(media, ["AI|Objects|dog"])
    assert change.repaired and change.changed and not change.added
    assert as_list(read_xmp(sidecar)["XMP-dc:Subject"]) == ["dog"]


def test_naming_stem(media: Path) -> None:
    change = sync_sidecar(media, ["AI|Objects|dog"], naming="stem")
    assert change.sidecar == media.parent / "photo.xmp"
    assert change.sidecar.exists()
    assert not (media.parent / "photo.jpg.xmp").exists()
    assert as_list(read_xmp(change.sidecar)["XMP-lr:HierarchicalSubject"]) == ["AI|Objects|dog"]


def test_dry_run_writes_nothing(media: Path, person_sidecar: Path, tmp_path: Path) -> None:
    before = snapshot(person_sidecar)
    change = sync_sidecar(media, TAGS, dry_run=True)
    assert change.added == tuple(TAGS) and change.changed
    assert snapshot(person_sidecar) == before

    other = tmp_path / "other.jpg"
    change = sync_sidecar(other, TAGS, dry_run=True)
    assert change.changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]


def test_no_tags_and_no_sidecar_writes_nothing(media: Path) -> None:
    change = sync_sidecar(media, [])
    assert not change.changed
    assert not change.sidecar.exists()


def test_existing_permission_bits_kept(media: Path, person_sidecar: Path) -> None:
    person_sidecar.chmod(0o640)
    sync_sidecar(media, TAGS)
    assert stat.S_IMODE(person_sidecar.stat().st_mode) == 0o640


def test_slash_in_tag_name_is_safe_in_tagslist(media: Path) -> None:
    sync_sidecar(media, ["AI|Text|AC/DC"])
    xmp = read_xmp(sidecar_path(media))
    assert as_list(xmp["XMP-lr:HierarchicalSubject"]) == ["AI|Text|AC/DC"]
    (entry,) = as_list(xmp["XMP-digiKam:TagsList"])
    assert entry.startswith("AI/Text/AC") and entry.count("/") == 2


def test_unicode_and_markup_round_trip(media: Path) -> None:
    tags = ["AI|Objekte|Hündchen & <Katze>"]
    sync_sidecar(media, tags)
    assert not sync_sidecar(media, tags).changed
    assert as_list(read_xmp(sidecar_path(media))["XMP-dc:Subject"]) == ["Hündchen & <Katze>"]


@pytest.mark.parametrize(
    "tags", [["Objects|dog"], ["AI"], ["AI|"], ["AI||dog"], ["AIX|dog"], ["AI|a\nb"]]
)
def test_invalid_tags_rejected(media: Path, tags: list[str]) -> None:
    with pytest.raises(ValueError):
        sync_sidecar(media, tags)
    assert not sidecar_path(media).exists()


def test_string_instead_of_list_rejected(media: Path) -> None:
    with pytest.raises(TypeError):
        sync_sidecar(media, "AI|Objects|dog")


def test_corrupt_sidecar_raises_and_is_untouched(media: Path) -> None:
    sidecar = sidecar_path(media)
    sidecar.write_text(PERSON_SIDECAR[: len(PERSON_SIDECAR) // 2], encoding="utf-8")
    before = snapshot(sidecar)
    with pytest.raises(XmpWriteError, match=r"photo\.jpg\.xmp"):
        sync_sidecar(media, TAGS)
    with pytest.raises(XmpWriteError):
        sync_sidecar(media, [])
    assert snapshot(sidecar) == before
    assert sorted(p.name for p in media.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]


def test_empty_sidecar_is_not_overwritten(media: Path) -> None:
    sidecar = sidecar_path(media)
    sidecar.write_bytes(b"")
    with pytest.raises(XmpWriteError):
        sync_sidecar(media, TAGS)
    assert sidecar.read_bytes() == b""


def test_read_only_sidecar_is_left_alone(media: Path, person_sidecar: Path) -> None:
    person_sidecar.chmod(0o444)
    before = snapshot(person_sidecar)
    with pytest.raises(XmpWriteError, match="sidecar is read-only"):
        sync_sidecar(media, TAGS)
    assert snapshot(person_sidecar) == before


def test_missing_directory_raises(tmp_path: Path) -> None:
    # The "directory" is a regular file, so even root cannot create anything in it.
    blocker = tmp_path / "album"
    blocker.write_text("a file, not a directory")
    with pytest.raises(XmpWriteError, match="album"):
        sync_sidecar(blocker / "photo.jpg", TAGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["album"]


def test_read_only_directory_raises(media: Path, person_sidecar: Path) -> None:
    """Write bits are honoured even for root, who the kernel would let through."""
    before = snapshot(person_sidecar)
    media.parent.chmod(0o555)
    try:
        with pytest.raises(XmpWriteError, match=r"not writable|read-only"):
            sync_sidecar(media, TAGS)
    finally:
        media.parent.chmod(0o755)
    assert snapshot(person_sidecar) == before
    assert sorted(p.name for p in media.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_read_only_directory_as_unprivileged_child() -> None:
    """Root ignores permission bits, so a forked child drops to 'nobody' first and
    then meets a genuinely read-only directory (EACCES on creating the temp file)."""
    album = Path(tempfile.mkdtemp(prefix="tagd-ro-"))  # pytest's tmp_path is 0700 root
    try:
        media = album / "photo.jpg"
        sidecar = sidecar_path(media)
        sidecar.write_text(PERSON_SIDECAR, encoding="utf-8")
        sidecar.chmod(0o644)
        album.chmod(0o555)
        before = snapshot(sidecar)
        pid = os.fork()
        if pid == 0:  # child: report through the exit status only
            code = 3
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                sync_sidecar(media, TAGS)
                code = 2
            except XmpWriteError as exc:
                code = 0 if ("not writable" in str(exc) or "read-only" in str(exc)) else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert snapshot(sidecar) == before
        assert sorted(p.name for p in album.iterdir()) == ["photo.jpg.xmp"]
    finally:
        album.chmod(0o755)
        shutil.rmtree(album)


def test_failed_write_leaves_old_sidecar_and_no_temp(media: Path, person_sidecar: Path) -> None:
    """The temp file is created but cannot be filled (like a full disk, and root is
    not exempt): RLIMIT_FSIZE makes the write fail with EFBIG. Python ignores
    SIGXFSZ, so the process survives."""
    before = snapshot(person_sidecar)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256, hard))
    try:
        with pytest.raises(XmpWriteError, match=r"photo\.jpg\.xmp"):
            sync_sidecar(media, TAGS)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert snapshot(person_sidecar) == before
    assert sorted(p.name for p in media.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]


def test_concurrent_syncs_from_threads(tmp_path: Path) -> None:
    photos = [tmp_path / f"p{i}.jpg" for i in range(16)]
    errors: list[BaseException] = []

    def work(photo: Path) -> None:
        try:
            sync_sidecar(photo, [f"AI|Objects|{photo.stem}", "AI|Scenes|beach"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in photos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for photo in photos:
        again = sync_sidecar(photo, [f"AI|Objects|{photo.stem}", "AI|Scenes|beach"])
        assert not again.changed
