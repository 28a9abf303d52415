"""The review queue below the thresholds: the tags a file would get if their
threshold were [tags.review] low are derived with its tags (candidates), listed
by GET /api/v1/review, and an accepted one joins the file's tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_api import get, serve
from test_teach import post

from tagd.catalog.catalog import Catalog
from tagd.config import load_settings

ONLY_OBJECTS = (
    "".join(
        f"[{s}]\nenabled = false\n"
        for s in ("xmp", "ocr", "faces", "duplicates", "concepts", "quality")
    )
    + "[tags.review]\nlow = 0.3\n"
)


def scanned(tmp_path: Path, coco_photos: Any, cli: Any, photos: int) -> Path:
    """`photos` COCO photos scanned with objects only; the config file."""
    lib = tmp_path / "library"
    coco_photos(photos, dest=lib)
    config = tmp_path / "c.toml"
    config.write_text("# my settings\n" + ONLY_OBJECTS)
    code, _, err = cli("--config", config, "scan", lib)
    assert code == 0, err
    return config


def expected(catalog: Catalog, low: float, threshold: float) -> set[tuple[int, str]]:
    """(content, tag) for each label whose best detection lies in [low, threshold)."""
    best: dict[tuple[int, str], float] = {}
    for cid, label, score in catalog.con.execute(
        "SELECT content_id, label, score FROM detections WHERE analyzer = 'objects'"
    ):
        best[(cid, label)] = max(score, best.get((cid, label), 0.0))
    return {
        (cid, f"AI|Objects|{label}") for (cid, label), s in best.items() if low <= s < threshold
    }


@pytest.mark.usefixtures("default_models")
def test_candidates_below_the_threshold(
    tmp_path: Path, state_dir: Path, coco_photos: Any, cli: Any
) -> None:
    config = scanned(tmp_path, coco_photos, cli, 16)
    catalog = Catalog(state_dir / "catalog.db")
    try:
        wanted = expected(catalog, 0.3, 0.5)
    finally:
        catalog.close()
    assert wanted, "no detection between 0.3 and 0.5 in these photos"
    served = serve(load_settings(config), state_dir)
    try:
        base = served.base
        items = get(base, "/api/v1/review", limit=500).body["items"]
        listed = {(i["content_id"], i["tag"]) for i in items if i["candidate"]}
        assert listed == wanted
        scores = [i["score"] for i in items]
        assert scores == sorted(scores) and all(0.3 <= s <= 0.75 for s in scores)
        # Accept one: it is on the file now (and in the export), out of the queue.
        cid, tag = sorted(wanted)[0]
        file_id = next(i["file_id"] for i in items if (i["content_id"], i["tag"]) == (cid, tag))
        verdict = {"content_id": cid, "tag": tag, "verdict": "accept"}
        status, answer = post(base, "/api/v1/review", verdict)
        assert status == 200 and tag in answer["tags"], answer
        assert tag in [t["name"] for t in get(base, f"/api/v1/files/{file_id}").body["tags"]]
        after = get(base, "/api/v1/review", limit=500).body["items"]
        assert (cid, tag) not in {(i["content_id"], i["tag"]) for i in after}
    finally:
        served.stop()


@pytest.mark.usefixtures("default_models")
def test_thresholds_learn_from_decisions(
    tmp_path: Path, state_dir: Path, coco_photos: Any, cli: Any
) -> None:
    config = scanned(tmp_path, coco_photos, cli, 24)
    served = serve(load_settings(config), state_dir)
    try:
        base = served.base
        items = get(base, "/api/v1/review", low=0.0, high=1.0, limit=500).body["items"]
        people = sorted(
            (i for i in items if i["tag"] == "AI|Objects|person"), key=lambda i: -i["score"]
        )
        assert len(people) >= 6, [i["tag"] for i in items]
        # The surest are right, the least sure wrong: the threshold should rise.
        for n, item in enumerate(people):
            verdict = "reject" if n >= len(people) - 2 else "accept"
            body = {"content_id": item["content_id"], "tag": item["tag"], "verdict": verdict}
            assert post(base, "/api/v1/review", body)[0] == 200
        learned = get(base, "/api/v1/review/thresholds").body["tags"]
        person = next(t for t in learned if t["tag"] == "AI|Objects|person")
        assert (person["group"], person["label"], person["threshold"]) == (
            "objects",
            "person",
            0.5,
        )
        assert person["decisions"] == len(people)
        assert person["accepted"] == len(people) - 2
        suggested = person["suggested"]
        assert suggested == people[-3]["score"], (suggested, [p["score"] for p in people])
        # Applying it writes the rule into the config, comments kept.
        status, answer = post(
            base, "/api/v1/review/thresholds", {"tag": person["tag"], "threshold": suggested}
        )
        assert status == 200, answer
        text = config.read_text()
        assert text.startswith("# my settings\n")
        rule = load_settings(config).tags.objects.labels["person"]
        assert rule.threshold == suggested
        after = get(base, "/api/v1/review/thresholds").body["tags"]
        person = next(t for t in after if t["tag"] == "AI|Objects|person")
        assert person["threshold"] == suggested and person["precision"] == 1.0
        # Unknown tags and a bad threshold: clear 4xx.
        assert post(base, "/api/v1/review/thresholds", {"tag": "AI|x", "threshold": 0.5})[0] == 404
        assert (
            post(base, "/api/v1/review/thresholds", {"tag": person["tag"], "threshold": 2})[0]
            == 422
        )
    finally:
        served.stop()
