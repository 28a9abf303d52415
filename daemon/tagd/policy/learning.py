"""Thresholds that learn from review decisions.

Each accept or reject on the review page is a label. For a tag, the decided
files and their scores tell the precision its threshold gives now (of the
decided files at or above it, the share that was right) and the lowest
threshold that would have given a target precision (default 0.95) over enough
decisions. Applying a suggestion writes it into config.toml as that label's
rule (`[tags.<group>.labels.<label>] threshold`), the file's comments and
layout kept (tomlkit), after checking that the new file loads; the tags are
then derived again from the stored findings, no model run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from tagd.catalog.catalog import Catalog
from tagd.config import ConfigError, Settings, load_settings
from tagd.policy import concepts
from tagd.policy.tags import TagPolicy

# Tag sources whose thresholds are per-label rules of a [tags.<group>].
GROUPS = {"objects": "objects", "nsfw": "nsfw", "concepts": "concepts", "taught": "taught"}
TARGET = 0.95
MIN_DECISIONS = 5  # at or above a suggested threshold


@dataclass(frozen=True)
class Learned:
    tag: str
    group: str  # [tags.<group>]
    label: str  # [tags.<group>.labels.<label>]
    decisions: int
    accepted: int
    threshold: float  # now
    precision: float | None  # of the decided files at or above `threshold`
    suggested: float | None  # the lowest threshold reaching the target precision


def learned(catalog: Catalog, settings: Settings, target: float = TARGET) -> list[Learned]:
    """Every tag people decided on, with its precision now and a suggestion."""
    decided: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    for name, source, score, verdict in catalog.all_verdicts():
        if source in GROUPS:
            decided.setdefault((name, source), []).append((score, verdict == "accept"))
    out = []
    for (name, source), scores in decided.items():
        rule = rule_of(settings, source, name)
        if rule is None:
            continue  # a tag no label rule makes (renamed since, or a taxonomy parent)
        label, threshold = rule
        above = [ok for score, ok in scores if score >= threshold]
        out.append(
            Learned(
                name,
                GROUPS[source],
                label,
                len(scores),
                sum(ok for _, ok in scores),
                threshold,
                sum(above) / len(above) if above else None,
                suggest(scores, target),
            )
        )
    return sorted(out, key=lambda x: (-x.decisions, x.tag))


def suggest(
    decided: Sequence[tuple[float, bool]], target: float = TARGET, least: int = MIN_DECISIONS
) -> float | None:
    """The lowest threshold (a decided score) at or above which the decided files
    were right at least `target` of the time, over at least `least` of them;
    None when no threshold does."""
    best = None
    right = 0
    ranked = sorted(decided, key=lambda d: -d[0])
    for count, (score, ok) in enumerate(ranked, 1):
        right += ok
        last = count == len(ranked) or ranked[count][0] < score  # a threshold between scores
        if last and count >= least and right / count >= target:
            best = score
    return best


def rule_of(settings: Settings, source: str, tag: str) -> tuple[str, float] | None:
    """(label, threshold now) of the rule that makes `tag`, or None."""
    group = GROUPS.get(source)
    if group is None:
        return None
    leaf = tag.rsplit("|", 1)[-1]
    settings_group = getattr(settings.tags, group)
    # A label renamed by its rule (name = "...") is keyed by its own name.
    label = next((k for k, r in settings_group.labels.items() if r.name == leaf), leaf)
    root = settings.tags.root
    try:
        if group == "concepts":
            rule = concepts.label_rule(root, settings.tags.concepts, label)
        else:
            rule = TagPolicy(settings.tags).rule(settings_group, label)
    except KeyError:
        return None
    return (label, rule.threshold) if rule.tag == tag else None


class ApplyError(ValueError):
    """The threshold cannot be written; the message says why."""


def apply_threshold(path: Path, group: str, label: str, threshold: float) -> Settings:
    """Write `[tags.<group>.labels.<label>] threshold` into the config file at
    `path`, keeping the rest as it was; returns the settings it now gives. The
    file is replaced only once the new one loads."""
    if not 0.0 <= threshold <= 1.0:
        raise ApplyError(f"threshold {threshold}: must be between 0 and 1")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ApplyError(f"cannot read {path}: {exc.strerror or exc}") from None
    doc = tomlkit.parse(text)
    tags = doc.setdefault("tags", tomlkit.table())
    section = tags.setdefault(group, tomlkit.table())
    labels = section.setdefault("labels", tomlkit.inline_table())
    rule = labels.get(label)
    if rule is None:
        labels[label] = {"threshold": round(threshold, 4)}
    else:
        rule["threshold"] = round(threshold, 4)
    try:
        fd, staged = tempfile.mkstemp(prefix=".tagd-config-", suffix=".toml", dir=path.parent)
    except OSError as exc:
        raise ApplyError(
            f"cannot write next to {path} ({exc.strerror or exc}): make its folder writable "
            f"for tagd, or write [tags.{group}.labels.{label}] threshold = {threshold} yourself"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(tomlkit.dumps(doc))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staged, path.stat().st_mode & 0o7777)
        try:
            settings = load_settings(Path(staged))
        except ConfigError as exc:
            raise ApplyError(f"the new config would not load: {exc}") from None
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return dataclasses.replace(settings, source=path.resolve())
