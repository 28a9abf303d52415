"""Concept tags: the shipped taxonomy, the classifier through `tagd scan`, re-deriving.

Real photos from the shared ImageNet dev set (one per class), the installed
EfficientNet-Lite0 and a real catalog; nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import MISSING_MODELS, MODELS_DIR, SHARED

from tagd.config import ConceptEntry, ConceptTagSettings, ConfigError, Settings, parse_settings
from tagd.policy import concepts
from tagd.policy.concepts import TaxonomyError, class_keys, imagenet_classes, resolve_taxonomy
from tagd.runtime.manifest import load_manifest

IMAGENET = SHARED / "eval" / "classes-imagenet-dev"
DOG = "AI|Concepts|Animals|dog"
# Dog photos of the dev set (classes 151-268), and non-dogs that must not be tagged dog.
DOGS = ["n02110185_Siberian_husky.JPEG", "n02100236_German_short-haired_pointer.JPEG"]
NOT_DOGS = ["n02120505_grey_fox.JPEG", "n01440764_tench.JPEG"]


def test_taxonomy_loads_and_covers_its_classes():
    taxonomy = resolve_taxonomy({})
    labels = imagenet_classes()
    keys = class_keys(labels)
    assert len(labels) == 1000 and len(set(keys)) == 1000  # the two repeated names split
    assert "crane (134)" in keys and "crane (517)" in keys
    assert len(taxonomy) >= 60
    dog = taxonomy["dog"].keys
    assert dog == {keys[i] for i in range(151, 269)}  # every breed, nothing else
    assert {keys[i] for i in range(281, 286)} == taxonomy["cat"].keys
    assert dog | taxonomy["cat"].keys <= taxonomy["pet"].keys  # includes
    assert {"seashore", "sandbar"} == taxonomy["beach"].keys
    assert {"pizza"} == taxonomy["pizza"].keys and "espresso" in taxonomy["coffee"].keys
    assert {"web site", "monitor"} <= taxonomy["screen"].keys
    assert {"alp", "volcano"} <= taxonomy["mountains"].keys
    for group in ("Animals", "Places", "Food", "Vehicles", "Documents", "Sports", "Music"):
        assert any(c.parent == group for c in taxonomy.values()), group
    # Aliases never shadow a tag name.
    alias = concepts.aliases({})
    assert alias["seaside"] == "beach" and not set(alias) & set(taxonomy)


def test_taxonomy_matches_the_installed_classifier():
    specs = load_manifest(MODELS_DIR)
    classifiers = [s for s in specs.values() if s.task == "classes"]
    if not classifiers:
        pytest.skip(MISSING_MODELS.format(what="a concepts classifier"))
    for spec in classifiers:
        assert spec.labels == imagenet_classes(), spec.name


def test_user_taxonomy_extends_and_bad_entries_name_the_key():
    added = resolve_taxonomy(
        {
            "sailing": ConceptEntry(classes=["484", "780-780", "yawl"], parent="Sports"),
            "wheels": ConceptEntry(includes=["bicycle", "cars"]),  # "cars": an alias of car
        }
    )
    assert added["sailing"].keys == {"catamaran", "schooner", "yawl"}
    assert {"mountain bike", "convertible"} <= added["wheels"].keys
    with pytest.raises(TaxonomyError, match="x: 'nope'"):
        resolve_taxonomy({"x": ConceptEntry(classes=["nope"])})
    with pytest.raises(TaxonomyError, match="outside"):
        resolve_taxonomy({"x": ConceptEntry(classes=["990-1000"])})
    with pytest.raises(TaxonomyError, match="includes itself"):
        resolve_taxonomy({"x": ConceptEntry(includes=["y"]), "y": ConceptEntry(includes=["x"])})
    with pytest.raises(ConfigError, match=r"tags\.concepts\.taxonomy\.boat: 'Boat'"):
        parse_settings({"tags": {"concepts": {"taxonomy": {"boat": {"classes": ["Boat"]}}}}})
    with pytest.raises(ConfigError, match=r"tags\.concepts\.labels\.doggo"):
        parse_settings({"tags": {"concepts": {"labels": {"doggo": {"threshold": 0.2}}}}})
    with pytest.raises(ConfigError, match=r"tags\.concepts\.threshold"):
        parse_settings({"tags": {"concepts": {"threshold": 1.5}}})
    with pytest.raises(ConfigError, match=r"concepts\.top_k"):
        parse_settings({"concepts": {"top_k": 0}})


def test_scores_add_up_and_rules_apply():
    from tagd.records import Detection

    frame = [Detection("beagle", 0.2, None), Detection("basset", 0.2, None)]
    frame += [Detection("tabby", 0.05, None)]
    settings = ConceptTagSettings()
    scores = concepts.frame_scores(settings, frame)
    assert scores["dog"] == pytest.approx(0.4) and scores["pet"] == pytest.approx(0.45)
    assert set(concepts.passing(settings, scores)) == {"dog", "pet"}  # "animal" needs 0.5
    from tagd.config import TagRule

    strict = ConceptTagSettings(labels={"puppy": TagRule(threshold=0.45, name="Hund")})
    assert "dog" not in concepts.passing(strict, scores)  # rule found through the alias
    loose = ConceptTagSettings(labels={"dogs": TagRule(threshold=0.3, name="Hund")})
    tags = concepts.concept_tags("AI", loose, frame)
    assert "AI|Concepts|Animals|Hund" in {t.name for t in tags}
    # Videos: the flat list with `t`; each frame is scored on its own.
    video = [Detection("beagle", 0.3, None, t=0.0), Detection("basset", 0.3, None, t=2.0)]
    assert concepts.concept_tags("AI", settings, video) == []


# -- end to end ----------------------------------------------------------------


@pytest.fixture
def imagenet_photos(tmp_path: Path) -> Path:
    if not IMAGENET.is_dir():
        pytest.skip(f"ImageNet dev set {IMAGENET} is absent")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in DOGS + NOT_DOGS:
        shutil.copyfile(IMAGENET / "images" / name, folder / name)
    return folder


def _config(path: Path, text: str = "") -> Path:
    # Only the concepts analyzer runs: the test stays fast and about this analyzer.
    base = (
        "[objects]\nenabled = false\n[ocr]\nenabled = false\n[faces]\nenabled = false\n"
        "[xmp]\nenabled = false\n"
    )
    path.write_text(base + text, encoding="utf-8")
    return path


def _tags(state: Path) -> dict[str, set[str]]:
    con = sqlite3.connect(state / "catalog.db")
    try:
        rows = con.execute(
            "SELECT f.path, t.name FROM tags t JOIN files f ON f.content_id = t.content_id"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, set[str]] = {}
    for path, name in rows:
        out.setdefault(Path(path).name, set()).add(name)
    return out


@pytest.mark.usefixtures("default_models")
def test_scan_tags_dogs_and_rederives_without_the_model(
    tmp_path: Path, state_dir: Path, imagenet_photos: Path, cli
):
    config = _config(tmp_path / "c.toml")
    code, out, err = cli("--config", config, "scan", imagenet_photos)
    assert code == 0, out + err
    assert "analysed 4 files" in out
    tags = _tags(state_dir)
    for name in DOGS:
        assert DOG in tags[name] and "AI|Concepts|Animals|pet" in tags[name], tags[name]
    for name in NOT_DOGS:
        assert DOG not in tags.get(name, set())
    assert "AI|Concepts|Animals|fish" in tags["n01440764_tench.JPEG"]

    code, out, err = cli("--config", config, "export")
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    husky = rows[DOGS[0]]
    assert husky["concepts"] and all(set(c) == {"label", "score"} for c in husky["concepts"])
    assert DOG in {t["name"] for t in husky["tags"]}
    dog_score = next(t["score"] for t in husky["tags"] if t["name"] == DOG)
    breeds = {imagenet_classes()[i] for i in range(151, 269)}
    summed = sum(c["score"] for c in husky["concepts"] if c["label"] in breeds)
    assert dog_score == pytest.approx(summed, abs=1e-3)  # the sum of the stored breeds

    # A stricter threshold (written against an alias) and a new taxonomy tag: no re-run.
    strict = _config(
        tmp_path / "strict.toml",
        "[tags.concepts.labels.puppy]\nthreshold = 0.9999\n"
        '[tags.concepts.taxonomy.northern]\nparent = "Mine"\nclasses = ["248-250", "258-261"]\n',
    )
    code, out, err = cli("--config", strict, "scan", imagenet_photos)
    assert code == 0, out + err
    assert "analysed 0 files" in out
    tags = _tags(state_dir)
    assert not any(DOG in t for t in tags.values())
    assert "AI|Concepts|Mine|northern" in tags[DOGS[0]]  # husky: seen as keeshond (261)

    # Back to the defaults: the dog tags come back, still without the model.
    code, out, err = cli("--config", config, "scan", imagenet_photos)
    assert "analysed 0 files" in out
    assert DOG in _tags(state_dir)[DOGS[0]]


def test_concepts_analyzer_is_built_by_default():
    from tagd.pipeline import build_analyzers

    names = [a.name for a in build_analyzers(Settings(), MODELS_DIR)]
    assert "concepts" in names and "nsfw" not in names
