"""Counts as people read them, where the models folder is, and how the shipped
default set and what is installed make one manifest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tagd.config import RuntimeSettings, Settings
from tagd.paths import models_dir
from tagd.runtime.manifest import (
    DEFAULT_MANIFEST,
    ModelError,
    default_for,
    default_specs,
    installed_specs,
    load_manifest,
    write_manifest,
)
from tagd.words import count


def test_count_says_one_in_the_singular() -> None:
    assert count(1, "face") == "1 face"
    assert count(0, "face") == "0 faces"
    assert count(3, "file") == "3 files"
    assert count(2, "person") == "2 people"
    assert count(1, "new person") == "1 new person"
    assert count(4, "hashed file") == "4 hashed files"


def test_models_go_to_the_state_dir_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAGD_MODELS_DIR", raising=False)
    monkeypatch.setenv("TAGD_STATE_DIR", str(tmp_path / "state"))
    assert models_dir(Settings()) == tmp_path / "state" / "models"
    monkeypatch.setenv("TAGD_MODELS_DIR", str(tmp_path / "env"))
    assert models_dir(Settings()) == tmp_path / "env"
    chosen = Settings(runtime=RuntimeSettings(models_dir=str(tmp_path / "config")))
    assert models_dir(chosen) == tmp_path / "config"


def test_the_default_set_ships_inside_the_package() -> None:
    assert DEFAULT_MANIFEST.is_file()
    assert DEFAULT_MANIFEST.parent.name == "runtime"  # inside the tagd package
    specs = default_specs()
    for task in ("objects", "ocr-det", "ocr-rec", "face-detection", "face-embedding", "classes"):
        assert default_for(specs, task) is not None, task


def test_an_empty_models_folder_lists_the_default_set(tmp_path: Path) -> None:
    assert installed_specs(tmp_path) == {}
    assert load_manifest(tmp_path) == default_specs()


def test_installed_entries_replace_the_shipped_ones(tmp_path: Path) -> None:
    shipped = default_specs()
    mine = replace(shipped["yolox-nano"], sha256="0" * 64, default=True)
    other = replace(shipped["yolox-nano"], name="my-detector", file="mine.onnx", default=True)
    write_manifest(tmp_path, [mine])
    specs = load_manifest(tmp_path)
    assert specs["yolox-nano"].sha256 == "0" * 64
    assert set(specs) == set(shipped)
    # An installed default for a task replaces the shipped default of that task.
    write_manifest(tmp_path, [other])
    specs = load_manifest(tmp_path)
    assert [s.name for s in specs.values() if s.task == "objects" and s.default] == ["my-detector"]
    assert set(installed_specs(tmp_path)) == {"yolox-nano", "my-detector"}
    assert DEFAULT_MANIFEST.read_text(encoding="utf-8").count("my-detector") == 0


def test_a_broken_installed_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.toml").write_text("[models\n", encoding="utf-8")
    with pytest.raises(ModelError, match="invalid TOML"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ModelError, match="not UTF-8"):
        load_manifest(tmp_path)


def test_within_compares_whole_folders() -> None:
    from tagd.paths import within

    assert within("/srv/photos/a.jpg", "/srv/photos") and within("/srv/photos", "/srv/photos/")
    assert not within("/srv/photosother/a.jpg", "/srv/photos")
    assert not within("/srv/photos/../etc/passwd", "/srv/photos")  # normalised first
    assert within("/srv/photos/x/../a.jpg", "/srv/photos")
