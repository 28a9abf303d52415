"""xmp:Rating: written only for an opt-in rating rule, never over a rating someone
else wrote; real sidecars, read back by exiftool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tagd.config import ConfigError, parse_settings
from tagd.policy.rules import rating_for
from tagd.sinks.xmp.sidecar import sidecar_path, sync_sidecar

EXIFTOOL = shutil.which("exiftool")
BLURRY = ["AI|Quality|blurry"]


def rating(sidecar: Path) -> str:
    """xmp:Rating as exiftool reads it ("" when there is none)."""
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed")
    done = subprocess.run(
        [EXIFTOOL, "-s3", "-XMP-xmp:Rating", str(sidecar)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_no_rule_no_rating_and_a_users_rating_is_left_alone(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"")
    sync_sidecar(photo, BLURRY)
    assert rating(sidecar_path(photo)) == ""
    # The user rates it 4 in their photo manager: tagd, with a rule, keeps out.
    set_by_user(sidecar_path(photo), 4)
    change = sync_sidecar(photo, BLURRY, rating=1)
    assert change.rating is None and rating(sidecar_path(photo)) == "4"


def test_tagd_sets_clears_and_gives_way(tmp_path: Path) -> None:
    photo = tmp_path / "b.jpg"
    photo.write_bytes(b"")
    side = sidecar_path(photo)
    assert sync_sidecar(photo, BLURRY, rating=1).rating == "1"
    assert rating(side) == "1"
    assert not sync_sidecar(photo, BLURRY, rating=1).changed  # idempotent
    # No longer blurry (or the rule is gone): tagd takes its own rating away.
    assert sync_sidecar(photo, ["AI|Objects|dog"]).rating == ""
    assert rating(side) == ""
    # Rated by tagd again, then changed by the user: from then on it is theirs.
    sync_sidecar(photo, BLURRY, rating=1)
    set_by_user(side, 5)
    sync_sidecar(photo, BLURRY, rating=1)
    sync_sidecar(photo, ["AI|Objects|dog"])
    assert rating(side) == "5"
    assert "tagd:Rating" not in side.read_text()  # no stale claim left behind


def set_by_user(sidecar: Path, stars: int) -> None:
    """What Lightroom or digiKam does: exiftool writes xmp:Rating in place."""
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed")
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", f"-XMP-xmp:Rating={stars}", str(sidecar)],
        check=True,
    )


def test_rating_rules_lowest_wins_and_only_opt_in() -> None:
    settings = parse_settings(
        {
            "tags": {
                "quality": {"labels": {"blurry": {"rating": 1}, "noisy": {"rating": 2}}},
                "objects": {"labels": {"dog": {"rating": 5}}},
            }
        }
    )
    tags = settings.tags
    assert rating_for(tags, ["AI|Quality|blurry", "AI|Quality|noisy", "AI|Objects|dog"]) == 1
    assert rating_for(tags, ["AI|Objects|dog"]) == 5
    assert rating_for(tags, ["AI|Objects|cat"]) is None
    assert rating_for(parse_settings({}).tags, ["AI|Quality|blurry"]) is None
    with pytest.raises(ConfigError, match=r"rating"):
        parse_settings({"tags": {"quality": {"labels": {"blurry": {"rating": 9}}}}})
