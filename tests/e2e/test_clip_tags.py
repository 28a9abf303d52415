"""CLIP analyzer and zero-shot tags, end to end on a tiny random CLIP.

No CLIP weights exist offline, so the model is a tiny randomly initialised
transformers CLIPModel exported by the real export code (as in
test_clip_dinov2.py). The assertions are about mechanics, not semantics:
the embedding is stored, tags are scored from it against prompt sets, and
changing prompts or thresholds re-derives tags without running the image tower.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR, SHARED

from tagd.config import ClipTagSettings, ConfigError, PromptSet, parse_settings

PHOTOS = SHARED / "eval" / "objects-coco128-train"


@pytest.fixture(scope="module")
def clip_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="export needs torch (pip install 'tagd[export]')")
    pytest.importorskip("transformers", reason="export needs transformers")
    pytest.importorskip("onnx", reason="export needs onnx")
    from test_clip_dinov2 import save_tiny_clip

    from tagd.cli.main import main

    root = tmp_path_factory.mktemp("clip-tags")
    models, ckpt = root / "models", root / "tiny-clip"
    save_tiny_clip(ckpt)
    config = root / "config.toml"
    config.write_text(f'[runtime]\nmodels_dir = "{models}"\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TAGD_STATE_DIR", str(root / "state"))
        args = ["--config", str(config), "models", "export", "clip", "--from", str(ckpt)]
        assert main([*args, "--quantize", "none", "--format", "onnx"]) == 0
    return models


def _config(path: Path, models: Path, text: str = "") -> Path:
    path.write_text(
        f'[runtime]\nmodels_dir = "{models}"\n'
        "[objects]\nenabled = false\n[ocr]\nenabled = false\n[faces]\nenabled = false\n"
        "[concepts]\nenabled = false\n[xmp]\nenabled = false\n" + text,
        encoding="utf-8",
    )
    return path


def _photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    images = sorted((PHOTOS / "images").glob("*.jpg"))[:3] if PHOTOS.is_dir() else []
    if images:
        for p in images:
            shutil.copyfile(p, folder / p.name)
    else:
        from conftest import write_jpeg

        for i in range(3):
            write_jpeg(folder / f"noise{i}.jpg", 320, 240, seed=i)
    return folder


def _db(state: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(state / "catalog.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_prompt_config_is_checked():
    with pytest.raises(ConfigError, match=r"tags\.clip\.prompts\.x\.prompts"):
        parse_settings({"tags": {"clip": {"prompts": {"x": {"prompts": []}}}}})
    with pytest.raises(ConfigError, match=r"tags\.clip\.labels\.nope"):
        parse_settings({"tags": {"clip": {"labels": {"nope": {"threshold": 0.2}}}}})


def test_no_clip_model_no_analyzer():
    from tagd.pipeline import build_analyzers
    from tagd.runtime.manifest import default_for, load_manifest

    repo_models = MODELS_DIR
    if default_for(load_manifest(repo_models), "clip") is not None:
        pytest.skip("a CLIP model is installed here")
    from tagd.config import Settings

    assert "clip" not in [a.name for a in build_analyzers(Settings(), repo_models)]


def test_embeddings_stored_and_prompts_rederive_without_the_image_tower(
    tmp_path: Path, state_dir: Path, clip_models: Path, cli
):
    from tagd.catalog.catalog import Catalog
    from tagd.policy import clip_tags
    from tagd.runtime.clip import ClipModel
    from tagd.runtime.manifest import load_manifest

    folder = _photos(tmp_path)
    # Threshold 0: every prompt set passes, so the tags show the scoring ran.
    loose = _config(tmp_path / "loose.toml", clip_models, "[tags.clip]\nthreshold = 0.0\n")
    code, out, err = cli("--config", loose, "scan", folder)
    assert code == 0 and "analysed 3 files" in out, out + err

    spec = load_manifest(clip_models)["clip-tiny-clip"]
    with Catalog(state_dir / "catalog.db") as catalog:
        cids = sorted({c for (c,) in _db(state_dir, "SELECT content_id FROM files")})
        found = catalog.detections(cids[0], "clip", with_vectors=True)
        assert [d.label for d in found] == [spec.name] and found[0].box is None
        vector = found[0].vector
        assert vector is not None and vector.shape == (24,)
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-4
        assert catalog.nearest("clip", vector, k=1)[0][0] == found[0].id  # searchable
    shipped = clip_tags.prompt_sets(ClipTagSettings())
    first = {n for (n,) in _db(state_dir, f"SELECT name FROM tags WHERE content_id = {cids[0]}")}
    assert len(first) == len(shipped) and "AI|Concepts|Places|beach" in first

    # The scores are softmax(logit_scale * image . mean(prompt embeddings)) over the sets.
    model = ClipModel(spec, clip_models, backend="cpu", threads=2)
    sets = list(shipped.values())
    background = list(clip_tags.shipped_prompts()[0])
    vectors = [model.encode_texts(s.prompts).mean(0) for s in sets]
    vectors.append(model.encode_texts(background).mean(0))
    tags = np.stack([v / np.linalg.norm(v) for v in vectors])
    expected = model.probabilities(vector[None], tags)[0]
    beach = list(shipped).index("beach")
    (score,) = _db(
        state_dir,
        f"SELECT score FROM tags WHERE content_id = {cids[0]} AND name LIKE '%|beach'",
    )[0]
    assert score == pytest.approx(float(expected[beach]), abs=2e-4)

    # New prompts and thresholds: re-derived from the stored embeddings, no photo read.
    analyses = _db(state_dir, "SELECT * FROM analyses ORDER BY content_id, analyzer")
    tuned = _config(
        tmp_path / "tuned.toml",
        clip_models,
        "[tags.clip]\nthreshold = 1.0\n"
        '[tags.clip.prompts.hiking]\nparent = "Sports"\nthreshold = 0.0\n'
        'prompts = ["a photo of people hiking", "a hiking trail"]\n',
    )
    encoded = clip_tags.ENCODERS[spec.name].prompts_encoded
    code, out, err = cli("--config", tuned, "scan", folder)
    assert code == 0 and "analysed 0 files" in out, out + err
    assert _db(state_dir, "SELECT * FROM analyses ORDER BY content_id, analyzer") == analyses
    names = {n for (n,) in _db(state_dir, "SELECT DISTINCT name FROM tags")}
    assert names == {"AI|Concepts|Sports|hiking"}  # threshold 1.0 drops every other set
    encoder = clip_tags.ENCODERS[spec.name]
    assert encoder.prompts_encoded == encoded + 2  # only the two new prompts ran

    # A switched-off tag and a per-tag threshold.
    off = _config(
        tmp_path / "off.toml",
        clip_models,
        "[tags.clip]\nthreshold = 0.0\n[tags.clip.labels.beach]\nenabled = false\n"
        "[tags.clip.labels.city]\nthreshold = 1.0\n",
    )
    code, out, err = cli("--config", off, "scan", folder)
    assert "analysed 0 files" in out
    names = {n for (n,) in _db(state_dir, "SELECT DISTINCT name FROM tags")}
    assert not any(n.endswith(("|beach", "|city")) for n in names)
    assert len(names) == len(shipped) - 2

    code, out, err = cli("--config", off, "export")
    assert all("tags" in json.loads(line) for line in out.splitlines())


def test_prompt_sets_replace_and_extend():
    from tagd.policy import clip_tags

    settings = ClipTagSettings(prompts={"beach": PromptSet(prompts=["sand"], parent="Mine")})
    sets = clip_tags.prompt_sets(settings)
    assert sets["beach"].prompts == ["sand"] and "mountains" in sets


def test_video_tags_carry_time_ranges(tmp_path: Path, state_dir: Path, clip_models: Path, cli):
    """Every sampled frame of a video is scored: with threshold 0 each prompt set
    holds in every frame, so each tag spans the whole clip."""
    from conftest import VIDEOS

    if not (VIDEOS / "chaplin.mp4").is_file():
        pytest.skip(f"chaplin.mp4 missing from {VIDEOS}")
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copyfile(VIDEOS / "chaplin.mp4", folder / "chaplin.mp4")
    loose = _config(tmp_path / "loose.toml", clip_models, "[tags.clip]\nthreshold = 0.0\n")
    code, out, err = cli("--config", loose, "scan", folder)
    assert code == 0 and "analysed 1 file (" in out, out + err
    rows = _db(state_dir, "SELECT name, segments FROM tags")
    assert len(rows) > 5
    (duration,) = _db(state_dir, "SELECT duration FROM contents")[0]
    for name, segments in rows:
        [[start, end, _score]] = json.loads(segments)
        assert (start, end) == (0.0, pytest.approx(duration, abs=0.01)), name


def test_taught_tags_read_clip_embeddings_once_they_cover_the_library(
    tmp_path: Path, state_dir: Path, clip_models: Path, cli
):
    from tagd.catalog.catalog import Catalog
    from tagd.config import load_settings
    from tagd.teach import Source, embedding_source, full_tag, teach

    folder = _photos(tmp_path)
    config = _config(tmp_path / "c.toml", clip_models)
    code, out, err = cli("--config", config, "scan", folder)
    assert code == 0, out + err
    settings = load_settings(config)
    with Catalog(state_dir / "catalog.db") as catalog:
        # Only CLIP ran (the concepts analyzer is off here): its vectors are used.
        assert embedding_source(catalog) == Source("clip", None)
        cids = sorted({c for (c,) in _db(state_dir, "SELECT content_id FROM files")})
        taught = teach(catalog, settings, "mine", [cids[0]])
        tagged = {c for c, in catalog.con.execute(
            "SELECT content_id FROM tags WHERE name = ?", (full_tag(settings, "mine"),)
        )}  # fmt: skip
        assert taught.tag == "AI|Taught|mine" and cids[0] in tagged
