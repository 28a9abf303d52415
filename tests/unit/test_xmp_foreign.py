"""Sidecars other programs wrote (Lightroom, digiKam, darktable, exiftool; files in
tests/data/xmp written in their styles) get tagd's keywords and faces, and every
byte outside tagd's own properties stays as it was.

"tagd's properties" are found here with regular expressions over the prefixes the
file binds, independently of tagd's own parser; exiftool reads the values back."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TESTS

from tagd.sinks.xmp.packet import parse
from tagd.sinks.xmp.regions import face_region
from tagd.sinks.xmp.sidecar import XmpWriteError, plan_packet, sidecar_path, sync_sidecar
from tagd.sinks.xmp.splice import skeleton

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")

DATA = TESTS / "data" / "xmp"
PHOTO = Path("/work/shared/eval/faces/images/couple.jpg")
STYLES = ["lightroom", "digikam", "darktable", "exiftool"]

DIMS = (4032, 3024)
FACES = [
    face_region("Alice", (400, 500, 1200, 1500), *DIMS),
    # Where digikam.xmp's "Carol" region is: a face a person marked already.
    face_region("Bob", (2500, 600, 3300, 1500), *DIMS),
]
RUN1 = ["AI|Objects|dog", "AI|Scenes|harbour", "AI|Scenes|river"]
RUN2 = ["AI|Objects|cat", "AI|Scenes|harbour"]

# tagd's properties by namespace URI.
TAGD_PROPS = {
    "http://purl.org/dc/elements/1.1/": ["subject"],
    "http://ns.adobe.com/lightroom/1.0/": ["hierarchicalSubject"],
    "http://www.digikam.org/ns/1.0/": ["TagsList"],
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": ["PersonInImage"],
    "http://www.metadataworkinggroup.com/schemas/regions/": ["Regions"],
    "http://ns.tagd.local/1.0/": ["Keywords", "People", "Regions"],
}
# The same as exiftool names them.
TAGD_KEYS = {
    "XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList",
    "XMP-iptcExt:PersonInImage", "XMP-mwg-rs:RegionInfo",
}  # fmt: skip

# Entries of other people inside tagd's properties, which must keep their bytes.
KEPT = {
    "lightroom": [r"<rdf:li>river</rdf:li>"],
    "digikam": [r'<rdf:li>\s*<rdf:Description\s+mwg-rs:Name="Carol".*?</rdf:li>'],
    "darktable": [r"<rdf:li>nature\|sunset</rdf:li>"],
    "exiftool": [r"<rdf:li rdf:parseType='Resource'>\s*<rdf:value>harbour</rdf:value>.*?</rdf:li>"],
}


def without_tagd(data: bytes) -> str:
    """The packet with tagd's property elements (and the white space before each)
    cut out, whatever prefix the file binds their namespaces to."""
    text = data.decode("utf-8")
    bound: dict[str, set[str]] = {}
    for prefix, _, uri in re.findall(r"xmlns:([\w.-]+)=(['\"])(.*?)\2", text):
        bound.setdefault(uri, set()).add(prefix)
    for uri, names in TAGD_PROPS.items():
        for prefix in bound.get(uri, ()):
            for name in names:
                tag = re.escape(f"{prefix}:{name}")
                pattern = rf"\s*<{tag}\b[^>]*?/>|\s*<{tag}\b.*?</{tag}>"
                text = re.sub(pattern, "", text, flags=re.DOTALL)
    return text


def exif(path: Path) -> dict:
    out = subprocess.run(
        [str(EXIFTOOL), "-j", "-G1", "-struct", "-XMP:all", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = json.loads(out)[0]
    found.pop("SourceFile")
    return found


def foreign(values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in TAGD_KEYS and not k.startswith("XMP-tagd:")}


def as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def place(tmp_path: Path, style: str) -> tuple[Path, Path]:
    """A real photo with the style's sidecar next to it."""
    if not PHOTO.exists():
        pytest.skip(f"{PHOTO} is not available")
    media = tmp_path / "photo.jpg"
    shutil.copyfile(PHOTO, media)
    sidecar = sidecar_path(media)
    shutil.copyfile(DATA / f"{style}.xmp", sidecar)
    return media, sidecar


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.mark.parametrize("style", STYLES)
def test_foreign_sidecar_gets_tags_and_keeps_every_foreign_byte(tmp_path: Path, style: str) -> None:
    media, sidecar = place(tmp_path, style)
    original = sidecar.read_bytes()
    before = exif(sidecar)

    first = sync_sidecar(media, RUN1, faces=FACES, dims=DIMS)
    assert first.added == tuple(RUN1) and first.regions_added
    assert without_tagd(sidecar.read_bytes()) == without_tagd(original)

    second = sync_sidecar(media, RUN2, faces=FACES[:1], dims=DIMS)
    assert second.added == ("AI|Objects|cat",)
    assert second.removed == ("AI|Objects|dog", "AI|Scenes|river")
    written = sidecar.read_bytes()
    assert without_tagd(written) == without_tagd(original)
    for pattern in KEPT[style]:
        entry = re.search(pattern, original.decode("utf-8"), re.DOTALL)
        assert entry is not None and entry.group(0) in written.decode("utf-8")

    after = exif(sidecar)
    assert foreign(after) == foreign(before)
    subject = as_list(before.get("XMP-dc:Subject"))
    ours = [w for w in ("harbour", "cat") if w not in subject]
    assert as_list(after["XMP-dc:Subject"]) == subject + ours
    assert as_list(after.get("XMP-tagd:Keywords")) == ours
    hier = as_list(before.get("XMP-lr:HierarchicalSubject"))
    assert as_list(after["XMP-lr:HierarchicalSubject"]) == [*hier, "AI|Scenes|harbour", RUN2[0]]
    tags_list = as_list(before.get("XMP-digiKam:TagsList"))
    assert as_list(after["XMP-digiKam:TagsList"]) == [
        *tags_list,
        "AI/Scenes/harbour",
        "AI/Objects/cat",
    ]
    persons = as_list(before.get("XMP-iptcExt:PersonInImage"))
    assert as_list(after["XMP-iptcExt:PersonInImage"]) == [*persons, "Alice"]
    regions_before = before.get("XMP-mwg-rs:RegionInfo", {})
    theirs = regions_before.get("RegionList", [])
    regions = after["XMP-mwg-rs:RegionInfo"]
    assert regions["RegionList"][: len(theirs)] == theirs
    assert [r["Name"] for r in regions["RegionList"][len(theirs) :]] == ["Alice"]
    dims = regions_before.get("AppliedToDimensions", {"W": DIMS[0], "H": DIMS[1], "Unit": "pixel"})
    assert regions["AppliedToDimensions"] == dims

    # The same tags again: nothing to write.
    kept = snapshot(sidecar)
    assert not sync_sidecar(media, RUN2, faces=FACES[:1], dims=DIMS).changed
    assert snapshot(sidecar) == kept


def test_persons_keyword_under_another_prefix_is_never_claimed(tmp_path: Path) -> None:
    """exiftool.xmp binds Dublin Core to ``dcx`` and holds a person's "dog"."""
    media, sidecar = place(tmp_path, "exiftool")
    sync_sidecar(media, ["AI|Objects|dog"])
    got = exif(sidecar)
    assert as_list(got["XMP-dc:Subject"]) == ["dog", "harbour"]
    assert "XMP-tagd:Keywords" not in got
    assert "<dcx:subject>" in sidecar.read_text(encoding="utf-8")
    sync_sidecar(media, [])
    assert as_list(exif(sidecar)["XMP-dc:Subject"]) == ["dog", "harbour"]
    assert sidecar.read_bytes() == (DATA / "exiftool.xmp").read_bytes()


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    lightroom = (DATA / "lightroom.xmp").read_bytes()
    return {
        "truncated": (lightroom[: len(lightroom) // 2], "not well-formed XML"),
        "mismatched tag": (lightroom.replace(b"</dc:title>", b"</dc:titel>"), "mismatched tag"),
        "not XMP": (b"<html><body><p>hello</p></body></html>\n", "no rdf:RDF"),
        "a JPEG": (PHOTO.read_bytes()[:4096] if PHOTO.exists() else b"\xff\xd8\xff", "UTF-8"),
        "not UTF-8": (lightroom.replace(b"Spree", b"Spr\xe9e"), "UTF-8"),
        "entity bomb": (
            b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
            + lightroom.replace(b"Spree at dawn", b"&b;"),
            "DOCTYPE",
        ),
    }


@pytest.mark.parametrize("case", sorted(bad_inputs()))
def test_unparsable_sidecar_is_refused_and_untouched(tmp_path: Path, case: str) -> None:
    data, reason = bad_inputs()[case]
    media = tmp_path / "photo.jpg"
    media.write_bytes(b"")
    sidecar = sidecar_path(media)
    sidecar.write_bytes(data)
    kept = snapshot(sidecar)
    with pytest.raises(XmpWriteError, match=rf"photo\.jpg\.xmp: .*{reason}") as caught:
        sync_sidecar(media, ["AI|Objects|dog"])
    assert "Traceback" not in str(caught.value)
    assert snapshot(sidecar) == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]


SLOPPY = """<x:xmpmeta xmlns:x='adobe:ns:meta/'>
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
 <rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'
   xmlns:lr='http://ns.adobe.com/lightroom/1.0/' xmlns:xmp='http://ns.adobe.com/xap/1.0/'
   xmp:Rating='2' dc:subject='Holiday'>
  <lr:hierarchicalSubject>Places|Rome</lr:hierarchicalSubject>
  <xmp:Label>Blue</xmp:Label>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
"""


def test_single_values_where_lists_belong_are_kept(tmp_path: Path) -> None:
    """A sloppy tool wrote one keyword as an attribute and one as plain text: both
    become lists that still hold them."""
    media = tmp_path / "photo.jpg"
    media.write_bytes(b"")
    sidecar = sidecar_path(media)
    sidecar.write_text(SLOPPY, encoding="utf-8")
    sync_sidecar(media, ["AI|Objects|dog"])
    got = exif(sidecar)
    assert as_list(got["XMP-dc:Subject"]) == ["Holiday", "dog"]
    assert as_list(got["XMP-lr:HierarchicalSubject"]) == ["Places|Rome", "AI|Objects|dog"]
    assert (got["XMP-xmp:Rating"], got["XMP-xmp:Label"]) == (2, "Blue")
    assert not sync_sidecar(media, ["AI|Objects|dog"]).changed
    sync_sidecar(media, [])
    got = exif(sidecar)
    assert as_list(got["XMP-dc:Subject"]) == ["Holiday"]
    assert as_list(got["XMP-lr:HierarchicalSubject"]) == ["Places|Rome"]


ATTRIBUTES_ONLY = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/'>
 <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
  <rdf:Description rdf:about='uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b'
    xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmp:Rating='1'/>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>
"""


def test_packet_without_room_gets_its_own_description(tmp_path: Path) -> None:
    """The only rdf:Description is an empty element: tagd adds a second one for the
    same resource instead of rewriting that one's tag."""
    media = tmp_path / "photo.jpg"
    media.write_bytes(b"")
    sidecar = sidecar_path(media)
    sidecar.write_text(ATTRIBUTES_ONLY, encoding="utf-8")
    sync_sidecar(media, ["AI|Objects|dog"])
    text = sidecar.read_text(encoding="utf-8")
    assert text.count("rdf:about='uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b'") == 2
    emptied = r"\s*<rdf:Description[^>]*>\s*</rdf:Description>"
    assert re.sub(emptied, "", without_tagd(text.encode())) == ATTRIBUTES_ONLY
    got = exif(sidecar)
    assert (got["XMP-xmp:Rating"], as_list(got["XMP-dc:Subject"])) == (1, ["dog"])


NESTED_REGIONS = """<x:xmpmeta xmlns:x="adobe:ns:meta/">\r
\t<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\r
\t\t<rdf:Description rdf:about="" xmlns:mwgrs="http://www.metadataworkinggroup.com/schemas/regions/"\r
\t\t\t\txmlns:area="http://ns.adobe.com/xmp/sType/Area#">\r
\t\t\t<mwgrs:Regions>\r
\t\t\t\t<rdf:Description>\r
\t\t\t\t\t<mwgrs:RegionList>\r
\t\t\t\t\t\t<rdf:Bag>\r
\t\t\t\t\t\t\t<rdf:li><rdf:Description mwgrs:Name="Eve" mwgrs:Type="Face"><mwgrs:Area \
area:x="0.9" area:y="0.9" area:w="0.05" area:h="0.05" area:unit="normalized"/>\
</rdf:Description></rdf:li>\r
\t\t\t\t\t\t</rdf:Bag>\r
\t\t\t\t\t</mwgrs:RegionList>\r
\t\t\t\t</rdf:Description>\r
\t\t\t</mwgrs:Regions>\r
\t\t</rdf:Description>\r
\t</rdf:RDF>\r
</x:xmpmeta>\r
"""


def test_regions_in_a_nested_description_with_other_prefixes(tmp_path: Path) -> None:
    """Regions as a nested rdf:Description under prefixes of the file's own, tabs and
    CRLF: tagd's region is added and removed again beside the person's, in that style."""
    media = tmp_path / "photo.jpg"
    media.write_bytes(b"")
    sidecar = sidecar_path(media)
    sidecar.write_bytes(NESTED_REGIONS.encode())
    eve = re.search(r"<rdf:li>.*?</rdf:li>", NESTED_REGIONS)
    assert eve is not None
    sync_sidecar(media, ["AI|People|Alice"], faces=FACES[:1], dims=DIMS)
    data = sidecar.read_bytes()
    assert eve.group(0).encode() in data
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare LF: the file's line ends
    assert b"<mwgrs:RegionList>" in data and b"<mwg-rs:" not in data  # its prefix
    regions = exif(sidecar)["XMP-mwg-rs:RegionInfo"]
    assert [r["Name"] for r in regions["RegionList"]] == ["Eve", "Alice"]
    sync_sidecar(media, [], faces=[], dims=DIMS)
    assert without_tagd(sidecar.read_bytes()) == without_tagd(NESTED_REGIONS.encode())
    assert [r["Name"] for r in exif(sidecar)["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Eve"]


def test_packet_exiv2_cannot_read_is_still_written(tmp_path: Path) -> None:
    """A bare rdf:RDF (no x:xmpmeta) is valid XMP that Exiv2 does not recognise; its
    opinion is then not needed."""
    media = tmp_path / "photo.jpg"
    media.write_bytes(b"")
    sidecar = sidecar_path(media)
    bare = (
        "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        "<rdf:Description rdf:about='' xmlns:xmp='http://ns.adobe.com/xap/1.0/'>"
        "<xmp:Rating>3</xmp:Rating></rdf:Description></rdf:RDF>"
    )
    sidecar.write_text(bare, encoding="utf-8")
    assert sync_sidecar(media, ["AI|Objects|dog"]).added == ("AI|Objects|dog",)
    text = sidecar.read_text(encoding="utf-8")
    assert text.startswith(bare[: bare.index("</rdf:Description>")])
    assert "\n" not in text  # written on one line, as the file is
    assert not sync_sidecar(media, ["AI|Objects|dog"]).changed


def tampered(planned: bytes) -> dict[str, bytes]:
    """Packets that differ from `planned` in ways only bytes show."""
    title = re.search(rb'\n *<rdf:li xml:lang="pt-PT">[^<]*</rdf:li>', planned)
    assert title is not None
    # The lang-alt order of dc:title (a foreign property), values unchanged.
    end = planned.index(b"\n    </rdf:Alt>\n   </dc:title>")
    moved = planned[:end] + title.group(0) + planned[end:]
    return {
        "lang-alt order": moved.replace(title.group(0), b"", 1),
        "foreign region": planned.replace(b'stArea:x="0.71"', b'stArea:x = "0.71"'),
        "keyword": planned.replace(b"<rdf:li>AI|Objects|dog</rdf:li>", b""),
    }


def test_verification_refuses_what_was_not_planned(tmp_path: Path) -> None:
    label = tmp_path / "photo.jpg.xmp"
    update = plan_packet(label, (DATA / "digikam.xmp").read_bytes(), RUN1, faces=FACES, dims=DIMS)
    assert update.data is not None
    update.verify(update.data)
    for data in tampered(update.data).values():
        with pytest.raises(XmpWriteError, match=r"photo\.jpg\.xmp failed: the XMP read back"):
            update.verify(data)


def test_skeleton_sees_every_change_outside_tagds_properties() -> None:
    """The byte proof run on what was read back: a packet minus tagd's properties."""
    ours = [(uri, name) for uri, names in TAGD_PROPS.items() for name in names]
    original = (DATA / "digikam.xmp").read_bytes()
    planned = plan_packet(Path("x.xmp"), original, RUN1, faces=FACES, dims=DIMS).data
    assert planned is not None and planned != original
    assert skeleton(parse(planned), ours) == skeleton(parse(original), ours)
    changed = tampered(planned)
    assert skeleton(parse(changed["lang-alt order"]), ours) != skeleton(parse(original), ours)
    # Inside tagd's properties the skeleton is blind; kept entries are compared apart.
    assert skeleton(parse(changed["foreign region"]), ours) == skeleton(parse(original), ours)


NEIGHBOURS = """<x:xmpmeta xmlns:x='adobe:ns:meta/'>
 <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
  <rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'
    xmlns:Iptc4xmpExt='http://iptc.org/std/Iptc4xmpExt/2008-02-29/'
    xmlns:tagd='http://ns.tagd.local/1.0/'>
   <dc:subject><rdf:Bag><rdf:li>dog</rdf:li><rdf:li>cat</rdf:li></rdf:Bag></dc:subject>
   <Iptc4xmpExt:PersonInImage>Carol</Iptc4xmpExt:PersonInImage>
   <tagd:Keywords><rdf:Bag><rdf:li>cat</rdf:li></rdf:Bag></tagd:Keywords>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_property_rewritten_next_to_one_removed(tmp_path: Path) -> None:
    """PersonInImage (plain text) becomes a list right where tagd:Keywords, which
    follows it, goes away: two edits that meet at one byte."""
    media = tmp_path / "photo.jpg"
    media.write_bytes(b"")
    sidecar = sidecar_path(media)
    sidecar.write_text(NEIGHBOURS, encoding="utf-8")
    faces = [face_region("Alice", (1, 1, 5, 5), 10, 10)]
    sync_sidecar(media, ["AI|Objects|dog"], faces=faces, dims=(10, 10))
    got = exif(sidecar)
    assert as_list(got["XMP-iptcExt:PersonInImage"]) == ["Carol", "Alice"]
    assert as_list(got["XMP-dc:Subject"]) == ["dog"]
    assert "XMP-tagd:Keywords" not in got
    assert without_tagd(sidecar.read_bytes()) == without_tagd(NEIGHBOURS.encode())
