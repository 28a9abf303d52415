"""Where tagd keeps its state (catalog, caches) and finds its models."""

from __future__ import annotations

import os
from pathlib import Path

from tagd.config import Settings

# The repository's models/ folder: manifest.toml is committed, model files are not.
REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def state_dir(settings: Settings) -> Path:
    """TAGD_STATE_DIR, then the config, then systemd's StateDirectory=, then XDG."""
    env = os.environ.get("TAGD_STATE_DIR")
    if env:
        return Path(env)
    if settings.daemon.state_dir:
        return Path(settings.daemon.state_dir)
    # systemd sets STATE_DIRECTORY when the unit has StateDirectory=tagd.
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tagd"


def models_dir(settings: Settings) -> Path:
    if settings.runtime.models_dir:
        return Path(settings.runtime.models_dir)
    return REPO_MODELS_DIR
