"""Hardware profiles: sets of values for the keys that decide how hard tagd works.

A key written in the config file always wins over its profile: profiles fill in
only the keys the file leaves out, so they are applied to the parsed TOML before
validation, where "absent" and "set to the default" can still be told apart.
"balanced" is the defaults.
"""

from __future__ import annotations

from typing import Any

from tagd.config.models import Settings

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "low-power": {
        # One core for the model, one for decoding and the rest of the machine.
        "runtime": {
            "backend": "cpu",
            "threads": 1,
            "lanes": 1,
            "batch_size": 2,
            "idle_unload": 60.0,
        },
        "decode": {"workers": 1, "reduced": True, "video_interval": 5.0, "video_max_frames": 60},
        "objects": {"enabled": True},
        "ocr": {"enabled": False},
    },
    "balanced": {
        "runtime": {
            "backend": "auto",
            "threads": 0,
            "lanes": 0,
            # Per lane: two lanes hold as many frames as one batch of 8 did.
            "batch_size": 4,
            "idle_unload": 300.0,
        },
        "decode": {"workers": 0, "reduced": True, "video_interval": 2.0, "video_max_frames": 300},
        "objects": {"enabled": True},
        "ocr": {"enabled": True},
    },
    "gpu": {
        # "auto" takes CUDA when onnxruntime has it; big batches keep a GPU fed.
        "runtime": {
            "backend": "auto",
            "threads": 0,
            "lanes": 0,
            "batch_size": 32,
            "idle_unload": 1800.0,
        },
        "decode": {"workers": 0, "reduced": True, "video_interval": 1.0, "video_max_frames": 600},
        "objects": {"enabled": True},
        "ocr": {"enabled": True},
    },
}


def profile_keys() -> list[str]:
    """Every key a profile sets, as dotted paths ("runtime.threads")."""
    return sorted(
        {
            f"{section}.{key}"
            for p in PROFILES.values()
            for section, keys in p.items()
            for key in keys
        }
    )


def with_profile(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its profile's values filled in where the file sets none."""
    name = data.get("profile", Settings.profile)
    if not isinstance(name, str) or name not in PROFILES:
        return data  # validation reports the bad value with what is allowed
    merged = dict(data)
    for section, values in PROFILES[name].items():
        table = merged.get(section, {})
        if not isinstance(table, dict):
            continue  # not a table: validation says so
        merged[section] = {**values, **table}
    return merged
