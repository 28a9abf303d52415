"""Embedded XMP changes nothing but the XMP: real camera JPEGs and PNG, WebP and TIFF
files from real encoders get tags twice (add, then change); every other segment or
chunk must stay byte-identical and in order, exiftool must read the same EXIF,
IPTC, ICC and comments, and damaged containers are refused without a write.

The structure checks here walk the files with their own small readers, not with
tagd's, so a fault in tagd's container code cannot hide itself."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from tagd.sinks.xmp.container import ContainerError
from tagd.sinks.xmp.embed import sync_embedded
from tagd.sinks.xmp.jpeg import JPEG, MAX_PACKET
from tagd.sinks.xmp.png import PNG
from tagd.sinks.xmp.sidecar import XmpWriteError
from tagd.sinks.xmp.tiff import TIFF
from tagd.sinks.xmp.webp import WEBP

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")

EVAL = SHARED / "eval"
FIRST = ["AI|Objects|cat", "AI|Scenes|beach"]
SECOND = ["AI|Objects|dog", "AI|Scenes|beach", "AI|Scenes|forest"]
XMP_HEADERS = (b"http://ns.adobe.com/xap/1.0/\x00", b"XMP\x00://ns.adobe.com/xap/1.0/\x00")
# exiftool's note on the damaged XMP header some sharing sites write; tagd's write
# replaces that header with the standard one, so the note goes away.
MANGLED_NOTE = ("ExifTool:Warning", "Non-standard header for APP1 XMP segment")


# --- independent readers ------------------------------------------------------------


def jpeg_parts(data: bytes) -> list[bytes]:
    """Header segments (marker, length, payload) up to SOS, then the rest as one."""
    assert data[:2] == b"\xff\xd8"
    parts, pos = [], 2
    while data[pos + 1] != 0xDA:
        assert data[pos] == 0xFF, f"no marker at {pos}"
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        parts.append(data[pos : pos + 2 + length])
        pos += 2 + length
    parts.append(data[pos:])
    return parts


def is_jpeg_xmp(part: bytes) -> bool:
    return part[:2] == b"\xff\xe1" and part[4:].startswith(XMP_HEADERS)


def png_chunks(data: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos : pos + 12 + length])
        pos += 12 + length
    return chunks


def is_png_xmp(chunk: bytes) -> bool:
    return chunk[4:8] == b"iTXt" and chunk[8:].startswith(b"XML:com.adobe.xmp\x00")


def riff_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8, "RIFF size"
    chunks, pos = [], 12
    while pos < len(data):
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks.append(data[pos : pos + 8 + size + (size & 1)])
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return chunks


def tiff_ifd0(data: bytes) -> tuple[int, list[bytes], bytes]:
    """IFD0's offset, its raw 12-byte entries and its next-IFD offset."""
    order = "<" if data[:2] == b"II" else ">"
    (at,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[at : at + 2])
    entries = [data[at + 2 + 12 * i : at + 14 + 12 * i] for i in range(count)]
    end = at + 2 + 12 * count
    return at, entries, data[end : end + 4]


def tiff_tag(entry: bytes, order: str) -> int:
    return struct.unpack(order + "H", entry[:2])[0]


def metadata(path: Path) -> list[tuple[str, object]]:
    """Everything exiftool reads, binary values included, but XMP and file-system tags.
    Repeated tags (two CodedCharacterSet records) get copy numbers (-G4), so both count."""
    out = subprocess.run(
        [EXIFTOOL, "-j", "-a", "-G1:4", "-b", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pairs = json.loads(out, object_pairs_hook=list)[0]
    skip = ("SourceFile", "ExifTool:ExifToolVersion", "System:", "XMP")
    return [(key, value) for key, value in pairs if not key.startswith(skip)]


def hierarchical(path: Path) -> list[str]:
    out = subprocess.run(
        [EXIFTOOL, "-j", "-XMP-lr:HierarchicalSubject", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    value = json.loads(out)[0].get("HierarchicalSubject", [])
    return sorted(value if isinstance(value, list) else [value])


def pixels(path: Path) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)


def embed_twice(photo: Path) -> list[bytes]:
    """The file's bytes before, after adding tags and after changing them."""
    states = [photo.read_bytes()]
    before = pixels(photo)
    for tags in (FIRST, SECOND):
        assert sync_embedded(photo, tags).changed
        assert hierarchical(photo) == sorted(tags)
        assert np.array_equal(pixels(photo), before)
        states.append(photo.read_bytes())
    assert [p.name for p in photo.parent.iterdir() if ".tagd-" in p.name] == []
    return states


# --- JPEG ---------------------------------------------------------------------------


def assert_jpeg_only_xmp_changed(states: list[bytes]) -> None:
    original = jpeg_parts(states[0])
    others = [p for p in original if not is_jpeg_xmp(p)]
    xmp_at = [i for i, p in enumerate(original) if is_jpeg_xmp(p)]
    for data in states[1:]:
        parts = jpeg_parts(data)
        assert [p for p in parts if not is_jpeg_xmp(p)] == others
        at = [i for i, p in enumerate(parts) if is_jpeg_xmp(p)]
        assert len(at) == 1 and parts[at[0]][4:].startswith(XMP_HEADERS[0])
        if xmp_at:
            assert at == xmp_at  # replaced where it was


CAMERA_JPEGS = [
    # Panasonic MakerNotes; JFIF + Exif only.
    "classes-imagenet-dev/images/n03937543_pill_bottle.JPEG",
    # Canon; EXIF with PhotometricInterpretation, IPTC, Adobe RGB ICC; progressive.
    "faces/images/img14.jpg",
    # Canon; a COM segment before Exif, agency IPTC.
    "faces/images/img61.jpg",
    # Canon; Exif after IPTC, XMP last (after ICC).
    "faces/images/img1.jpg",
    # Nikon via Flickr: the XMP segment has the damaged "XMP\0://" header.
    "objects-coco128-train/images/000000000490.jpg",
]


@pytest.mark.parametrize("name", CAMERA_JPEGS)
def test_camera_jpeg_keeps_every_other_segment(tmp_path: Path, name: str) -> None:
    source = EVAL / name
    if not source.is_file():
        pytest.skip(f"{source} is absent (real camera photos needed)")
    photo = tmp_path / source.name
    photo.write_bytes(source.read_bytes())  # the shared copies are read-only
    before = [pair for pair in metadata(photo) if pair != MANGLED_NOTE]
    assert_jpeg_only_xmp_changed(embed_twice(photo))
    assert metadata(photo) == before


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def iptc_block() -> bytes:
    """An APP13 Photoshop IRB with IPTC, its CodedCharacterSet record written twice
    (as some agency software does)."""

    def record(number: int, dataset: int, value: bytes) -> bytes:
        return bytes([0x1C, number, dataset]) + struct.pack(">H", len(value)) + value

    iptc = (
        record(1, 90, b"\x1b%G")
        + record(1, 90, b"\x1b%G")
        + record(2, 0, b"\x00\x04")
        + record(2, 25, b"Holiday")
        + record(2, 25, "Zürich".encode())
        + record(2, 120, b"A caption")
    )
    iptc += b"\x00" * (len(iptc) & 1)
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    return b"Photoshop 3.0\x00" + resource


FOREIGN_XMP = (
    b"<?xpacket begin='\xef\xbb\xbf' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
    b"xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
    b"<rdf:Description rdf:about='uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b' "
    b"xmlns:dc='http://purl.org/dc/elements/1.1/' "
    b"xmlns:photoshop='http://ns.adobe.com/photoshop/1.0/' photoshop:City='Bern'>"
    b"<dc:subject><rdf:Bag><rdf:li>Holiday</rdf:li></rdf:Bag></dc:subject>"
    b"</rdf:Description></rdf:RDF></x:xmpmeta>\n" + b" " * 200 + b"\n<?xpacket end='w'?>"
)


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def camera_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0106] = "Canon", "Canon EOS 5D Mark III", 2
    exif.get_ifd(0x8769)[0x9003] = "2016:08:05 12:00:45"  # DateTimeOriginal
    data = exif.tobytes()
    assert data.startswith(b"Exif\x00\x00")
    return data


def built_jpeg(path: Path, *, with_xmp: bool) -> Path:
    """JFIF, Exif, ICC, IPTC (two CodedCharacterSet records), XMP with rdf:about=uuid,
    a comment, the image, and bytes after EOI (as phones append)."""
    rng = np.random.default_rng(3)
    image = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    data = encoded.tobytes()
    jfif_end = 4 + struct.unpack(">H", data[4:6])[0]
    assert data[2:4] == b"\xff\xe0"
    middle = [
        segment(0xE1, camera_exif()),
        segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + srgb_profile()),
        segment(0xED, iptc_block()),
        segment(0xE1, XMP_HEADERS[0] + FOREIGN_XMP) if with_xmp else b"",
        segment(0xFE, b"Shot on film"),
    ]
    path.write_bytes(data[:jfif_end] + b"".join(middle) + data[jfif_end:] + b"TRAILER\x00")
    return path


@pytest.mark.parametrize("with_xmp", [True, False], ids=["xmp", "no-xmp"])
def test_built_jpeg_keeps_iptc_icc_comment_and_trailer(tmp_path: Path, with_xmp: bool) -> None:
    photo = built_jpeg(tmp_path / "built.jpg", with_xmp=with_xmp)
    before = metadata(photo)
    keys = [key for key, _ in before]
    assert sum(key.endswith(":CodedCharacterSet") for key in keys) == 2
    assert "File:Comment" in keys
    assert ("IFD0:PhotometricInterpretation", "RGB") in before
    states = embed_twice(photo)
    assert_jpeg_only_xmp_changed(states)
    assert metadata(photo) == before
    assert states[-1].endswith(b"\xff\xd9TRAILER\x00")
    if not with_xmp:  # inserted right after Exif, before ICC
        markers = [part[:2] for part in jpeg_parts(states[-1])[:4]]
        assert markers == [b"\xff\xe0", b"\xff\xe1", b"\xff\xe1", b"\xff\xe2"]
        assert is_jpeg_xmp(jpeg_parts(states[-1])[2])
    else:
        got = subprocess.run(
            [EXIFTOOL, "-s3", "-XMP-photoshop:City", "-XMP-dc:Subject", str(photo)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        assert got[0] == "Bern" and got[1].startswith("Holiday")


def test_jpeg_packet_over_the_segment_limit_is_refused(tmp_path: Path) -> None:
    data = built_jpeg(tmp_path / "built.jpg", with_xmp=True).read_bytes()
    fits = FOREIGN_XMP + b" " * (MAX_PACKET - len(FOREIGN_XMP))
    assert JPEG.read(JPEG.write(data, fits)) == fits
    with pytest.raises(ContainerError, match=r"65,503 bytes .* at most 65,502 .*xmp\.embed"):
        JPEG.write(data, fits + b" ")


def test_jpeg_check_names_a_changed_segment(tmp_path: Path) -> None:
    data = built_jpeg(tmp_path / "built.jpg", with_xmp=True).read_bytes()
    written = JPEG.write(data, FOREIGN_XMP)
    JPEG.check(data, written)
    at = written.index(b"Shot on film")
    tampered = written[:at] + b"s" + written[at + 1 :]
    with pytest.raises(ContainerError, match=r"\(COM\) differs"):
        JPEG.check(data, tampered)
    comment = segment(0xFE, b"Shot on film")
    with pytest.raises(ContainerError, match=r"lost segment 5 \(COM\)"):
        JPEG.check(data, written.replace(comment, b""))
    twice = written.replace(comment, comment + segment(0xE1, XMP_HEADERS[0] + FOREIGN_XMP))
    with pytest.raises(ContainerError, match="2 XMP segments"):
        JPEG.check(data, twice)


# --- PNG ----------------------------------------------------------------------------


def built_png(path: Path, *, with_xmp: bool) -> Path:
    rng = np.random.default_rng(5)
    image = Image.fromarray((rng.random((30, 44, 3)) * 255).astype(np.uint8))
    info = PngInfo()
    info.add_text("Title", "A title")
    info.add_itxt("Description", "Eine Beschreibung", lang="de")
    info.add_text("Comment", "compressed " * 40, zip=True)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS"
    image.save(path, pnginfo=info, icc_profile=srgb_profile(), exif=exif.tobytes())
    if with_xmp:
        subprocess.run(
            [EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Holiday", str(path)],
            check=True,
        )
    return path


@pytest.mark.parametrize("with_xmp", [True, False], ids=["xmp", "no-xmp"])
def test_png_keeps_every_other_chunk(tmp_path: Path, with_xmp: bool) -> None:
    photo = built_png(tmp_path / "built.png", with_xmp=with_xmp)
    original = png_chunks(photo.read_bytes())
    types = [chunk[4:8] for chunk in original]
    assert {b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf"} <= set(types)
    before = metadata(photo)
    for data in embed_twice(photo)[1:]:
        chunks = png_chunks(data)
        assert [c for c in chunks if not is_png_xmp(c)] == [
            c for c in original if not is_png_xmp(c)
        ]
        (at,) = [i for i, c in enumerate(chunks) if is_png_xmp(c)]
        if any(is_png_xmp(c) for c in original):
            assert original[at][8:].startswith(b"XML:com.adobe.xmp")
        else:
            assert chunks[at + 1][4:8] == b"IDAT"  # inserted before the image data
        xmp = chunks[at]
        assert struct.unpack(">I", xmp[-4:])[0] == zlib.crc32(xmp[4:-4])
        assert xmp[8:-4].split(b"\x00", 1)[1][:2] == b"\x00\x00"  # not compressed
    assert metadata(photo) == before


# --- WebP ---------------------------------------------------------------------------


def noise(height: int, width: int, channels: int, seed: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, channels)) * 255).astype(np.uint8)


def webp_lossy(path: Path) -> Path:
    assert cv2.imwrite(str(path), noise(37, 51, 3), [cv2.IMWRITE_WEBP_QUALITY, 80])
    return path


def webp_lossless(path: Path) -> Path:
    assert cv2.imwrite(str(path), noise(37, 51, 3), [cv2.IMWRITE_WEBP_QUALITY, 101])
    return path


def webp_lossless_alpha(path: Path) -> Path:
    assert cv2.imwrite(str(path), noise(37, 51, 4), [cv2.IMWRITE_WEBP_QUALITY, 101])
    return path


def webp_extended(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS"
    Image.fromarray(noise(37, 51, 3)).save(
        path, quality=80, icc_profile=srgb_profile(), exif=exif.tobytes()
    )
    return path


WEBPS = {
    "lossy": webp_lossy,
    "lossless": webp_lossless,
    "lossless-alpha": webp_lossless_alpha,
    "extended": webp_extended,
}


@pytest.mark.parametrize("kind", list(WEBPS))
def test_webp_keeps_every_other_chunk(tmp_path: Path, kind: str) -> None:
    photo = WEBPS[kind](tmp_path / "photo.webp")
    original = riff_chunks(photo.read_bytes())
    first = original[0][:4]
    assert first == (b"VP8X" if kind == "extended" else b"VP8 " if kind == "lossy" else b"VP8L")
    mode = Image.open(photo).mode
    before = metadata(photo)
    for data in embed_twice(photo)[1:]:
        chunks = riff_chunks(data)
        plain = [c for c in original if c[:4] not in (b"VP8X", b"XMP ")]
        assert [c for c in chunks if c[:4] not in (b"VP8X", b"XMP ")] == plain
        assert [c[:4] for c in chunks].count(b"XMP ") == 1
        vp8x = chunks[0]
        assert vp8x[:4] == b"VP8X" and len(vp8x) == 18
        flags, width, height = vp8x[8], vp8x[12:15], vp8x[15:18]
        assert int.from_bytes(width, "little") + 1 == 51
        assert int.from_bytes(height, "little") + 1 == 37
        if first == b"VP8X":
            assert flags == original[0][8] | 0x04 and vp8x[9:] == original[0][9:]
        else:
            assert flags == 0x04 | (0x10 if kind == "lossless-alpha" else 0)
    assert Image.open(photo).mode == mode
    after = dict(metadata(photo))
    flags = dict(before).get("RIFF:WebP_Flags")
    alpha = ", Alpha" if kind == "lossless-alpha" else ""  # told by the VP8L header
    assert after["RIFF:WebP_Flags"] == ("XMP, " + flags if flags else "XMP" + alpha)
    assert after["File:FileType"] == "Extended WEBP"
    assert without_vp8x(after) == without_vp8x(dict(before))


def without_vp8x(view: dict[str, object]) -> dict[str, object]:
    """exiftool's view less what VP8X itself says: the file type, its flags, and its
    canvas size (a copy of the bitstream's, so the bitstream's becomes "Copy1")."""
    return {
        key: value
        for key, value in view.items()
        if key not in ("File:FileType", "RIFF:WebP_Flags") and not key.startswith("RIFF:Copy")
    }


# --- TIFF ---------------------------------------------------------------------------


def tiff_little(path: Path) -> Path:
    assert cv2.imwrite(str(path), noise(33, 47, 3))  # libtiff: IFD0 after the strips
    return path


def tiff_big(path: Path) -> Path:
    gray = (np.random.default_rng(4).random((33, 47)) * 65535).astype(np.uint16)
    Image.fromarray(gray).convert("I;16B").save(path)  # Motorola order, IFD0 first
    return path


TIFFS = {"little-endian": tiff_little, "big-endian": tiff_big}


@pytest.mark.parametrize("with_xmp", [True, False], ids=["xmp", "no-xmp"])
@pytest.mark.parametrize("kind", list(TIFFS))
def test_tiff_only_the_xmp_pointer_changes(tmp_path: Path, kind: str, with_xmp: bool) -> None:
    photo = TIFFS[kind](tmp_path / "photo.tif")
    tags = ["-Make=Nikon", "-Model=D750", "-IFD0:Artist=Someone"]
    tags += ["-XMP-dc:Subject=Holiday"] if with_xmp else []
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *tags, str(photo)], check=True)
    order = "<" if photo.read_bytes()[:2] == b"II" else ">"
    assert (order == ">") == (kind == "big-endian")
    before = metadata(photo)
    states = embed_twice(photo)
    for old, new in itertools.pairwise(states):
        old_at, old_entries, old_next = tiff_ifd0(old)
        new_at, new_entries, new_next = tiff_ifd0(new)
        others = [e for e in old_entries if tiff_tag(e, order) != 700]
        assert [e for e in new_entries if tiff_tag(e, order) != 700] == others
        assert new_next == old_next
        tags_in_order = [tiff_tag(e, order) for e in new_entries]
        assert tags_in_order == sorted(tags_in_order) and tags_in_order.count(700) == 1
        (xmp,) = [e for e in new_entries if tiff_tag(e, order) == 700]
        count, offset = struct.unpack(order + "II", xmp[4:12])
        assert offset >= len(old) and offset % 2 == 0 and offset + count <= len(new)
        # Every original byte is where it was, but the pointer(s) to the new XMP.
        differ = [i for i in range(len(old)) if old[i] != new[i]]
        if new_at == old_at:
            entry = old_at + 2 + 12 * tags_in_order.index(700)
            assert all(entry + 4 <= i < entry + 12 for i in differ)
        else:
            assert all(4 <= i < 8 for i in differ) and new_at >= len(old)
    assert metadata(photo) == before


def test_tiff_check_names_a_changed_byte(tmp_path: Path) -> None:
    data = tiff_big(tmp_path / "photo.tif").read_bytes()
    written = TIFF.write(data, FOREIGN_XMP)
    TIFF.check(data, written)
    tampered = bytearray(written)
    tampered[len(data) - 1] ^= 0xFF
    with pytest.raises(ContainerError, match=f"at byte {len(data) - 1:,}"):
        TIFF.check(data, bytes(tampered))


# --- damaged files ------------------------------------------------------------------


def damaged(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A damaged or unusual file of `kind`, and what the refusal must say."""
    if kind == "jpeg-truncated":
        data = built_jpeg(tmp_path / "x.jpg", with_xmp=False).read_bytes()
        return write(tmp_path / "photo.jpg", data[:300]), "truncated JPEG"
    if kind == "jpeg-cut-scan":
        data = built_jpeg(tmp_path / "x.jpg", with_xmp=False).read_bytes()
        cut = data[: data.index(b"\xff\xd9TRAILER")]
        return write(tmp_path / "photo.jpg", cut), "truncated JPEG: the image data has no EOI"
    if kind == "jpeg-bad-length":
        data = bytearray(built_jpeg(tmp_path / "x.jpg", with_xmp=False).read_bytes())
        at = data.index(b"\xff\xfe")
        data[at + 2 : at + 4] = b"\x00\x01"
        return write(tmp_path / "photo.jpg", bytes(data)), "COM segment at byte .* has length 1"
    if kind == "jpeg-two-xmp":
        data = built_jpeg(tmp_path / "x.jpg", with_xmp=True).read_bytes()
        xmp = segment(0xE1, XMP_HEADERS[0] + FOREIGN_XMP)
        return write(tmp_path / "photo.jpg", data.replace(xmp, xmp + xmp)), "2 XMP segments"
    if kind == "png-crc":
        data = bytearray(built_png(tmp_path / "x.png", with_xmp=False).read_bytes())
        data[data.index(b"A title")] ^= 0x20
        return write(tmp_path / "photo.png", bytes(data)), "tEXt chunk at byte .* fails its CRC"
    if kind == "png-truncated":
        data = built_png(tmp_path / "x.png", with_xmp=False).read_bytes()
        return write(tmp_path / "photo.png", data[:-20]), "truncated PNG"
    if kind == "webp-truncated":
        data = webp_extended(tmp_path / "x.webp").read_bytes()
        return write(tmp_path / "photo.webp", data[:-30]), "truncated WebP: its RIFF header"
    if kind == "webp-chunk":
        data = bytearray(webp_extended(tmp_path / "x.webp").read_bytes())
        at = data.index(b"ICCP")
        data[at + 4 : at + 8] = struct.pack("<I", 10**6)
        return write(tmp_path / "photo.webp", bytes(data)), "ICCP chunk at byte 30 runs past"
    if kind == "tiff-truncated":
        data = tiff_little(tmp_path / "x.tif").read_bytes()
        return write(tmp_path / "photo.tif", data[:-40]), "truncated TIFF: IFD0 at byte"
    assert kind == "tiff-strips"
    data = tiff_big(tmp_path / "x.tif").read_bytes()
    return write(tmp_path / "photo.tif", data[:-40]), "truncated TIFF: its image data"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, (1_500_000_000, 1_500_000_000))
    return path


DAMAGED = [
    "jpeg-truncated",
    "jpeg-cut-scan",
    "jpeg-bad-length",
    "jpeg-two-xmp",
    "png-crc",
    "png-truncated",
    "webp-truncated",
    "webp-chunk",
    "tiff-truncated",
    "tiff-strips",
]


@pytest.mark.parametrize("kind", DAMAGED)
def test_damaged_files_are_refused_untouched(tmp_path: Path, kind: str) -> None:
    photo, message = damaged(kind, tmp_path)
    data, stat = photo.read_bytes(), photo.stat()
    with pytest.raises(XmpWriteError, match=f"{photo}: .*{message}"):
        sync_embedded(photo, FIRST)
    assert photo.read_bytes() == data and photo.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir() if ".tagd-" in p.name) == []


def test_unusual_containers_are_refused_by_name() -> None:
    bigtiff = b"II+\x00\x08\x00\x00\x00" + b"\x00" * 32
    with pytest.raises(ContainerError, match="BigTIFF"):
        TIFF.read(bigtiff)
    with pytest.raises(ContainerError, match="not a classic TIFF"):
        TIFF.read(b"II*")
    with pytest.raises(ContainerError, match="not a PNG"):
        PNG.read(b"\x89PNG")
    with pytest.raises(ContainerError, match="not a WebP"):
        WEBP.read(b"RIFF\x04\x00\x00\x00AVI ")
    with pytest.raises(ContainerError, match="first chunk is none"):
        WEBP.read(b"RIFF\x04\x00\x00\x00WEBP")
    with pytest.raises(ContainerError, match="not a JPEG"):
        JPEG.read(b"\xff\xd9")
