"""Camera RAW files, on real ones: a Canon CR2, a Sony ARW and a DNG from a Nikon
(tests/media/fetch_raw.py says where each comes from; no registry ships a real
NEF, ORF, RW2, RAF, PEF or CR3).

Told apart by content, decoded upright from the preview or LibRaw, tagged like
the same photo's JPEG, RAW + JPEG analysed once, sidecars where darktable and
Lightroom look (read back by exiftool), an existing darktable sidecar's history
kept, the RAW itself never written, damaged RAWs a clear error."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import rawpy
from conftest import EXIFTOOL, exiftool_keywords, write_config

from tagd.media.image import DecodeError, decode_image
from tagd.media.raw import HEAD, raw_format
from tagd.media.sniff import kind_of_format, sniff

CR2, ARW, DNG = "IMG_5952.CR2", "_DSC2164.ARW", "sample1.dng"
SIZES = {CR2: (3522, 2348), ARW: (5184, 3464), DNG: (4310, 2868)}
MTIME_NS = 1_700_000_000 * 10**9  # long settled: no scan waits for a copy to end

pytestmark = pytest.mark.usefixtures("default_models")


def _grey(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (256, round(256 * image.shape[0] / image.shape[1])))
    g = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return (g - g.mean()) / (g.std() + 1e-6)


def _same_picture(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two pictures' structure (sizes and tones may differ)."""
    ga, gb = _grey(a), _grey(b)
    h, w = min(ga.shape[0], gb.shape[0]), min(ga.shape[1], gb.shape[1])
    return float((ga[:h, :w] * gb[:h, :w]).mean())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _camera_jpeg(raw: Path, out: Path) -> Path:
    """The JPEG a camera set to RAW + JPEG writes: the full frame, developed."""
    with rawpy.imread(str(raw)) as r:
        rgb = r.postprocess(use_camera_wb=True)
    cv2.imwrite(str(out), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return out


def test_raws_are_told_apart_by_their_content(raw_files: Path, tmp_path: Path) -> None:
    for name, fmt in ((CR2, "cr2"), (ARW, "arw"), (DNG, "dng")):
        data = (raw_files / name).read_bytes()
        assert raw_format(data[:HEAD]) == fmt
        assert kind_of_format(sniff(data[:64])) == "image"
        # Renamed to .tif (or anything), it is still read as the RAW it is.
        decoded = decode_image(data, min_long_side=640, name="renamed.tif")
        assert (decoded.width, decoded.height) == SIZES[name]
        assert decoded.format == fmt
    # An ordinary TIFF and JPEG of a real photo are not RAWs.
    with rawpy.imread(str(raw_files / ARW)) as r:
        thumb = cv2.imdecode(np.frombuffer(r.extract_thumb().data, np.uint8), cv2.IMREAD_COLOR)
    for ext in (".tif", ".jpg"):
        path = tmp_path / f"photo{ext}"
        cv2.imwrite(str(path), thumb)
        assert raw_format(path.read_bytes()[:HEAD], path.name) is None
        assert decode_image(path.read_bytes(), min_long_side=640).format != "arw"


def test_preview_and_half_size_decode_show_the_same_picture(raw_files: Path) -> None:
    for name in (CR2, ARW, DNG):
        data = (raw_files / name).read_bytes()
        preview = decode_image(data, min_long_side=640)  # the camera's JPEG preview
        half = decode_image(data, min_long_side=99_999)  # LibRaw's demosaic, half size
        assert max(preview.image.shape[:2]) < max(half.image.shape[:2])
        assert (preview.width, preview.height) == (half.width, half.height) == SIZES[name]
        assert _same_picture(preview.image, half.image) > 0.8, name


@pytest.mark.parametrize(
    ("orientation", "turn"),
    [(6, cv2.ROTATE_90_CLOCKWISE), (8, cv2.ROTATE_90_COUNTERCLOCKWISE), (3, cv2.ROTATE_180)],
)
def test_the_cameras_orientation_is_applied(
    raw_files: Path, tmp_path: Path, orientation: int, turn: int
) -> None:
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed")
    turned = Path(shutil.copyfile(raw_files / ARW, tmp_path / ARW))
    subprocess.run(
        [EXIFTOOL, "-q", "-n", f"-Orientation={orientation}", "-overwrite_original", str(turned)],
        check=True,
    )
    plain = decode_image((raw_files / ARW).read_bytes(), min_long_side=640).image
    for need in (640, 99_999):  # the preview, and LibRaw's own decode
        decoded = decode_image(turned.read_bytes(), min_long_side=need)
        w, h = SIZES[ARW]
        assert (decoded.width, decoded.height) == ((h, w) if orientation != 3 else (w, h))
        assert _same_picture(decoded.image, cv2.rotate(plain, turn)) > 0.8


def _scan(cli, tmp_path: Path, lib: Path, extra: str = "") -> tuple[str, str]:
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[daemon]\nschedule = ""\nwatch = false\n{extra}',
    )
    for path in lib.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(MTIME_NS, MTIME_NS))
    code, out, err = cli("--config", config, "scan")
    assert code == 0, err
    return out, err


def _tags(cli, tmp_path: Path) -> dict[str, set[str]]:
    code, out, err = cli("--config", tmp_path / "config.toml", "export", "--format", "jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {Path(r["path"]).name: {t["name"] for t in r["tags"]} for r in rows}


def test_a_raw_library_is_tagged_like_its_jpegs(
    raw_files: Path, tmp_path: Path, state_dir: Path, cli
) -> None:
    lib, other = tmp_path / "lib", tmp_path / "lib" / "developed"
    other.mkdir(parents=True)
    raws = {name: Path(shutil.copyfile(raw_files / name, lib / name)) for name in SIZES}
    before = {name: _sha(p) for name, p in raws.items()}
    # The CR2 shot as RAW + JPEG; the others developed to JPEG into another folder.
    _camera_jpeg(raws[CR2], lib / "IMG_5952.JPG")
    for name in (ARW, DNG):
        _camera_jpeg(raws[name], other / (Path(name).stem + ".jpg"))

    out, err = _scan(cli, tmp_path, lib)
    # Six files, five decodes: the CR2 took its JPEG's findings.
    assert re.search(r"analysed 6 files \(5 frames\)", out + err), out + err
    tags = _tags(cli, tmp_path)
    assert tags[CR2] == tags["IMG_5952.JPG"]
    for name in (ARW, DNG):
        raw, jpeg = tags[name], tags[Path(name).stem + ".jpg"]
        assert raw, name
        # The same photo gives the same tags, within reason: preview and developed
        # JPEG differ in tone and size, so a tag near its threshold may differ.
        assert len(raw & jpeg) / len(raw | jpeg) >= 0.6, (name, raw, jpeg)
    assert "AI|Objects|person" in tags[ARW]

    # darktable's (and digiKam's) sidecars, read back by exiftool; the RAWs untouched.
    sidecars = [lib / f"{name}.xmp" for name in (ARW, DNG)]
    read = exiftool_keywords(sidecars)
    for name, sidecar in zip((ARW, DNG), sidecars, strict=True):
        assert set(read[str(sidecar)]["HierarchicalSubject"]) == tags[name]
    assert {name: _sha(p) for name, p in raws.items()} == before
    assert not list(lib.glob("*.dng.dng*")) and not (lib / "sample1.xmp").exists()


def test_lightroom_naming_and_an_existing_sidecar_of_either_style(
    raw_files: Path, tmp_path: Path, state_dir: Path, cli
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    arw = Path(shutil.copyfile(raw_files / ARW, lib / ARW))
    dng = Path(shutil.copyfile(raw_files / DNG, lib / DNG))
    # darktable already edited the DNG: its sidecar holds the edit history.
    darktable = Path(__file__).parents[1] / "data" / "xmp" / "darktable.xmp"
    shutil.copyfile(darktable, lib / f"{DNG}.xmp")
    history = _darktable_history(lib / f"{DNG}.xmp")
    assert len(history) >= 2

    _scan(cli, tmp_path, lib, '[xmp]\nsidecar = "stem"\n')
    # Lightroom's naming for the ARW; the DNG keeps darktable's one sidecar.
    assert (lib / "_DSC2164.xmp").is_file() and not (lib / f"{ARW}.xmp").exists()
    assert not (lib / "sample1.xmp").exists()
    assert _darktable_history(lib / f"{DNG}.xmp") == history
    read = exiftool_keywords([lib / "_DSC2164.xmp", lib / f"{DNG}.xmp"])
    assert "AI|Objects|person" in read[str(lib / "_DSC2164.xmp")]["HierarchicalSubject"]
    assert any(k.startswith("AI|") for k in read[str(lib / f"{DNG}.xmp")]["HierarchicalSubject"])
    rating = subprocess.run(
        [EXIFTOOL, "-s3", "-XMP-xmp:Rating", str(lib / f"{DNG}.xmp")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rating.stdout.strip() == "2"  # the user's rating stays

    # Back to darktable's naming: the ARW's Lightroom sidecar is the one written to.
    before = (lib / "_DSC2164.xmp").read_bytes()
    (tmp_path / "state").rename(tmp_path / "state-old")
    _scan(cli, tmp_path, lib, "[tags.objects]\nthreshold = 0.9\n")
    assert not (lib / f"{ARW}.xmp").exists()
    assert (lib / "_DSC2164.xmp").read_bytes() != before
    assert arw.is_file() and dng.is_file()


def _darktable_history(sidecar: Path) -> list[str]:
    return re.findall(r'darktable:operation="([^"]+)"', sidecar.read_text(encoding="utf-8"))


def test_embedding_never_rewrites_a_raw(
    raw_files: Path, tmp_path: Path, state_dir: Path, cli
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    raws = [Path(shutil.copyfile(raw_files / n, lib / n)) for n in SIZES]
    before = [_sha(p) for p in raws]
    # Most RAWs are TIFFs inside: asking for XMP in TIFFs must not reach them.
    _scan(cli, tmp_path, lib, '[xmp]\nembed = ["tiff", "jpeg"]\n')
    assert [_sha(p) for p in raws] == before
    assert all((lib / f"{p.name}.xmp").is_file() for p in raws[1:])


def test_damaged_raws_are_clear_errors_and_the_rest_is_tagged(
    raw_files: Path, tmp_path: Path, state_dir: Path, cli
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    data = (raw_files / ARW).read_bytes()
    (lib / "cut.ARW").write_bytes(data[:300_000])  # the preview and the sensor data gone
    (lib / "junk.NEF").write_bytes(bytes(range(256)) * 40)
    shutil.copyfile(raw_files / DNG, lib / DNG)
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[daemon]\nschedule = ""\nwatch = false\n',
    )
    code, out, err = cli("--config", config, "scan")
    assert code == 1, out + err  # some files could not be read: the summary names them
    assert "cut.ARW" in out + err and "truncated RAW data" in out + err
    assert "junk.NEF" in out + err
    assert _tags(cli, tmp_path)[DNG]
    with pytest.raises(DecodeError, match="truncated"):
        decode_image(data[:300_000], min_long_side=640, name="cut.ARW")


def test_a_damaged_preview_is_not_used(raw_files: Path) -> None:
    """The preview's last 2 KB zeroed (its end marker gone): libjpeg would pad it
    with grey, so LibRaw decodes the sensor data instead."""
    data = bytearray((raw_files / ARW).read_bytes())
    with rawpy.imread(str(raw_files / ARW)) as r:
        preview = bytes(r.extract_thumb().data)
    start = data.find(preview[5000:5100]) - 5000
    assert start > 0
    end = start + len(preview)
    data[end - 2000 : end] = bytes(2000)
    intact = decode_image((raw_files / ARW).read_bytes(), min_long_side=640)
    damaged = decode_image(bytes(data), min_long_side=640)
    assert max(intact.image.shape[:2]) == 808  # the preview, at 1/2 scale
    assert max(damaged.image.shape[:2]) == 2592  # LibRaw's half-size decode
    assert _same_picture(intact.image, damaged.image) > 0.8
