"""[vlm]: tags and captions from an OpenAI-compatible chat server (tests/openai_server.py,
which checks every request against OpenAI's own request types) on 127.0.0.1.

One library scanned four times: photos the server answers well get their tags
and captions, a video gets time ranges, and the photo whose answers are
garbage (prose, then a body that is not JSON, then an answer cut short) is
asked again at each scan, with a clear reason, until it gets a good answer;
the other analyzers store their findings for it all along. With the server
gone, the scan still tags new files with everything else.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from conftest import write_config
from openai_server import OpenAIServer
from test_end_to_end import db_rows

ODD_WIDTH = 250  # the photo the server misbehaves on (below image_size: sent as it is)


def flat(path: Path, width: int, height: int, level: int) -> Path:
    """A JPEG of one grey level (a little noise: its own bytes)."""
    rng = np.random.default_rng(width * 1000 + level)
    image = np.clip(level + rng.normal(0, 2, (height, width, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), image)
    return path


def clip(path: Path) -> Path:
    """20 s at 2 frames a second: bright for 10 s, then dark."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.time_base = Fraction(1, 2)
        for i in range(40):
            level = 230 if i < 20 else 20
            image = np.full((64, 96, 3), level, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def exported(cli, conf: Path) -> dict[str, dict[str, Any]]:
    code, out, err = cli("--config", conf, "export")
    assert code == 0, err
    return {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}


def vlm_tags(row: dict[str, Any]) -> set[str]:
    return {t["name"] for t in row["tags"] if t["name"].startswith("AI|VLM|")}


def test_vlm_tags_captions_time_ranges_and_bad_answers(
    tmp_path: Path, state_dir: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    flat(lib / "bright.jpg", 320, 240, 235)
    flat(lib / "dark.jpg", 320, 240, 15)
    flat(lib / "odd.jpg", ODD_WIDTH, 200, 240)
    clip(lib / "clip.mp4")
    server = OpenAIServer().start()
    server.misbehave[ODD_WIDTH] = "prose"
    conf = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[xmp]\nenabled = false\n'
        "[ocr]\nenabled = false\n[faces]\nenabled = false\n[concepts]\nenabled = false\n"
        "[clip]\nenabled = false\n[duplicates]\nenabled = false\n"
        '[vlm]\nenabled = true\nmodel = "test-vlm"\ncaptions = true\nvideo_interval = 2.0\n'
        'image_size = 256\n[vlm.tags]\nlight = ["bright", "dark"]\n'
        f'[[vlm.endpoints]]\nurl = "{server.url}"\nmax_concurrent = 2\n',
    )
    try:
        # 1. The odd photo's answers are prose: it waits, with the reason.
        code, out, err = cli("--config", conf, "scan")
        assert code == 0, out + err
        assert "vlm: asked about 3 files" in out and "1 left for the next scan" in out, out
        assert "odd.jpg: vlm: the answer is not JSON: 'Sure! This picture" in err, err
        rows = exported(cli, conf)
        assert vlm_tags(rows["bright.jpg"]) == {"AI|VLM|bright"}
        assert vlm_tags(rows["dark.jpg"]) == {"AI|VLM|dark"}
        assert rows["bright.jpg"]["vlm"]["captions"] == [{"text": "A 256x192 picture, level 235."}]
        assert vlm_tags(rows["odd.jpg"]) == set() and rows["odd.jpg"]["vlm"] == {
            "labels": [],
            "captions": [],
        }
        assert "objects" in rows["odd.jpg"] and rows["odd.jpg"]["status"] == "ok"
        # The video: a frame every 2 s, merged into time ranges.
        video = rows["clip.mp4"]
        assert vlm_tags(video) == {"AI|VLM|bright", "AI|VLM|dark"}
        ranges = {s["tag"]: (s["start"], s["end"]) for s in video["segments"]}
        assert ranges["AI|VLM|bright"][0] == 0.0 and 8.0 <= ranges["AI|VLM|bright"][1] <= 11.0
        assert 9.0 <= ranges["AI|VLM|dark"][0] <= 12.0 and ranges["AI|VLM|dark"][1] >= 18.0
        assert {c["t"] for c in video["vlm"]["captions"]} == {float(t) for t in range(0, 20, 2)}
        # Captions are searchable.
        code, out, _ = cli("--config", conf, "search", "picture level 235", "--json")
        hits = json.loads(out)
        assert code == 0 and Path(hits[0]["path"]).name == "bright.jpg", out
        assert hits[0]["matches"][0] == {
            "source": "text",
            "value": "A 256x192 picture, level 235.",
            "score": hits[0]["score"],
        }
        # Every image went at most image_size on its long side.
        assert server.images and max(max(size) for size in server.images) <= 256
        asked = len(server.requests)

        # 2. A body that is not JSON, 3. an answer cut short: still waiting.
        for trouble, reason in [
            ("not json", "the answer is not JSON ('<html>502"),
            ("truncated", "the answer was cut short at vlm.max_tokens"),
        ]:
            server.misbehave[ODD_WIDTH] = trouble
            code, out, err = cli("--config", conf, "scan")
            assert code == 0 and "1 left for the next scan" in out, out + err
            assert "odd.jpg: vlm: " in err and reason in err, err
        # Only the odd photo was asked again (twice a scan: once more on a bad answer).
        assert {size for size in server.images[asked:]} == {(ODD_WIDTH, 200)}

        # 4. Good answers: the odd photo gets its tag, and nothing else is asked.
        del server.misbehave[ODD_WIDTH]
        before = len(server.requests)
        code, out, err = cli("--config", conf, "scan")
        assert code == 0 and "vlm: asked about 1 file" in out, out + err
        assert len(server.requests) - before == 2  # its label set and its caption
        assert vlm_tags(exported(cli, conf)["odd.jpg"]) == {"AI|VLM|bright"}
    finally:
        server.stop()
    assert server.refused == []  # every request was a well-formed chat completion request

    # 5. The server gone: a new photo gets everything else, and waits for the VLM.
    flat(lib / "new.jpg", 320, 240, 200)
    code, out, err = cli("--config", conf, "scan")
    assert code == 0, out + err
    assert "1 left for the next scan (no VLM server is up)" in out, out
    rows = exported(cli, conf)
    assert rows["new.jpg"]["status"] == "ok" and vlm_tags(rows["new.jpg"]) == set()
    analysed = db_rows(state_dir, "SELECT analyzer FROM analyses a JOIN files f "
                       "ON f.content_id = a.content_id WHERE f.path LIKE '%new.jpg'")  # fmt: skip
    assert ("objects",) in analysed and ("vlm",) not in analysed
