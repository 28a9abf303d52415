"""Checks that a field's type cannot say: patterns, schedules, tag names, URLs.

Each returns problems as messages naming the key; they run on settings whose
types and ranges are already valid.
"""

from __future__ import annotations

import datetime as dt
import os

from tagd.config.models import ApiSettings, RuntimeSettings, Settings, StashSettings, VlmSettings
from tagd.config.schedule import parse_schedule


def problems(settings: Settings) -> list[str]:
    return [
        *_library_problems(settings),
        *_schedule_problems(settings),
        *_ocr_problems(settings),
        *_tag_name_problems(settings),
        *_stash_problems(settings.stash),
        *_api_problems(settings.api),
        *_organize_problems(settings),
        *_runtime_problems(settings.runtime),
        *_vlm_problems(settings.vlm),
    ]


def _vlm_problems(vlm: VlmSettings) -> list[str]:
    out = []
    for i, endpoint in enumerate(vlm.endpoints):
        if not endpoint.url.startswith(("http://", "https://")):
            out.append(
                f"vlm.endpoints[{i}].url = {endpoint.url!r}: must be the API's base URL, "
                'http(s)://host:port/v1 (e.g. "http://192.168.1.20:11434/v1" for Ollama)'
            )
    for name, labels in vlm.tags.items():
        if not labels or any(not label.strip() or "|" in label for label in labels):
            out.append(f"vlm.tags.{name}: a list of labels, none empty or with '|'")
    if not vlm.enabled:
        return out
    if not vlm.model.strip():
        out.append("vlm.model: name the model the servers run (vlm.enabled = true needs it)")
    if not any(not e.fallback for e in vlm.endpoints):
        out.append(
            "vlm.enabled = true needs at least one [[vlm.endpoints]] without fallback = true"
        )
    if not vlm.tags and not vlm.captions:
        out.append("vlm: no tags and no captions to ask for (vlm.tags is empty)")
    return out


# The sections whose analyzers run models (what runtime.remote_analyzers may name).
MODEL_SECTIONS = ("objects", "ocr", "concepts", "clip", "dinov2", "nsfw", "faces")


def _runtime_problems(runtime: RuntimeSettings) -> list[str]:
    from tagd.runtime.kserve import EndpointError, parse_url

    out = []
    for i, endpoint in enumerate(runtime.endpoints):
        try:
            parse_url(endpoint.url)
        except EndpointError as exc:
            out.append(f"runtime.endpoints[{i}].url = {endpoint.url!r}: {exc}")
    remote = runtime.backend == "remote" or runtime.remote_analyzers
    if remote and not any(not e.fallback for e in runtime.endpoints):
        key = "runtime.remote_analyzers"
        if runtime.backend == "remote":
            key = "runtime.backend = 'remote'"
        out.append(
            f"{key} needs at least one [[runtime.endpoints]] without fallback = true "
            '(url = "grpc://host:port" of a KServe v2 server: OpenVINO Model Server, Triton)'
        )
    for name in runtime.remote_analyzers:
        if name not in MODEL_SECTIONS:
            out.append(
                f"runtime.remote_analyzers: {name!r} is not an analyzer with models "
                f"(one of {', '.join(MODEL_SECTIONS)})"
            )
    return out


def _organize_problems(settings: Settings) -> list[str]:
    from tagd.organize import target_problem

    out = []
    for i, rule in enumerate(settings.organize.rules):
        key = f"organize.rules[{i}]"
        problem = target_problem(rule.target)
        if problem:
            out.append(f"{key}.target = {rule.target!r}: {problem}")
        if "{tag" in rule.target and rule.match.tag is None:
            out.append(f"{key}.target: {{tag}} needs a match.tag (which tag would it be?)")
        for name in ("after", "before"):
            day = getattr(rule.match, name)
            if day is None:
                continue
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                out.append(f"{key}.match.{name} = {day!r}: write a day as YYYY-MM-DD")
    from tagd.paths import root_of

    folder = settings.organize.import_folder
    # Inside a root, not a root itself: every photo of a root would be filed.
    root = root_of(folder, settings.library.roots) if folder else None
    if folder and root in (None, os.path.abspath(folder)):
        out.append(
            f"organize.import = {folder!r}: must be a folder inside one of library.roots "
            "(it is scanned with them, and the rules' targets are relative to its root)"
        )
    return out


def _library_problems(settings: Settings) -> list[str]:
    out = [
        f"library.exclude[{i}]: empty pattern"
        for i, pattern in enumerate(settings.library.exclude)
        if not pattern.strip()
    ]
    for key in ("image_extensions", "video_extensions"):
        for ext in getattr(settings.library, key):
            if ext.startswith(".") or ext != ext.lower():
                out.append(f"library.{key}: {ext!r}: write extensions lower-case without a dot")
    return out


def _schedule_problems(settings: Settings) -> list[str]:
    out = []
    for key, text in (
        ("daemon.schedule", settings.daemon.schedule),
        ("stash.tagme_schedule", settings.stash.tagme_schedule),
    ):
        try:
            parse_schedule(text)
        except ValueError as exc:
            out.append(f"{key} = {text!r}: {exc}")
    return out


def _ocr_problems(settings: Settings) -> list[str]:
    # The text detector works on a grid of 32 pixels.
    if settings.ocr.max_side % 32:
        return [f"ocr.max_side = {settings.ocr.max_side}: must be a multiple of 32"]
    return []


def _tag_name_problems(settings: Settings) -> list[str]:
    """'|' separates the levels of a hierarchical tag, so no name may contain one."""
    out = []
    text = settings.tags.text
    if not text.name.strip() or "|" in text.name:
        out.append(f"tags.text.name = {text.name!r}: must be non-empty, without '|'")
    for i, studio in enumerate(text.studios):
        if not studio.strip() or "|" in studio:
            out.append(f"tags.text.studios[{i}] = {studio!r}: must be non-empty, without '|'")
    if "|" in settings.tags.root or not settings.tags.root:
        out.append(f"tags.root = {settings.tags.root!r}: must be non-empty, without '|'")
    return out


def _stash_problems(stash: StashSettings) -> list[str]:
    out = []
    if not stash.url.startswith(("http://", "https://")):
        out.append(f"stash.url = {stash.url!r}: must start with http:// or https://")
    if not stash.parent_tag.strip():
        out.append("stash.parent_tag: must not be empty")
    for i, m in enumerate(stash.path_mappings):
        if not m.stash.strip() or not m.local.startswith("/"):
            out.append(
                f'stash.path_mappings[{i}]: needs stash = "<path in Stash>" and '
                'local = "/absolute/local/path"'
            )
    return out


def _api_problems(api: ApiSettings) -> list[str]:
    # tagd.api.listen imports nothing of the web framework: config checks stay light.
    from tagd.api.listen import ListenError, parse_listen

    out = []
    try:
        parse_listen(api.listen)
    except ListenError as exc:
        out.append(f"api.listen = {api.listen!r}: {exc}")
    for i, key in enumerate(api.api_keys):
        digest = key.sha256.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            out.append(
                f"api.api_keys[{i}].sha256: must be the 64 hex digits of the key's sha256 "
                "(`tagd api-key new` prints the line to paste)"
            )
    return out
