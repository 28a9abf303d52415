"""From a file (or a parsed table) to Settings, or a ConfigError listing every problem.

Three passes, each only when the one before found nothing, because a later pass
needs what the earlier one guarantees: the types and ranges of each key
(pydantic), checks across keys (tagd.config.checks), then the tag rules, which
only the tag policy can judge (tagd.policy.validate: label names a model knows,
taxonomy tags, prompt sets).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tagd.config import checks, messages
from tagd.config.errors import ConfigError
from tagd.config.files import find_config_file, read_config
from tagd.config.models import Settings
from tagd.config.profiles import with_profile

_SETTINGS = TypeAdapter(Settings)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate a config file (or the defaults when there is none)."""
    file = find_config_file(path)
    if file is None:
        return Settings()
    try:
        data = tomllib.loads(read_config(file).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    settings = parse_settings(data, origin=str(file))
    return dataclasses.replace(settings, source=file.resolve())


def parse_settings(data: dict[str, Any], origin: str = "config") -> Settings:
    """Settings from a parsed TOML table; `origin` names it in the messages."""
    settings = _typed(data, origin)
    found = checks.problems(settings)
    if not found:
        # Imported here: the policy's own modules import these settings.
        from tagd.policy.validate import rule_problems

        found = rule_problems(settings)
    if found:
        raise ConfigError.listing(origin, found)
    return settings


def _typed(data: dict[str, Any], origin: str) -> Settings:
    """Each key's type and range checked, the profile's values filled in."""
    # Fields that are not keys of the file (where the settings came from) cannot
    # be written in it: pydantic would take them as keys.
    found = [messages.unknown_key((key,)) for key in data if key in messages.NOT_KEYS]
    keys = {key: value for key, value in data.items() if key not in messages.NOT_KEYS}
    try:
        settings = _SETTINGS.validate_python(with_profile(keys))
    except ValidationError as exc:
        found += messages.problems(exc)
    if found:
        raise ConfigError.listing(origin, found)
    return settings
