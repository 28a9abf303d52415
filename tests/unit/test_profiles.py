"""Hardware profiles and the service's config keys: a profile fills in only
what the file leaves out, and every bad value names its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import REPO, write_config

from tagd.config import (
    PROFILES,
    ConfigError,
    Settings,
    load_settings,
    parse_schedule,
    parse_settings,
    profile_keys,
)


def value(settings: Settings, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(settings, section), name)


def test_balanced_is_the_defaults_and_every_profile_sets_the_same_keys() -> None:
    defaults = Settings()
    for section, values in PROFILES["balanced"].items():
        for key, v in values.items():
            assert getattr(getattr(defaults, section), key) == v, f"{section}.{key}"
    keys = profile_keys()
    for name, profile in PROFILES.items():
        assert sorted(f"{s}.{k}" for s, vs in profile.items() for k in vs) == keys, name
        settings = parse_settings({"profile": name})
        assert settings.profile == name
        for key in keys:
            section, k = key.split(".")
            assert value(settings, key) == profile[section][k], (name, key)


def test_low_power_sets_its_values() -> None:
    s = parse_settings({"profile": "low-power"})
    assert (s.runtime.threads, s.runtime.batch_size, s.decode.workers) == (1, 2, 1)
    assert s.runtime.backend == "cpu" and s.runtime.idle_unload == 60.0
    assert s.decode.video_interval == 5.0 and s.decode.video_max_frames == 60
    # keys no profile sets keep their defaults
    assert s.objects.min_score == Settings().objects.min_score


def test_a_key_in_the_file_wins_over_the_profile_even_at_its_default_value() -> None:
    s = parse_settings(
        {"profile": "low-power", "runtime": {"threads": 0, "batch_size": 4}, "decode": {}}
    )
    assert s.runtime.threads == 0  # written in the file = the default, still wins
    assert s.runtime.batch_size == 4
    assert s.runtime.backend == "cpu"  # not written: the profile's
    assert s.decode.workers == 1


def test_repo_config_switches_profile_by_its_one_line(tmp_path: Path) -> None:
    """config.toml leaves the profile's keys commented out, so changing `profile`
    in a copy of it really changes them."""
    text = (REPO / "config.toml").read_text()
    assert text.count('profile = "balanced"') == 1
    for key in profile_keys():
        assert f"\n# {key.split('.')[1]} = " in text, key
    copy = write_config(
        tmp_path / "c.toml", text.replace('profile = "balanced"', 'profile = "low-power"')
    )
    loaded = dataclasses.replace(load_settings(copy), source=None)
    assert loaded == parse_settings({"profile": "low-power"})


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('profile = "turbo"\n', ["profile", "'turbo'", "'low-power' | 'balanced' | 'gpu'"]),
        ('profile = "low-power"\nruntime = 3\n', ["runtime", "3 (int)", "table"]),
        ('[daemon]\nschedule = "sometimes"\n', ["daemon.schedule", "cron", "'30m'"]),
        ('[daemon]\nschedule = "0 25 * * *"\n', ["daemon.schedule", "invalid cron"]),
        ("[daemon]\nwatch = 1\n", ["daemon.watch", "expected bool"]),
        ("[daemon]\nwatch_debounce = -1\n", ["daemon.watch_debounce", "between 0.0 and 600"]),
        ("[daemon]\nnice = 20\n", ["daemon.nice", "between 0 and 19"]),
        ("[daemon]\nstop_timeout = 0\n", ["daemon.stop_timeout", "between 1.0 and 600"]),
        ('[daemon]\nlog_level = "loud"\n', ["daemon.log_level", "'debug'"]),
    ],
)
def test_bad_service_values_name_the_key(tmp_path: Path, text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write_config(tmp_path / "c.toml", text))
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_schedule_forms() -> None:
    assert parse_schedule("") is None
    assert parse_schedule("90s") == ("interval", 90.0)
    assert parse_schedule("30m") == ("interval", 1800.0)
    assert parse_schedule("6h") == ("interval", 21600.0)
    assert parse_schedule("1d") == ("interval", 86400.0)
    assert parse_schedule("0 3 * * *") == ("cron", "0 3 * * *")
    assert parse_schedule("*/15 8-20 * * mon-fri") == ("cron", "*/15 8-20 * * mon-fri")
