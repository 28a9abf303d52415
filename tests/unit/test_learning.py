"""Thresholds that learn: the suggestion from decisions, and writing it into a
config file people edit (comments kept, the file replaced only when it loads)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tagd.config import load_settings
from tagd.policy.learning import ApplyError, apply_threshold, suggest

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"


def test_the_lowest_threshold_that_keeps_the_target_precision() -> None:
    decided = [(0.9, True), (0.8, True), (0.7, True), (0.65, True), (0.6, True), (0.55, False)]
    assert suggest(decided, 0.95, 5) == 0.6  # 0.55 would let a wrong one in
    assert suggest(decided, 0.8, 5) == 0.55  # 5 of 6 right is enough for 0.8
    assert suggest(decided, 0.95, 6) is None  # never 6 decisions at 95 %
    # Going lower may become right again: the lowest threshold that reaches it.
    more = [*decided, *[(0.5 - i / 100, True) for i in range(20)]]
    assert suggest(more, 0.95, 5) == min(s for s, _ in more)
    # Ties: a threshold cannot split files of one score.
    assert suggest([(0.7, True)] * 5 + [(0.7, False)], 0.95, 5) is None
    assert suggest([], 0.95, 5) is None


def test_a_threshold_is_written_into_the_config_keeping_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    shutil.copyfile(REPO_CONFIG, config)
    before = config.read_text()
    settings = apply_threshold(config, "objects", "person", 0.62)
    assert settings.tags.objects.labels["person"].threshold == 0.62
    assert settings.source == config.resolve()
    after = config.read_text()
    # Every comment line is still there; only the rule was added.
    assert [line for line in before.splitlines() if line.startswith("#")] == [
        line for line in after.splitlines() if line.startswith("#")
    ]
    assert load_settings(config).tags.objects.labels["person"].threshold == 0.62
    # Again, and another key of an existing rule stays.
    config.write_text(
        after.replace("person = {threshold = 0.62}", 'person = {threshold = 0.62, name = "human"}')
    )
    settings = apply_threshold(config, "objects", "person", 0.7)
    rule = settings.tags.objects.labels["person"]
    assert (rule.threshold, rule.name) == (0.7, "human")
    # A group with no section yet gets one.
    minimal = tmp_path / "minimal.toml"
    minimal.write_text("# mine\n[library]\nroots = []\n")
    settings = apply_threshold(minimal, "taught", "our boat", 0.4)
    assert settings.tags.taught.labels["our boat"].threshold == 0.4
    assert minimal.read_text().startswith("# mine\n")


def test_a_bad_threshold_or_an_unwritable_folder_leaves_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[tags.objects]\nthreshold = 0.5\n")
    with pytest.raises(ApplyError, match="between 0 and 1"):
        apply_threshold(config, "objects", "dog", 1.5)
    if os.geteuid() != 0:  # root writes anywhere
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(ApplyError, match="cannot write"):
                apply_threshold(config, "objects", "dog", 0.6)
        finally:
            tmp_path.chmod(0o700)
    assert config.read_text() == "[tags.objects]\nthreshold = 0.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # no stray file
