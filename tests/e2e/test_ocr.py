"""OCR: real PP-OCRv4 models on real ICDAR photos, the Text / Studio tags, and
`tagd search` end to end through `tagd scan`."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, require_models, write_config
from PIL import Image, ImageDraw, ImageFont

from tagd.analyzers.ocr import TextReader, build
from tagd.config import Settings, TagSettings, TextTagSettings
from tagd.media.image import decode_image
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media
from tagd.runtime.manifest import load_manifest

OCR_IMAGES = SHARED / "eval" / "ocr" / "images"
PLAIN = SHARED / "eval" / "faces" / "images" / "img24.jpg"  # a portrait, no writing


@pytest.fixture(scope="module")
def reader() -> TextReader:
    if not OCR_IMAGES.is_dir():
        pytest.skip(f"eval data {OCR_IMAGES} is absent")
    models = require_models()
    built = build(Settings(), load_manifest(models), models)
    assert isinstance(built, TextReader)
    return built


def _read(path: Path):
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


def test_reads_ground_truth_words_from_an_icdar_photo(reader: TextReader) -> None:
    findings = reader.analyze([_read(OCR_IMAGES / "icdar_img_1.jpg")])[0]
    words = {w.casefold() for f in findings for w in (f.text or "").split()}
    assert "carpark" in words  # a legible ground-truth word
    carpark = next(f for f in findings if "Carpark" in (f.text or ""))
    assert carpark.label == "text" and carpark.score >= 0.5
    # The box is the axis-aligned bounds of the quad kept in points, inside the photo,
    # and over the ground-truth region (x 376-424, y 196-213).
    xs, ys = carpark.points[0::2], carpark.points[1::2]
    assert len(carpark.points) == 8
    assert carpark.box == (min(xs), min(ys), max(xs), max(ys))
    x0, y0, x1, y1 = carpark.box
    assert x0 <= 380 and x1 >= 420 and y0 <= 200 and y1 >= 210 and x1 - x0 < 120


def test_document_is_read_line_by_line(reader: TextReader) -> None:
    text = " ".join(
        f.text or "" for f in reader.analyze([_read(OCR_IMAGES / "document_text.jpg")])[0]
    )
    assert "The quick brown dog jumped over the lazy fox" in text


def _png(image: Image.Image) -> np.ndarray:
    """`image` as the scan decodes it (tagd.media.image), from PNG bytes."""
    data = io.BytesIO()
    image.save(data, "PNG")
    return decode_image(data.getvalue(), min_long_side=960).image


def _texts(reader: TextReader, image: np.ndarray) -> list[str]:
    return [f.text or "" for f in reader.analyze([image])[0]]


@pytest.mark.parametrize("ink", [(0, 0, 0, 255), (255, 255, 255, 255)], ids=["black", "white"])
def test_text_on_a_transparent_png_is_read(reader: TextReader, ink: tuple[int, ...]) -> None:
    # Transparent pixels hold black: black text would be black on black.
    sticker = Image.new("RGBA", (420, 80), (0, 0, 0, 0))
    ImageDraw.Draw(sticker).text((10, 15), "Holiday market 2025", font=_font(36), fill=ink)
    assert _texts(reader, _png(sticker)) == ["Holiday market 2025"]


def test_a_thin_strip_is_read_whole(reader: TextReader) -> None:
    line = "caution profile slow garden search park 478"
    strip = Image.new("RGB", (int(_font(22).getlength(line)) + 12, 28), (20, 40, 90))
    ImageDraw.Draw(strip).text((6, 1), line, font=_font(22), fill=(255, 255, 255))
    read = _texts(reader, _png(strip))
    assert "".join(read) == line.replace(" ", "")  # one line, every letter, in order
    box = reader.analyze([_png(strip)])[0][0].box
    assert box is not None and box[1] >= 0 and box[3] <= 28  # in the strip's own pixels


def _line(text: str, size: int = 26) -> np.ndarray:
    """A text line as the detector cuts it out: the ink with a few pixels around."""
    page = Image.new("RGB", (int(_font(size).getlength(text)) + 12, size + 10), (248, 246, 240))
    ImageDraw.Draw(page).text((6, 3), text, font=_font(size), fill=(25, 25, 25))
    return np.ascontiguousarray(np.asarray(page)[:, :, ::-1])


def test_a_long_line_is_not_turned_upside_down(reader: TextReader) -> None:
    # A 30:1 line squeezed into the angle classifier's 4:1 window looks upside down
    # to it; judged on windows of its own height it stays as it is.
    line = _line("Theatre silver today coffee road west hospital today departure total winter")
    assert line.shape[1] > 20 * line.shape[0]
    assert np.array_equal(reader._orient([line])[0], line)
    assert np.array_equal(reader._orient([line[::-1, ::-1]])[0], line)  # really turned


def test_lines_are_read_at_their_own_width(reader: TextReader) -> None:
    # Padded to the width of a longer line in one batch, a line lost its spaces.
    long = "Ticket minutes platform family backup orange window avenue archive platform"
    short = "Theatre silver today coffee road west hospital"
    read = [text.strip() for text, _ in reader.recognise([_line(long), _line(short)])]
    assert read == [long, short]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's own: no system font needed


def test_a_photo_without_text_never_runs_recognition(reader: TextReader) -> None:
    if not PLAIN.is_file():
        pytest.skip(f"{PLAIN} is absent")
    before = dict(reader.runs)
    assert reader.analyze([_read(PLAIN)])[0] == []
    assert reader.runs["det"] == before["det"] + 1
    assert reader.runs["rec"] == before["rec"] and reader.runs["cls"] == before["cls"]


def _policy(**text: object) -> TagPolicy:
    return TagPolicy(TagSettings(text=dataclasses.replace(TextTagSettings(), **text)))


def _text(text: str, score: float = 0.95) -> Detection:
    return Detection("text", score, (0, 0, 10, 10), text=text)


def test_text_tag_and_studio_suggestions() -> None:
    policy = _policy(studios=["Blender Foundation", "Acme Studios", "BBC"])
    media = Media("image")
    # A watermark read with one wrong letter and the words run together.
    tags = policy.derive("ocr", [_text("www.BlenderFoundatlon.org"), _text("bbc one")], media)
    names = {t.name for t in tags}
    assert names == {"AI|Text", "AI|Studio|Blender Foundation", "AI|Studio|BBC"}
    # Unsure or too short text makes no tag; a name must be there, not a fragment.
    assert policy.derive("ocr", [_text("Acme Studios", 0.6), _text("ab")], media) == []
    assert {t.name for t in policy.derive("ocr", [_text("Acme")], media)} == {"AI|Text"}
    # A short name matches whole words only ("bbc" is not in "abbcd").
    assert {t.name for t in policy.derive("ocr", [_text("abbcd")], media)} == {"AI|Text"}


def test_studio_near_misses_wait_for_review() -> None:
    """A studio's name read with two wrong letters is no tag, but a candidate of
    the review queue (within STUDIO_REVIEW_MARGIN points); a line unlike any
    studio is not, however low the review band goes."""
    from tagd.policy.apply import candidates

    policy = _policy(studios=["Acme Studios", "Blender Foundation"])
    media = Media("image")
    lines = [_text("Acne Studi0s"), _text("hello world")]
    tags = policy.derive("ocr", lines, media)
    assert {t.name for t in tags} == {"AI|Text"}
    found = candidates(policy, "ocr", lines, media, tags, {})
    assert [(t.name, t.score) for t in found] == [("AI|Studio|Acme Studios", 0.8182)]
    # Decided already: not asked again.
    assert candidates(policy, "ocr", lines, media, tags, {found[0].name: ("reject", 0.8)}) == []


def test_text_on_videos_gets_time_ranges_at_the_ocr_interval() -> None:
    """OCR reads one frame per ocr.video_interval: a frame stands for that long."""
    policy = TagPolicy(TagSettings(text=TextTagSettings(studios=["Acme Studios"])))

    def line(t: float | None, text: str) -> Detection:
        return Detection("text", 0.95, None, t=t, text=text)

    found = [
        line(0.0, "Hello there"),
        line(10.0, "Hello again"),
        line(20.0, "ACME STUDIOS"),
        line(50.0, "late credits"),
    ]
    video = Media("video", 1920, 1080, duration=55.0, interval=10.0)
    tags = {
        t.name: [(s.start, s.end) for s in t.segments] for t in policy.derive("ocr", found, video)
    }
    assert tags == {
        "AI|Text": [(0.0, 30.0), (50.0, 55.0)],
        "AI|Studio|Acme Studios": [(20.0, 30.0)],
    }
    photo = policy.derive("ocr", [line(None, "Hello there")], Media("image", 10, 10))
    assert [(t.name, t.segments) for t in photo] == [("AI|Text", ())]


@pytest.mark.usefixtures("default_models")
def test_pipeline_records_the_interval_ocr_read_a_video_at(
    tmp_path: Path, state_dir: Path, cli
) -> None:
    from conftest import VIDEOS

    from tagd.catalog.catalog import Catalog

    if not (VIDEOS / "smpte-2997.mp4").is_file():
        pytest.skip(f"smpte-2997.mp4 missing from {VIDEOS}")
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(VIDEOS / "smpte-2997.mp4", lib / "smpte.mp4")  # a timecode all along
    config = tmp_path / "config.toml"
    config.write_text(
        "[objects]\nenabled = false\n[concepts]\nenabled = false\n[faces]\nenabled = false\n"
        "[duplicates]\nenabled = false\n[xmp]\nenabled = false\n[ocr]\nvideo_interval = 4.0\n"
    )
    code, out, err = cli("--config", config, "scan", lib)
    assert code == 0, out + err
    with Catalog(state_dir / "catalog.db") as catalog:
        [(cid, interval, duration)] = catalog.con.execute(
            "SELECT c.id, a.frame_interval, c.duration FROM analyses a "
            "JOIN contents c ON c.id = a.content_id WHERE a.analyzer = 'ocr'"
        ).fetchall()
        assert interval == 4.0  # decode samples every 2 s; OCR read every other frame
        [tag] = [t for t in catalog.tags(cid) if t.name == "AI|Text"]
    assert [(s.start, s.end) for s in tag.segments] == [(0.0, pytest.approx(duration))]


def test_tag_rules_are_checked() -> None:
    from tagd.config import ConfigError, parse_settings

    with pytest.raises(ConfigError, match=r"ocr\.max_side"):
        parse_settings({"ocr": {"max_side": 1000}})
    with pytest.raises(ConfigError, match=r"tags\.text\.studios\[0\]"):
        parse_settings({"tags": {"text": {"studios": ["A|B"]}}})
    with pytest.raises(ConfigError, match=r"ocr\.min_score"):
        parse_settings({"ocr": {"min_score": 2}})


def test_search_finds_a_street_scene_by_a_word_in_it(
    reader: TextReader, tmp_path: Path, state_dir: Path, cli
) -> None:
    library = tmp_path / "library"
    (library / "street").mkdir(parents=True)
    (library / "other").mkdir()
    shutil.copyfile(OCR_IMAGES / "icdar_img_1.jpg", library / "street" / "carpark.jpg")
    shutil.copyfile(OCR_IMAGES / "icdar_img_8.jpg", library / "other" / "why.jpg")
    if PLAIN.is_file():
        shutil.copyfile(PLAIN, library / "other" / "portrait.jpg")
    config = write_config(
        tmp_path / "config.toml",
        '[xmp]\nenabled = false\n[tags.text]\nstudios = ["Genexis Theatre"]\n',
    )
    code, out, err = cli("--config", config, "scan", library)
    assert code == 0, out + err

    code, out, _ = cli("--config", config, "search", "carpark")
    assert code == 0 and str(library / "street" / "carpark.jpg") in out
    assert "why.jpg" not in out
    code, out, _ = cli("--config", config, "search", "nothing", "--json")
    hits = json.loads(out)
    assert code == 0 and [Path(h["path"]).name for h in hits] == ["why.jpg"]
    assert hits[0]["matches"][0]["source"] == "text" and hits[0]["score"] > 0

    # Tags are searchable by leaf: the studio read off the sign, and AI|Text.
    code, out, _ = cli("--config", config, "search", "genexis theatre")
    assert code == 0 and "carpark.jpg" in out
    code, out, _ = cli("--config", config, "search", "--tag", "Text", "--json")
    assert {Path(h["path"]).name for h in json.loads(out)} == {"carpark.jpg", "why.jpg"}

    # Filters: a folder, a kind, a person nobody is named yet.
    code, out, _ = cli("--config", config, "search", "carpark", "--path", library / "other")
    assert code == 1 and out == ""
    code, out, _ = cli("--config", config, "search", "nothing", "--kind", "video")
    assert code == 1
    code, out, _ = cli("--config", config, "search", "carpark", "--person", "Nobody")
    assert code == 1
    code, out, _ = cli("--config", config, "search", "--json", "zzzqx")
    assert code == 1 and json.loads(out) == []
    code, _, err = cli("--config", config, "search")
    assert code == 2 and "give words" in err

    code, out, _ = cli("--config", config, "export")
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert any(t["text"] == "Carpark" for t in rows["carpark.jpg"]["text"])
    assert all(len(t["box"]) == 4 for t in rows["carpark.jpg"]["text"])
