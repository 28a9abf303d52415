"""Teaching a tag by example on real photos: the general image embedding each
scan stores (int8, sqlite-vec), POST /api/v1/teach on a real server, the tag
on photos nobody labelled, a review decision refining it, the next scan
scoring new photos, and forgetting it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import COCO_IMAGES
from test_api import exchange, get, serve

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.embedding import EMBEDDING

ONLY_CONCEPTS = "".join(
    f"[{s}]\nenabled = false\n" for s in ("xmp", "objects", "ocr", "faces", "duplicates")
)
SUBJECT = "000000000036.jpg"  # a woman under an umbrella: "our" subject


def shots(image: np.ndarray) -> list[np.ndarray]:
    """The subject taken again: crops, a mirror, another light, a smaller copy (as
    several photos of one boat, one house, one person are)."""
    h, w = image.shape[:2]
    return [
        image[: int(h * 0.9), : int(w * 0.9)],
        image[int(h * 0.1) :, int(w * 0.1) :],
        image[:, ::-1],
        cv2.convertScaleAbs(image, alpha=1.2, beta=15),
        cv2.resize(image, (w * 2 // 3, h * 2 // 3)),
        image[int(h * 0.05) : int(h * 0.95), int(w * 0.05) : int(w * 0.95)],
        cv2.convertScaleAbs(image[int(h * 0.08) :, : int(w * 0.92)], alpha=0.9, beta=-10),
    ]


def post(base: str, route: str, body: Any, method: str = "POST") -> tuple[int, Any]:
    request = urllib.request.Request(
        base + route,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    status, _, raw = exchange(request)
    return status, json.loads(raw)


@pytest.mark.usefixtures("default_models")
def test_teach_a_tag_by_example(tmp_path: Path, state_dir: Path, cli: Any) -> None:
    if not COCO_IMAGES.is_dir():
        pytest.skip(f"{COCO_IMAGES} is absent")
    lib = tmp_path / "library"
    lib.mkdir()
    subject = cv2.imread(str(COCO_IMAGES / SUBJECT))
    takes = shots(subject)
    for i, image in enumerate(takes[:6]):
        cv2.imwrite(str(lib / f"ours_{i}.jpg"), image)
    others = sorted(p for p in COCO_IMAGES.glob("*.jpg") if p.name != SUBJECT)[:40]
    for src in others:
        (lib / src.name).write_bytes(src.read_bytes())
    config = tmp_path / "c.toml"
    config.write_text(ONLY_CONCEPTS)
    code, _, err = cli("--config", config, "scan", lib)
    assert code == 0, err

    catalog = Catalog(state_dir / "catalog.db")
    try:
        # One int8 embedding per photo, 1280 wide; the export shows classes only.
        table = catalog.con.execute(
            "SELECT dim, element FROM vector_tables WHERE analyzer = 'concepts'"
        ).fetchone()
        assert tuple(table) == (1280, "int8")
        count = catalog.con.execute(
            "SELECT COUNT(*) FROM detections WHERE label = ?", (EMBEDDING,)
        ).fetchone()[0]
        assert count == 46
    finally:
        catalog.close()
    code, out, _ = cli("--config", config, "export")
    rows = [json.loads(line) for line in out.splitlines()]
    assert all(c["label"] != EMBEDDING for r in rows for c in r["concepts"])
    assert all(r["concepts"] for r in rows)  # the classes are all still there

    settings = Settings()
    served = serve(settings, state_dir)
    try:
        base = served.base
        files = get(base, "/api/v1/files", limit=100).body["files"]
        ids = {Path(f["path"]).name: f["id"] for f in files}
        examples = [ids[f"ours_{i}.jpg"] for i in range(3)]
        counter = [ids[others[0].name], ids[others[1].name]]
        # Bad input first: a clear 4xx, nothing taught.
        assert post(base, "/api/v1/teach", {"tag": "a|b", "examples": examples})[0] == 422
        assert post(base, "/api/v1/teach", {"tag": "ours", "examples": [999999]})[0] == 404
        assert post(base, "/api/v1/teach", {"tag": "ours", "examples": []})[0] == 422

        status, taught = post(
            base, "/api/v1/teach", {"tag": "our subject", "examples": examples, "counter": counter}
        )
        assert status == 200, taught
        assert taught["tag"] == "AI|Taught|our subject"
        tagged = {
            Path(f["path"]).name
            for f in get(base, "/api/v1/files", tag=taught["tag"], limit=100).body["files"]
        }
        # The shots nobody marked are found; the unrelated photos are not.
        unmarked = {f"ours_{i}.jpg" for i in range(3, 6)}
        assert unmarked <= tagged, tagged
        assert len(tagged - {f"ours_{i}.jpg" for i in range(6)}) <= 2, tagged
        assert get(base, "/api/v1/teach").body["taught"][0]["files"] == len(tagged)

        # "More like this" reads the same embeddings.
        similar = get(base, f"/api/v1/files/{ids['ours_3.jpg']}/similar", limit=3).body
        assert similar["signal"] == "concepts"
        assert {Path(s["path"]).name for s in similar["similar"]} <= {
            f"ours_{i}.jpg" for i in range(6)
        }

    finally:
        served.stop()

    # A new shot arrives: the next scan scores it, no model but the scan's own.
    cv2.imwrite(str(lib / "ours_new.jpg"), takes[6])
    code, _, err = cli("--config", config, "scan", lib)
    assert code == 0, err
    code, out, _ = cli("--config", config, "export")
    by_name = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert "AI|Taught|our subject" in [t["name"] for t in by_name["ours_new.jpg"]["tags"]]

    served = serve(settings, state_dir)
    try:
        base = served.base
        # "Not this one" on a file with the taught tag: it leaves that file for
        # good, and the tag is fitted again with it as a counter-example.
        wrong = ids["ours_5.jpg"]
        content = next(
            f
            for f in get(base, "/api/v1/review", low=0.0, high=1.0, limit=500).body["items"]
            if f["file_id"] == wrong and f["tag"] == taught["tag"]
        )["content_id"]
        verdict = {"content_id": content, "tag": taught["tag"], "verdict": "reject"}
        status, answer = post(base, "/api/v1/review", verdict)
        assert status == 200 and taught["tag"] not in answer["tags"], answer
        tags = get(base, f"/api/v1/files/{wrong}").body["tags"]
        assert taught["tag"] not in [t["name"] for t in tags]

        status, gone = post(base, "/api/v1/teach/our%20subject", None, method="DELETE")
        assert status == 200, gone
        assert get(base, "/api/v1/files", tag=taught["tag"]).body["files"] == []
        assert post(base, "/api/v1/teach/our%20subject", None, method="DELETE")[0] == 404
    finally:
        served.stop()
