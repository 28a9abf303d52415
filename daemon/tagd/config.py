"""Typed settings loaded from one TOML file.

Every section is a frozen dataclass; the defaults here are the documented
defaults of the repository's ``config.toml`` (a test keeps the two equal).
Loading is strict: an unknown key, a wrong type or a value out of range is a
:class:`ConfigError` naming the key path, the value and what is allowed, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Backend = Literal["auto", "cpu", "openvino", "cuda"]
SidecarNaming = Literal["ext", "stem"]
# Formats tagd may write XMP into (see tagd.sinks.embed); names as media.sniff gives them.
EmbedFormat = Literal["jpeg", "tiff", "png", "webp"]
LogLevel = Literal["debug", "info", "warning", "error"]
Profile = Literal["low-power", "balanced", "gpu"]


class ConfigError(ValueError):
    """A configuration file that cannot be used as it is."""


# A config file is a few KB; anything far larger is not one (a log, an image).
MAX_CONFIG_BYTES = 1 << 20


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"min": lo, "max": hi}


@dataclass(frozen=True)
class LibrarySettings:
    roots: list[str] = field(default_factory=list)
    exclude: list[str] = field(
        default_factory=lambda: ["**/@eaDir/**", "**/.thumbnails/**", "**/#recycle/**"]
    )
    include_hidden: bool = False
    follow_symlinks: bool = True
    image_extensions: list[str] = field(
        default_factory=lambda: [
            "jpg",
            "jpeg",
            "png",
            "webp",
            "tif",
            "tiff",
            "heic",
            "heif",
            "gif",
            "bmp",
        ]
    )
    video_extensions: list[str] = field(
        default_factory=lambda: ["mp4", "mov", "m4v", "mkv", "webm", "avi"]
    )
    # A file changed this recently may still be being copied: its analysis waits
    # until it is this many seconds old and unchanged (0 = do not wait).
    settle_seconds: float = field(default=2.0, metadata=_range(0.0, 60.0))


@dataclass(frozen=True)
class DecodeSettings:
    reduced: bool = True
    max_pixels: int = field(default=200_000_000, metadata=_range(1))
    workers: int = field(default=0, metadata=_range(0, 64))
    video_interval: float = field(default=2.0, metadata=_range(0.1, 3600))
    video_max_frames: int = field(default=300, metadata=_range(1, 100_000))


@dataclass(frozen=True)
class RuntimeSettings:
    backend: Backend = "auto"
    threads: int = field(default=0, metadata=_range(0, 256))
    batch_size: int = field(default=8, metadata=_range(1, 256))
    idle_unload: float = field(default=300.0, metadata=_range(0))
    models_dir: str = ""


@dataclass(frozen=True)
class ObjectsSettings:
    enabled: bool = True
    model: str = "yolox-nano"
    min_score: float = field(default=0.05, metadata=_range(0.0, 1.0))
    nms_iou: float = field(default=0.45, metadata=_range(0.0, 1.0))
    max_detections: int = field(default=100, metadata=_range(1, 10_000))


@dataclass(frozen=True)
class OcrSettings:
    enabled: bool = True
    det_model: str = "auto"
    cls_model: str = "auto"
    rec_model: str = "auto"
    angle: bool = True
    max_side: int = field(default=960, metadata=_range(64, 4096))
    det_threshold: float = field(default=0.3, metadata=_range(0.0, 1.0))
    box_threshold: float = field(default=0.5, metadata=_range(0.0, 1.0))
    unclip_ratio: float = field(default=1.6, metadata=_range(1.0, 4.0))
    min_text_size: int = field(default=3, metadata=_range(0, 1000))
    angle_threshold: float = field(default=0.9, metadata=_range(0.0, 1.0))
    min_score: float = field(default=0.5, metadata=_range(0.0, 1.0))
    video_interval: float = field(default=10.0, metadata=_range(0.0, 86_400))


@dataclass(frozen=True)
class TagRule:
    """Per-label override of the tag policy."""

    threshold: float | None = field(default=None, metadata=_range(0.0, 1.0))
    name: str | None = None
    parent: str | None = None
    enabled: bool = True
    # Videos only (see tagd.policy.segments); None = the group's, else [tags.video]'s.
    max_gap: float | None = field(default=None, metadata=_range(0.0, 86_400))
    min_segment: float | None = field(default=None, metadata=_range(0.0, 86_400))
    min_total: float | None = field(default=None, metadata=_range(0.0, 86_400))


@dataclass(frozen=True)
class TagGroupSettings:
    parent: str = "Objects"
    threshold: float = field(default=0.5, metadata=_range(0.0, 1.0))
    labels: dict[str, TagRule] = field(default_factory=dict)
    # Videos only: this group's time-range rules; None = [tags.video]'s.
    max_gap: float | None = field(default=None, metadata=_range(0.0, 86_400))
    min_segment: float | None = field(default=None, metadata=_range(0.0, 86_400))
    min_total: float | None = field(default=None, metadata=_range(0.0, 86_400))


@dataclass(frozen=True)
class VideoTagSettings:
    """How per-frame hits in a video become time ranges and a file tag (defaults for
    every tag group; groups and labels override max_gap, min_segment, min_total)."""

    max_gap: float = field(default=4.0, metadata=_range(0.0, 86_400))
    min_segment: float = field(default=2.0, metadata=_range(0.0, 86_400))
    min_total: float = field(default=4.0, metadata=_range(0.0, 86_400))
    min_fraction: float = field(default=0.25, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class TextTagSettings:
    """Tags from recognised text: one for "has text", and names found in it."""

    name: str = "Text"
    threshold: float = field(default=0.8, metadata=_range(0.0, 1.0))
    min_chars: int = field(default=3, metadata=_range(1, 1000))
    studios: list[str] = field(default_factory=list)
    studio_parent: str = "Studio"
    studio_threshold: float = field(default=90.0, metadata=_range(0.0, 100.0))


@dataclass(frozen=True)
class ConceptsSettings:
    """ImageNet classes -> concept/scene tags (tagd.analyzers.concepts)."""

    enabled: bool = True
    model: str = "auto"
    # Classes stored per photo/frame; tags sum the stored probabilities.
    top_k: int = field(default=10, metadata=_range(1, 1000))
    min_score: float = field(default=0.005, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class ClipSettings:
    """CLIP image embeddings (similar-image and text search, zero-shot tags)."""

    # Runs only when a CLIP model is installed (`tagd models export clip`).
    enabled: bool = True
    model: str = "auto"


@dataclass(frozen=True)
class NsfwSettings:
    """NudeNet body-part detection; off unless asked for."""

    enabled: bool = False
    model: str = "auto"
    min_score: float = field(default=0.2, metadata=_range(0.0, 1.0))
    nms_iou: float = field(default=0.45, metadata=_range(0.0, 1.0))
    max_detections: int = field(default=50, metadata=_range(1, 10_000))


@dataclass(frozen=True)
class DuplicatesSettings:
    """Perceptual hashes (tagd.analyzers.phash) for `tagd dupes` and `tagd similar`."""

    enabled: bool = True
    # Bits (of 64) within which two photos count as near-duplicates. 8 keeps
    # 10 % crops (≤ 8 on the dev set) apart from distinct photos (≥ 10).
    threshold: int = field(default=8, metadata=_range(0, 16))


@dataclass(frozen=True)
class FacesSettings:
    """Face detection + descriptors (tagd.analyzers.faces) and people clustering
    (tagd.people.cluster)."""

    enabled: bool = True
    detector: str = "auto"
    embedder: str = "auto"
    detect_size: int = field(default=640, metadata=_range(64, 4096))
    decode_size: int = field(default=1280, metadata=_range(64, 8192))
    min_score: float = field(default=0.9, metadata=_range(0.0, 1.0))
    min_size: int = field(default=24, metadata=_range(0, 10_000))
    min_faces: int = field(default=2, metadata=_range(1, 1000))
    max_distance: float = field(default=0.5, metadata=_range(0.0, 2.0))
    video_dedupe: float = field(default=0.3, metadata=_range(0.0, 2.0))


@dataclass(frozen=True)
class PeopleTagSettings:
    parent: str = "People"


@dataclass(frozen=True)
class ConceptEntry:
    """One tag of the concept taxonomy (see daemon/tagd/policy/taxonomy.toml)."""

    classes: list[str] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    parent: str | None = None
    threshold: float | None = field(default=None, metadata=_range(0.0, 1.0))
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConceptTagSettings(TagGroupSettings):
    parent: str = "Concepts"
    threshold: float = field(default=0.35, metadata=_range(0.0, 1.0))
    # Added to (same name: replaces) the shipped taxonomy.
    taxonomy: dict[str, ConceptEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSet:
    """One CLIP zero-shot tag: its prompts (averaged) and where it goes."""

    prompts: list[str] = field(default_factory=list)
    parent: str | None = None
    threshold: float | None = field(default=None, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class ClipTagSettings(TagGroupSettings):
    parent: str = "Concepts"
    threshold: float = field(default=0.3, metadata=_range(0.0, 1.0))
    # Added to (same name: replaces) the shipped prompt sets.
    prompts: dict[str, PromptSet] = field(default_factory=dict)


@dataclass(frozen=True)
class NsfwTagSettings(TagGroupSettings):
    parent: str = "NSFW"
    threshold: float = field(default=0.5, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class TagSettings:
    root: str = "AI"
    objects: TagGroupSettings = field(default_factory=TagGroupSettings)
    video: VideoTagSettings = field(default_factory=VideoTagSettings)
    text: TextTagSettings = field(default_factory=TextTagSettings)
    concepts: ConceptTagSettings = field(default_factory=ConceptTagSettings)
    clip: ClipTagSettings = field(default_factory=ClipTagSettings)
    nsfw: NsfwTagSettings = field(default_factory=NsfwTagSettings)
    people: PeopleTagSettings = field(default_factory=PeopleTagSettings)


@dataclass(frozen=True)
class XmpSettings:
    enabled: bool = True
    sidecar: SidecarNaming = "ext"
    # Face regions (MWG) + PersonInImage: named faces only, every face, or none.
    faces: Literal["named", "all", "none"] = "named"
    # Formats whose XMP goes into the file itself instead of a sidecar (opt-in).
    embed: list[EmbedFormat] = field(default_factory=list)
    # Embedded writes keep the file's mtime/atime (photo managers sort by mtime).
    preserve_mtime: bool = True


@dataclass(frozen=True)
class PathMapping:
    """One prefix as Stash sees it and as tagd sees it (Docker volumes, NFS mounts)."""

    stash: str = ""
    local: str = ""


@dataclass(frozen=True)
class StashSettings:
    enabled: bool = False
    url: str = "http://localhost:9999/graphql"
    api_key: str = ""
    timeout: float = field(default=30.0, metadata=_range(0.1, 600))
    retries: int = field(default=2, metadata=_range(0, 10))
    parent_tag: str = "AI"
    markers: bool = True
    # Named people become Stash performers, the best OCR studio match the studio.
    performers: bool = False
    studio: bool = False
    workflow_prefix: str = "tagd"
    path_mappings: list[PathMapping] = field(default_factory=list)
    # Scenes/images per request when listing them (--from-stash, many files to write).
    page_size: int = field(default=100, metadata=_range(1, 1000))
    # `tagd run`: when to look for <prefix>_TagMe files in Stash (like daemon.schedule).
    tagme_schedule: str = "15m"


@dataclass(frozen=True)
class DaemonSettings:
    state_dir: str = ""
    log_level: LogLevel = "info"
    # `tagd run`: a cron expression ("0 3 * * *") or an interval ("30m", "6h"); "" = none.
    schedule: str = "0 3 * * *"
    scan_on_start: bool = True
    watch: bool = True
    watch_debounce: float = field(default=2.0, metadata=_range(0.0, 600))
    nice: int = field(default=15, metadata=_range(0, 19))
    io_idle: bool = True
    stop_timeout: float = field(default=8.0, metadata=_range(1.0, 600))
    # `tagd run`'s control socket: "auto" ($RUNTIME_DIRECTORY or the state dir), "" = none.
    control_socket: str = "auto"
    # tagd's user and group only: any local user could trigger scans and retries.
    control_socket_mode: int = field(default=0o660, metadata=_range(0, 0o777))


@dataclass(frozen=True)
class Settings:
    profile: Profile = "balanced"
    library: LibrarySettings = field(default_factory=LibrarySettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    objects: ObjectsSettings = field(default_factory=ObjectsSettings)
    ocr: OcrSettings = field(default_factory=OcrSettings)
    concepts: ConceptsSettings = field(default_factory=ConceptsSettings)
    clip: ClipSettings = field(default_factory=ClipSettings)
    nsfw: NsfwSettings = field(default_factory=NsfwSettings)
    faces: FacesSettings = field(default_factory=FacesSettings)
    duplicates: DuplicatesSettings = field(default_factory=DuplicatesSettings)
    tags: TagSettings = field(default_factory=TagSettings)
    xmp: XmpSettings = field(default_factory=XmpSettings)
    stash: StashSettings = field(default_factory=StashSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    source: Path | None = field(default=None, compare=False)


# ---------------------------------------------------------------- profiles

# What each hardware profile sets. A key written in the config file always
# wins over its profile: profiles fill in only the keys the file leaves out, so
# they are applied to the parsed TOML before validation, where "absent" and
# "set to the default" can still be told apart. "balanced" is the defaults.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "low-power": {
        # One core for the model, one for decoding and the rest of the machine.
        "runtime": {"backend": "cpu", "threads": 1, "batch_size": 2, "idle_unload": 60.0},
        "decode": {"workers": 1, "reduced": True, "video_interval": 5.0, "video_max_frames": 60},
        "objects": {"enabled": True},
        "ocr": {"enabled": False},
    },
    "balanced": {
        "runtime": {"backend": "auto", "threads": 0, "batch_size": 8, "idle_unload": 300.0},
        "decode": {"workers": 0, "reduced": True, "video_interval": 2.0, "video_max_frames": 300},
        "objects": {"enabled": True},
        "ocr": {"enabled": True},
    },
    "gpu": {
        # "auto" takes CUDA when onnxruntime has it; big batches keep a GPU fed.
        "runtime": {"backend": "auto", "threads": 0, "batch_size": 32, "idle_unload": 1800.0},
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


def _with_profile(data: dict[str, Any]) -> dict[str, Any]:
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


# ---------------------------------------------------------------- schedule

_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(text: str) -> tuple[str, str | float] | None:
    """("interval", seconds), ("cron", expression), or None for no schedule.

    Raises ValueError with a message for anything else.
    """
    text = text.strip()
    if not text:
        return None
    interval = _INTERVAL.fullmatch(text)
    if interval:
        seconds = float(interval.group(1)) * _UNIT[interval.group(2)]
        if seconds < 1:
            raise ValueError("an interval must be at least 1 s")
        return "interval", seconds
    if len(text.split()) != 5:
        raise ValueError(
            "expected a cron expression with 5 fields ('0 3 * * *') "
            "or an interval ('90s', '30m', '6h', '1d')"
        )
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression: {exc}") from None
    return "cron", text


# ---------------------------------------------------------------- loading


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """--config beats TAGD_CONFIG beats the usual places; None means defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TAGD_CONFIG")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(xdg) / "tagd" / "config.toml", Path("/etc/tagd/config.toml")):
        # exists(), not is_file(): a pipe or folder there is reported, not skipped.
        if candidate.exists():
            return candidate
    return None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate a config file (or the defaults when there is none)."""
    file = find_config_file(path)
    if file is None:
        return Settings()
    try:
        data = tomllib.loads(_read_config(file).decode("utf-8"))
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


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_config(file: Path) -> bytes:
    """The bytes of a regular file of at most MAX_CONFIG_BYTES.

    O_NONBLOCK: opening a named pipe for reading would otherwise wait for a
    writer forever (and /dev/zero never ends), so `tagd config check` or a
    SIGHUP reload would hang instead of saying what is wrong.
    """
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "something else")
            raise ConfigError(
                f"{file}: the config file is {kind}, not a regular file: "
                "give the path of a TOML file"
            )
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{file}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a tagd config file"
        )
    return data


def parse_settings(data: dict[str, Any], origin: str = "config") -> Settings:
    try:
        settings = _build(Settings, _with_profile(data), "")
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    problems = _semantic_problems(settings)
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    return settings


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'top level'}: expected a table, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"[{path}]" if path else "the top level"
        raise ConfigError(
            f"{_join(path, unknown[0])}: unknown key; allowed in {where}: "
            + ", ".join(sorted(fields))
        )
    values = {
        name: _convert(hints[name], data[name], _join(path, name), fields[name].metadata)
        for name in fields
        if name in data
    }
    return cls(**values)


def _convert(tp: Any, value: Any, path: str, meta: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, meta)
    if origin is Literal:
        if value not in args:
            allowed = " | ".join(repr(a) for a in args)
            raise ConfigError(f"{path} = {_show(value)}: allowed values are {allowed}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path} = {_show(value)}: expected a list")
        return [_convert(args[0], v, f"{path}[{i}]", meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} = {_show(value)}: expected a table")
        return {k: _convert(args[1], v, _join(path, k), meta) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    return _scalar(tp, value, path, meta)


def _scalar(tp: type, value: Any, path: str, meta: Any) -> Any:
    given = value
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{path} = {_show(value)}: expected {tp.__name__}")
    lo, hi = meta.get("min"), meta.get("max")
    # TOML has nan, and nan compares False with everything: without this it passes
    # any range and then, as a threshold, silently drops every detection.
    if (
        (tp is float and math.isnan(value))
        or (lo is not None and value < lo)
        or (hi is not None and value > hi)
    ):
        raise ConfigError(f"{path} = {_show(given)}: must be {_bounds(lo, hi)}")
    return value


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    if lo is not None:
        return f"at least {lo}"
    return f"at most {hi}" if hi is not None else "a number"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _stash_problems(stash: StashSettings) -> list[str]:
    problems = []
    if not stash.url.startswith(("http://", "https://")):
        problems.append(f"stash.url = {stash.url!r}: must start with http:// or https://")
    if not stash.parent_tag.strip():
        problems.append("stash.parent_tag: must not be empty")
    for i, m in enumerate(stash.path_mappings):
        if not m.stash.strip() or not m.local.startswith("/"):
            problems.append(
                f"stash.path_mappings[{i}]: needs stash = \"<path in Stash>\" and "
                "local = \"/absolute/local/path\""
            )
    return problems


def _semantic_problems(settings: Settings) -> list[str]:
    """Checks that need more than one key; returns problems as messages."""
    problems = []
    for i, pattern in enumerate(settings.library.exclude):
        if not pattern.strip():
            problems.append(f"library.exclude[{i}]: empty pattern")
    for key in ("image_extensions", "video_extensions"):
        for ext in getattr(settings.library, key):
            if ext.startswith(".") or ext != ext.lower():
                problems.append(
                    f"library.{key}: {ext!r}: write extensions lower-case without a dot"
                )
    for key, text_value in (
        ("daemon.schedule", settings.daemon.schedule),
        ("stash.tagme_schedule", settings.stash.tagme_schedule),
    ):
        try:
            parse_schedule(text_value)
        except ValueError as exc:
            problems.append(f"{key} = {text_value!r}: {exc}")
    if settings.ocr.max_side % 32:
        problems.append(f"ocr.max_side = {settings.ocr.max_side}: must be a multiple of 32")
    text = settings.tags.text
    if not text.name.strip() or "|" in text.name:
        problems.append(f"tags.text.name = {text.name!r}: must be non-empty, without '|'")
    for i, studio in enumerate(text.studios):
        if not studio.strip() or "|" in studio:
            problems.append(f"tags.text.studios[{i}] = {studio!r}: must be non-empty, without '|'")
    # Taxonomy and prompt files are resolved here so a typo is an error up front.
    from tagd.policy import clip_tags, concepts

    problems += concepts.problems(settings.tags.concepts)
    problems += clip_tags.problems(settings.tags.clip)
    problems += _model_label_problems(settings)
    if "|" in settings.tags.root or not settings.tags.root:
        problems.append(f"tags.root = {settings.tags.root!r}: must be non-empty, without '|'")
    problems += _stash_problems(settings.stash)
    return problems


# ---------------------------------------------------------------- label rules


def unknown_labels(group: str, names: Iterable[str], known: Iterable[str], what: str) -> list[str]:
    """A problem per name in [tags.<group>.labels] that is not one of `known`
    (`what` says what it is not), with the closest known names: a typo
    ("presron") must not be a rule that silently never applies."""
    choices = sorted(set(known))
    problems = []
    for name in sorted(set(names) - set(choices)):
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
        if not close:  # "Person" for "person": case is the usual slip
            close = [c for c in choices if c.lower() == name.lower()]
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        problems.append(f"tags.{group}.labels.{name}: {what}{hint}")
    return problems


# Groups whose labels are the output classes of a model in the manifest; the
# concepts (taxonomy) and clip (prompt sets) groups check theirs in tagd.policy.
_MODEL_GROUPS = (("objects", "objects"), ("nsfw", "nsfw"))


def _model_label_problems(settings: Settings) -> list[str]:
    problems = []
    for group, task in _MODEL_GROUPS:
        rules = getattr(settings.tags, group).labels
        if not rules:
            continue  # the common case reads no manifest
        spec = _model_spec(settings, task, getattr(settings, group).model)
        if spec is not None and spec.labels:
            what = f"not a label of {spec.name}, the {task} model (see `tagd models list`)"
            problems += unknown_labels(group, rules, spec.labels, what)
    return problems


def _model_spec(settings: Settings, task: str, name: str) -> Any:
    """The manifest entry a group's labels come from; None when the model is not
    installed (loading the analyzer then reports that, with what to run)."""
    from tagd.paths import models_dir
    from tagd.runtime.manifest import ModelError, load_manifest, prefer_engine, resolve

    try:
        specs = prefer_engine(load_manifest(models_dir(settings)), settings.runtime.backend)
        return resolve(specs, task, name, f"{task}.model")
    except ModelError:
        return None
