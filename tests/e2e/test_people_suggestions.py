"""New people suggestions ("is this Alice?") on real faces: faces of a named
person split off into an unnamed cluster are suggested as her; No keeps them
apart for good, Yes merges them back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED
from test_api import get, serve
from test_teach import post

from tagd.config import load_settings

FACES = SHARED / "eval" / "faces"
ONLY_FACES = "".join(
    f"[{s}]\nenabled = false\n" for s in ("xmp", "objects", "ocr", "concepts", "duplicates")
)


@pytest.mark.usefixtures("default_models")
def test_is_this_alice(tmp_path: Path, state_dir: Path, cli: Any) -> None:
    if not FACES.is_dir():
        pytest.skip(f"{FACES} is absent")
    people = json.loads((FACES / "identities.json").read_text())["identities"]
    lib = tmp_path / "library"
    lib.mkdir()
    for name in [*people["id00"], *people["id01"][:3]]:
        shutil.copyfile(FACES / "images" / name, lib / name)
    config = tmp_path / "c.toml"
    config.write_text(ONLY_FACES)
    code, _, err = cli("--config", config, "scan", lib)
    assert code == 0, err
    served = serve(load_settings(config), state_dir)
    try:
        base = served.base
        clusters = get(base, "/api/v1/people").body["people"]
        biggest = max(clusters, key=lambda p: p["faces"])
        assert biggest["faces"] >= 5, clusters
        alice = biggest["id"]
        assert post(base, f"/api/v1/people/{alice}/name", {"name": "Alice"})[0] == 200
        assert get(base, "/api/v1/people/suggestions").body["suggestions"] == []
        faces = [f["id"] for f in get(base, f"/api/v1/people/{alice}").body["face_list"]]

        def split(picked: list[int]) -> int:
            status, made = post(base, f"/api/v1/people/{alice}/split", {"faces": picked})
            assert status == 200, made
            return int(made["people"][0]["id"])

        # Two of her faces split off: an unnamed cluster that is her.
        first = split(faces[:2])
        found = get(base, "/api/v1/people/suggestions").body["suggestions"]
        assert [(s["cluster"], s["person"], s["name"]) for s in found] == [
            (first, alice, "Alice")
        ], found
        assert found[0]["distance"] < 0.6
        # No: never asked again, and the faces stay apart.
        assert post(base, f"/api/v1/people/{alice}/refuse", {"other": first})[0] == 200
        assert get(base, "/api/v1/people/suggestions").body["suggestions"] == []
        assert get(base, f"/api/v1/people/{first}").body["faces"] == 2
        # Yes: merged into her.
        second = split(faces[2:4])
        found = get(base, "/api/v1/people/suggestions").body["suggestions"]
        assert [s["cluster"] for s in found] == [second]
        status, merged = post(base, f"/api/v1/people/{alice}/merge", {"other": second})
        assert status == 200 and merged["faces"] == len(faces) - 2, merged
        # A named person cannot be refused wholesale: rename or merge instead.
        assert post(base, f"/api/v1/people/{first}/refuse", {"other": alice})[0] == 409
    finally:
        served.stop()
