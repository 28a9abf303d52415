"""Typed settings loaded from one TOML file.

Loading is strict: an unknown key, a wrong type or a value out of range is a
:class:`ConfigError` naming the key path, the value and what is allowed, so a
typo never silently falls back to a default.

- models: the settings, one pydantic dataclass per section
- fields: strict field types and ranges
- profiles: hardware profiles filling the keys a file leaves out
- files, load: finding and reading the file; validation in three passes
- messages, checks: how each problem is worded; checks across keys
- schedule: the two forms of a schedule key
"""

from tagd.config.errors import ConfigError
from tagd.config.files import MAX_CONFIG_BYTES, find_config_file
from tagd.config.load import load_settings, parse_settings
from tagd.config.models import (
    ApiKey,
    ApiRole,
    ApiSettings,
    Backend,
    ClipSettings,
    ClipTagSettings,
    ConceptEntry,
    ConceptsSettings,
    ConceptTagSettings,
    DaemonSettings,
    DecodeSettings,
    Dinov2Settings,
    DuplicatesSettings,
    EmbedFormat,
    FacesSettings,
    LibrarySettings,
    LogLevel,
    NsfwSettings,
    NsfwTagSettings,
    ObjectsSettings,
    OcrSettings,
    OrganizeMatch,
    OrganizeRule,
    OrganizeSettings,
    PathMapping,
    PeopleTagSettings,
    Profile,
    PromptSet,
    QualitySettings,
    QualityTagSettings,
    ReviewSettings,
    RuntimeSettings,
    Settings,
    SidecarNaming,
    StashSettings,
    TagGroupSettings,
    TagRule,
    TagSettings,
    TaughtTagSettings,
    TextTagSettings,
    VideoTagSettings,
    VlmEndpoint,
    VlmSettings,
    VlmTagSettings,
    XmpSettings,
)
from tagd.config.profiles import PROFILES, profile_keys
from tagd.config.schedule import parse_schedule

__all__ = [
    "MAX_CONFIG_BYTES",
    "PROFILES",
    "ApiKey",
    "ApiRole",
    "ApiSettings",
    "Backend",
    "ClipSettings",
    "ClipTagSettings",
    "ConceptEntry",
    "ConceptTagSettings",
    "ConceptsSettings",
    "ConfigError",
    "DaemonSettings",
    "DecodeSettings",
    "Dinov2Settings",
    "DuplicatesSettings",
    "EmbedFormat",
    "FacesSettings",
    "LibrarySettings",
    "LogLevel",
    "NsfwSettings",
    "NsfwTagSettings",
    "ObjectsSettings",
    "OcrSettings",
    "OrganizeMatch",
    "OrganizeRule",
    "OrganizeSettings",
    "PathMapping",
    "PeopleTagSettings",
    "Profile",
    "PromptSet",
    "QualitySettings",
    "QualityTagSettings",
    "ReviewSettings",
    "RuntimeSettings",
    "Settings",
    "SidecarNaming",
    "StashSettings",
    "TagGroupSettings",
    "TagRule",
    "TagSettings",
    "TaughtTagSettings",
    "TextTagSettings",
    "VideoTagSettings",
    "VlmEndpoint",
    "VlmSettings",
    "VlmTagSettings",
    "XmpSettings",
    "find_config_file",
    "load_settings",
    "parse_schedule",
    "parse_settings",
    "profile_keys",
]
