"""What every command needs: settings, the state dir, the catalog, the models."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tagd.catalog.catalog import Catalog
from tagd.config import Settings, load_settings
from tagd.paths import models_dir, state_dir

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line or config problem: exit code 2 with the message."""


@dataclass
class Context:
    config_path: str | None

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def state_dir(self) -> Path:
        return state_dir(self.settings)

    @cached_property
    def models_dir(self) -> Path:
        return models_dir(self.settings)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.state_dir / "catalog.db")

    def setup_logging(self, timestamps: bool = False) -> None:
        # journald gets "<priority>" prefixes and adds its own timestamps.
        from tagd.service.logs import configure

        configure(self.settings.daemon.log_level, timestamps=timestamps)

    def analyzer_shas(self) -> dict[str, str]:
        from tagd.pipeline import analyzer_shas

        return analyzer_shas(self.settings, self.models_dir)
