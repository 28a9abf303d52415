"""The settings: one frozen pydantic dataclass per section of the config file.

The defaults here are the documented defaults of the repository's
``config.toml`` (a test keeps the two equal). They are pydantic dataclasses,
not BaseModels: the rest of tagd (and its tests) build and copy them with the
dataclasses API (``dataclasses.replace``, ``asdict`` for the rules fingerprint),
while validation, the JSON schema and serialisation come from pydantic
(``pydantic.TypeAdapter(Settings)``). Field types come from tagd.config.fields:
strict scalars and ranges.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass
from pydantic.json_schema import SkipJsonSchema

from tagd.config.fields import SECTION, Bool, Float, Int, Range, Str
from tagd.media.sniff import RAW_EXTENSIONS

Backend = Literal["auto", "cpu", "openvino", "cuda", "remote"]
SidecarNaming = Literal["ext", "stem"]
# Formats tagd may write XMP into (see tagd.sinks.xmp.embed); names as media.sniff gives them.
EmbedFormat = Literal["jpeg", "tiff", "png", "webp"]
LogLevel = Literal["debug", "info", "warning", "error"]
Profile = Literal["low-power", "balanced", "gpu"]
FaceRegions = Literal["named", "all", "none"]
# What an API key may do: read the catalog, or also change it.
ApiRole = Literal["read", "admin"]
# A score or share of something: a detection's confidence, a threshold.
Fraction = Annotated[Float, Range(0.0, 1.0)]
# A stretch of time within one video (a day at most).
Seconds = Annotated[Float, Range(0.0, 86_400)]


@dataclass(frozen=True, config=SECTION)
class LibrarySettings:
    roots: list[Str] = field(default_factory=list)
    exclude: list[Str] = field(
        default_factory=lambda: ["**/@eaDir/**", "**/.thumbnails/**", "**/#recycle/**"]
    )
    include_hidden: Bool = False
    follow_symlinks: Bool = True
    image_extensions: list[Str] = field(
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
            # Camera RAW (tagd.media.sniff.RAW_EXTENSIONS)
            *RAW_EXTENSIONS,
        ]
    )
    video_extensions: list[Str] = field(
        default_factory=lambda: ["mp4", "mov", "m4v", "mkv", "webm", "avi"]
    )
    # A file changed this recently may still be being copied: its analysis waits
    # until it is this many seconds old and unchanged (0 = do not wait).
    settle_seconds: Annotated[Float, Range(0.0, 60.0)] = 2.0


@dataclass(frozen=True, config=SECTION)
class DecodeSettings:
    reduced: Bool = True
    max_pixels: Annotated[Int, Range(1)] = 200_000_000
    workers: Annotated[Int, Range(0, 64)] = 0
    video_interval: Annotated[Float, Range(0.1, 3600)] = 2.0
    video_max_frames: Annotated[Int, Range(1, 100_000)] = 300


@dataclass(frozen=True, config=SECTION)
class Endpoint:
    """One KServe v2 inference server (OpenVINO Model Server, Triton) serving the
    models of `tagd models repository`."""

    # grpc://host:port (Triton's 8001, OVMS's --port).
    url: Str = ""
    # A prior only: work follows each endpoint's measured speed once it has one.
    weight: Annotated[Float, Range(0.01, 1000.0)] = 1.0
    # Requests in flight on it at once.
    max_concurrent: Annotated[Int, Range(1, 64)] = 2
    # Used only while every endpoint without this mark is down.
    fallback: Bool = False


@dataclass(frozen=True, config=SECTION)
class RuntimeSettings:
    backend: Backend = "auto"
    threads: Annotated[Int, Range(0, 256)] = 0
    lanes: Annotated[Int, Range(0, 16)] = 0
    batch_size: Annotated[Int, Range(1, 256)] = 4
    idle_unload: Annotated[Float, Range(0)] = 300.0
    models_dir: Str = ""
    # Inference servers for backend = "remote" (or for remote_analyzers).
    endpoints: list[Endpoint] = field(default_factory=list)
    # With another backend: the analyzers whose models run on the endpoints.
    remote_analyzers: list[Str] = field(default_factory=list)
    # When every endpoint is down: run on this machine's CPU (else the scan stops,
    # and the files wait for the next one).
    local_fallback: Bool = True
    # Seconds one request may take before its endpoint counts as down.
    remote_timeout: Annotated[Float, Range(0.1, 3600.0)] = 60.0


@dataclass(frozen=True, config=SECTION)
class ObjectsSettings:
    enabled: Bool = True
    model: Str = "auto"
    min_score: Fraction = 0.05
    nms_iou: Fraction = 0.45
    max_detections: Annotated[Int, Range(1, 10_000)] = 100


@dataclass(frozen=True, config=SECTION)
class OcrSettings:
    enabled: Bool = True
    det_model: Str = "auto"
    cls_model: Str = "auto"
    rec_model: Str = "auto"
    angle: Bool = True
    max_side: Annotated[Int, Range(64, 4096)] = 960
    min_side: Annotated[Int, Range(32, 4096)] = 736
    det_threshold: Fraction = 0.3
    box_threshold: Fraction = 0.5
    unclip_ratio: Annotated[Float, Range(1.0, 4.0)] = 1.6
    min_text_size: Annotated[Int, Range(0, 1000)] = 3
    angle_threshold: Fraction = 0.9
    min_score: Fraction = 0.5
    video_interval: Seconds = 10.0


@dataclass(frozen=True, config=SECTION)
class TagRule:
    """Per-label override of the tag policy."""

    threshold: Fraction | None = None
    name: Str | None = None
    parent: Str | None = None
    enabled: Bool = True
    # Videos only (see tagd.policy.segments); None = the group's, else [tags.video]'s.
    max_gap: Seconds | None = None
    min_segment: Seconds | None = None
    min_total: Seconds | None = None
    # Opt-in: the xmp:Rating a file with this tag gets (-1 = rejected, 0-5 stars),
    # in [tags.objects], [tags.nsfw] and [tags.quality] rules. The lowest wins;
    # a rating someone else wrote is never changed. None: tagd writes no rating.
    rating: Annotated[Int, Range(-1, 5)] | None = None


@dataclass(frozen=True, config=SECTION)
class TagGroupSettings:
    parent: Str = "Objects"
    threshold: Fraction = 0.5
    labels: dict[str, TagRule] = field(default_factory=dict)
    # Videos only: this group's time-range rules; None = [tags.video]'s.
    max_gap: Seconds | None = None
    min_segment: Seconds | None = None
    min_total: Seconds | None = None


@dataclass(frozen=True, config=SECTION)
class VideoTagSettings:
    """How per-frame hits in a video become time ranges and a file tag (defaults for
    every tag group; groups and labels override max_gap, min_segment, min_total)."""

    max_gap: Seconds = 4.0
    min_segment: Seconds = 2.0
    min_total: Seconds = 4.0
    min_fraction: Fraction = 0.25


@dataclass(frozen=True, config=SECTION)
class TextTagSettings:
    """Tags from recognised text: one for "has text", and names found in it."""

    name: Str = "Text"
    threshold: Fraction = 0.8
    min_chars: Annotated[Int, Range(1, 1000)] = 3
    studios: list[Str] = field(default_factory=list)
    studio_parent: Str = "Studio"
    studio_threshold: Annotated[Float, Range(0.0, 100.0)] = 90.0


@dataclass(frozen=True, config=SECTION)
class ConceptsSettings:
    """ImageNet classes -> concept/scene tags (tagd.analyzers.concepts)."""

    enabled: Bool = True
    model: Str = "auto"
    # Classes stored per photo/frame; tags sum the stored probabilities.
    top_k: Annotated[Int, Range(1, 1000)] = 10
    min_score: Fraction = 0.005


@dataclass(frozen=True, config=SECTION)
class ClipSettings:
    """CLIP image embeddings (similar-image and text search, zero-shot tags)."""

    # Runs only when a CLIP model is installed (`tagd models export clip`).
    enabled: Bool = True
    model: Str = "auto"


@dataclass(frozen=True, config=SECTION)
class Dinov2Settings:
    """DINOv2 image embeddings for `tagd similar`; off unless asked for."""

    # Runs only when enabled and a DINOv2 model is installed (`tagd models export dinov2`).
    enabled: Bool = False
    model: Str = "auto"


@dataclass(frozen=True, config=SECTION)
class NsfwSettings:
    """NudeNet body-part detection; off unless asked for."""

    enabled: Bool = False
    model: Str = "auto"
    min_score: Fraction = 0.2
    nms_iou: Fraction = 0.45
    max_detections: Annotated[Int, Range(1, 10_000)] = 50


@dataclass(frozen=True, config=SECTION)
class DuplicatesSettings:
    """Perceptual hashes (tagd.analyzers.phash) for `tagd dupes` and `tagd similar`."""

    enabled: Bool = True
    # Bits (of 64) within which two photos count as near-duplicates. 8 keeps
    # 10 % crops (≤ 8 on the dev set) apart from distinct photos (≥ 10).
    threshold: Annotated[Int, Range(0, 16)] = 8
    # `tagd dupes --quarantine` moves copies to <root>/.tagd-quarantine/<date>/;
    # with purge on, the daemon deletes the ones quarantined more than
    # retention_days ago (off: they stay until restored or deleted by hand).
    retention_days: Annotated[Int, Range(1, 36_500)] = 7
    purge: Bool = False


@dataclass(frozen=True, config=SECTION)
class QualitySettings:
    """Photo quality (tagd.analyzers.quality): blur, exposure, contrast, noise,
    measured on the one decode; no model. Tags and their thresholds: [tags.quality]."""

    enabled: Bool = True


@dataclass(frozen=True, config=SECTION)
class VlmEndpoint:
    """One OpenAI-compatible chat server with image input (LM Studio, Ollama,
    llama.cpp server, vLLM)."""

    # The API's base URL, up to /v1 ("http://192.168.1.20:11434/v1" for Ollama).
    url: Str = ""
    # Sent as "Authorization: Bearer ..." when set.
    api_key: Str = ""
    weight: Annotated[Float, Range(0.01, 1000.0)] = 1.0
    max_concurrent: Annotated[Int, Range(1, 64)] = 1
    fallback: Bool = False


def _vlm_default_tags() -> dict[str, list[str]]:
    return {
        "scene": [
            "beach", "mountains", "snow", "forest", "city street", "indoors", "night",
            "sunset", "party", "wedding", "concert", "sports", "food", "document",
            "screenshot",
        ],
    }  # fmt: skip


@dataclass(frozen=True, config=SECTION)
class VlmSettings:
    """Tags by a vision-language model on OpenAI-compatible chat servers
    (tagd.analyzers.vlm): one question per tag set, a JSON answer. Off by default;
    it runs after the other analyzers and never holds them up."""

    enabled: Bool = False
    # The model's name on the servers ("qwen2.5vl:7b", "llava-v1.6-mistral-7b").
    model: Str = ""
    endpoints: list[VlmEndpoint] = field(default_factory=list)
    # Tag sets: one question each ("which of these apply: ..."), name -> labels.
    tags: dict[Str, list[Str]] = field(default_factory=_vlm_default_tags)
    # A one-line caption per photo (per sampled video frame), stored and searchable.
    captions: Bool = False
    # Long side of the JPEG sent, in pixels.
    image_size: Annotated[Int, Range(128, 4096)] = 768
    # Seconds between the video frames asked about.
    video_interval: Annotated[Float, Range(1.0, 86_400)] = 30.0
    # Seconds one answer may take before its server counts as down.
    timeout: Annotated[Float, Range(1.0, 3600.0)] = 120.0
    max_tokens: Annotated[Int, Range(16, 8192)] = 300


@dataclass(frozen=True, config=SECTION)
class OrganizeMatch:
    """What a file must have for an [[organize.rules]] rule to file it; every key
    given must hold (none given: every file)."""

    tag: Str | None = None  # a tag's full path ("AI|Objects|dog") or last part ("dog")
    person: Str | None = None  # a named person in the photo
    after: Str | None = None  # taken on or after this day (YYYY-MM-DD)
    before: Str | None = None  # taken before this day (YYYY-MM-DD)
    camera: Str | None = None  # in the camera's make and model, any case ("EOS", "iPhone")
    kind: Literal["image", "video"] | None = None


@dataclass(frozen=True, config=SECTION)
class OrganizeRule:
    match: OrganizeMatch = field(default_factory=OrganizeMatch)
    # The folder, relative to the file's library root: {year} {month} {day}
    # (from the date taken), {tag} (the matched tag's last part), {person},
    # {camera}, {kind}; with a format like {month:02}.
    target: Str = ""


@dataclass(frozen=True, config=SECTION)
class OrganizeSettings:
    """`tagd organize` (tagd.organize): files moved into folders by rules, first
    match wins; dry run unless --apply, undone by --undo."""

    rules: list[OrganizeRule] = field(default_factory=list)
    # A folder inside a library root that `tagd run` files new photos from:
    # tagged, then moved by the rules ("" = none).
    import_folder: Str = Field("", alias="import")


@dataclass(frozen=True, config=SECTION)
class FacesSettings:
    """Face detection + descriptors (tagd.analyzers.faces) and people clustering
    (tagd.people.cluster)."""

    enabled: Bool = True
    detector: Str = "auto"
    embedder: Str = "auto"
    detect_size: Annotated[Int, Range(64, 4096)] = 640
    decode_size: Annotated[Int, Range(64, 8192)] = 1280
    # None: the detector's own (tagd.analyzers.<family>_decode.MIN_SCORE).
    min_score: Fraction | None = None
    min_size: Annotated[Int, Range(0, 10_000)] = 24
    min_faces: Annotated[Int, Range(1, 1000)] = 2
    max_distance: Annotated[Float, Range(0.0, 2.0)] = 0.5
    video_dedupe: Annotated[Float, Range(0.0, 2.0)] = 0.3


@dataclass(frozen=True, config=SECTION)
class PeopleTagSettings:
    parent: Str = "People"


@dataclass(frozen=True, config=SECTION)
class ConceptEntry:
    """One tag of the concept taxonomy (see daemon/tagd/policy/taxonomy.toml)."""

    classes: list[Str] = field(default_factory=list)
    includes: list[Str] = field(default_factory=list)
    parent: Str | None = None
    threshold: Fraction | None = None
    aliases: list[Str] = field(default_factory=list)


@dataclass(frozen=True, config=SECTION)
class ConceptTagSettings(TagGroupSettings):
    parent: Str = "Concepts"
    threshold: Fraction = 0.35
    # Added to (same name: replaces) the shipped taxonomy.
    taxonomy: dict[str, ConceptEntry] = field(default_factory=dict)


@dataclass(frozen=True, config=SECTION)
class PromptSet:
    """One CLIP zero-shot tag: its prompts (averaged) and where it goes."""

    prompts: list[Str] = field(default_factory=list)
    parent: Str | None = None
    threshold: Fraction | None = None


@dataclass(frozen=True, config=SECTION)
class ClipTagSettings(TagGroupSettings):
    parent: Str = "Concepts"
    threshold: Fraction = 0.3
    # Added to (same name: replaces) the shipped prompt sets.
    prompts: dict[str, PromptSet] = field(default_factory=dict)


@dataclass(frozen=True, config=SECTION)
class NsfwTagSettings(TagGroupSettings):
    parent: Str = "NSFW"
    threshold: Fraction = 0.5


@dataclass(frozen=True, config=SECTION)
class QualityTagSettings(TagGroupSettings):
    parent: Str = "Quality"
    threshold: Fraction = 0.5


@dataclass(frozen=True, config=SECTION)
class VlmTagSettings(TagGroupSettings):
    """Tags the [vlm] model said apply; each is an answer, scored 1.0."""

    parent: Str = "VLM"
    threshold: Fraction = 0.5


@dataclass(frozen=True, config=SECTION)
class TaughtTagSettings(TagGroupSettings):
    """Tags taught by example (the web page's "Teach a tag", POST /api/v1/teach):
    a file gets one when the classifier fitted on its examples gives it at
    least `threshold` (a probability)."""

    parent: Str = "Taught"
    threshold: Fraction = 0.5


@dataclass(frozen=True, config=SECTION)
class ReviewSettings:
    """The review queue (the Review page, GET /api/v1/review): tags and would-be
    tags scored in [low, high], where the models are least sure."""

    low: Fraction = 0.45
    high: Fraction = 0.75


@dataclass(frozen=True, config=SECTION)
class TagSettings:
    root: Str = "AI"
    objects: TagGroupSettings = field(default_factory=TagGroupSettings)
    video: VideoTagSettings = field(default_factory=VideoTagSettings)
    text: TextTagSettings = field(default_factory=TextTagSettings)
    concepts: ConceptTagSettings = field(default_factory=ConceptTagSettings)
    clip: ClipTagSettings = field(default_factory=ClipTagSettings)
    nsfw: NsfwTagSettings = field(default_factory=NsfwTagSettings)
    quality: QualityTagSettings = field(default_factory=QualityTagSettings)
    vlm: VlmTagSettings = field(default_factory=VlmTagSettings)
    people: PeopleTagSettings = field(default_factory=PeopleTagSettings)
    taught: TaughtTagSettings = field(default_factory=TaughtTagSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)


@dataclass(frozen=True, config=SECTION)
class XmpSettings:
    enabled: Bool = True
    sidecar: SidecarNaming = "ext"
    # Face regions (MWG) + PersonInImage: named faces only, every face, or none.
    faces: FaceRegions = "named"
    # Formats whose XMP goes into the file itself instead of a sidecar (opt-in).
    embed: list[EmbedFormat] = field(default_factory=list)
    # Embedded writes keep the file's mtime/atime (photo managers sort by mtime).
    preserve_mtime: Bool = True


@dataclass(frozen=True, config=SECTION)
class PathMapping:
    """One prefix as Stash sees it and as tagd sees it (Docker volumes, NFS mounts)."""

    stash: Str = ""
    local: Str = ""


@dataclass(frozen=True, config=SECTION)
class StashSettings:
    enabled: Bool = False
    url: Str = "http://localhost:9999/graphql"
    api_key: Str = ""
    timeout: Annotated[Float, Range(0.1, 600)] = 30.0
    retries: Annotated[Int, Range(0, 10)] = 2
    parent_tag: Str = "AI"
    markers: Bool = True
    # Named people become Stash performers, the best OCR studio match the studio.
    performers: Bool = False
    studio: Bool = False
    workflow_prefix: Str = "tagd"
    path_mappings: list[PathMapping] = field(default_factory=list)
    # Scenes/images per request when listing them (--from-stash, many files to write).
    page_size: Annotated[Int, Range(1, 1000)] = 100
    # `tagd run`: when to look for <prefix>_TagMe files in Stash (like daemon.schedule).
    tagme_schedule: Str = "15m"


@dataclass(frozen=True, config=SECTION)
class DaemonSettings:
    state_dir: Str = ""
    log_level: LogLevel = "info"
    # `tagd run`: a cron expression ("0 3 * * *") or an interval ("30m", "6h"); "" = none.
    schedule: Str = "0 3 * * *"
    scan_on_start: Bool = True
    watch: Bool = True
    watch_debounce: Annotated[Float, Range(0.0, 600)] = 2.0
    nice: Annotated[Int, Range(0, 19)] = 15
    io_idle: Bool = True
    stop_timeout: Annotated[Float, Range(1.0, 600)] = 8.0
    # `tagd run`'s control socket: "auto" ($RUNTIME_DIRECTORY or the state dir), "" = none.
    control_socket: Str = "auto"
    # tagd's user and group only: any local user could trigger scans and retries.
    control_socket_mode: Annotated[Int, Range(0, 0o777)] = 0o660


@dataclass(frozen=True, config=SECTION)
class ApiKey:
    """One client of the HTTP API. Only the key's sha256 is stored, so a config
    file that leaks (a backup, a paste) gives nobody access."""

    sha256: Str = ""
    role: ApiRole = "read"
    # Who holds it, for people reading the config (never checked).
    name: Str = ""


@dataclass(frozen=True, config=SECTION)
class ApiSettings:
    """The HTTP API (tagd.api), served by `tagd run` and `tagd serve`."""

    enabled: Bool = True
    # host:port ("[::1]:8765" for IPv6). Anything but loopback needs api_keys.
    listen: Str = "127.0.0.1:8765"
    api_keys: list[ApiKey] = field(default_factory=list)
    max_upload_mb: Annotated[Int, Range(1, 10_000)] = 50
    # Scans keep a small WebP preview of each file (about 10-20 KB, in the state
    # dir) from the decode they do anyway, so browsing never decodes originals.
    thumbnails: Bool = True


@dataclass(frozen=True, config=SECTION)
class Settings:
    profile: Profile = "balanced"
    library: LibrarySettings = field(default_factory=LibrarySettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    objects: ObjectsSettings = field(default_factory=ObjectsSettings)
    ocr: OcrSettings = field(default_factory=OcrSettings)
    concepts: ConceptsSettings = field(default_factory=ConceptsSettings)
    clip: ClipSettings = field(default_factory=ClipSettings)
    dinov2: Dinov2Settings = field(default_factory=Dinov2Settings)
    nsfw: NsfwSettings = field(default_factory=NsfwSettings)
    faces: FacesSettings = field(default_factory=FacesSettings)
    duplicates: DuplicatesSettings = field(default_factory=DuplicatesSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    vlm: VlmSettings = field(default_factory=VlmSettings)
    organize: OrganizeSettings = field(default_factory=OrganizeSettings)
    tags: TagSettings = field(default_factory=TagSettings)
    xmp: XmpSettings = field(default_factory=XmpSettings)
    stash: StashSettings = field(default_factory=StashSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    # The file these came from (set by load_settings); not a key of the file.
    source: SkipJsonSchema[Path | None] = field(default=None, compare=False)
