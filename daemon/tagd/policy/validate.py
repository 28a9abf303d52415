"""The tag policy's checks of the tag rules in a config file.

Rules name things only the policy knows: the labels of the installed detection
models, the tags of the concept taxonomy, the CLIP prompt sets. Loading the
settings calls :func:`rule_problems`, so a typo is an error when the file is
read, not a rule that silently never applies.
"""

from __future__ import annotations

from tagd.config import Settings
from tagd.media.quality import LABELS
from tagd.paths import models_dir
from tagd.policy import clip_tags, concepts
from tagd.policy.label_names import unknown_labels
from tagd.runtime.manifest import ModelError, ModelSpec, load_manifest, prefer_engine, resolve

# Groups whose labels are the output classes of a model in the manifest, with
# that model's task; the concepts and clip groups check theirs themselves.
_MODEL_GROUPS = (("objects", "objects"), ("nsfw", "nsfw"))


def rule_problems(settings: Settings) -> list[str]:
    """Every problem in [tags.*] rules, as messages naming the key."""
    band = settings.tags.review
    review = (
        [f"tags.review.low ({band.low}) must not be above tags.review.high ({band.high})"]
        if band.low > band.high
        else []
    )
    vlm_labels = sorted({label for labels in settings.vlm.tags.values() for label in labels})
    asked = ", ".join(vlm_labels)
    return [
        *concepts.problems(settings.tags.concepts),
        *clip_tags.problems(settings.tags.clip),
        *model_label_problems(settings),
        *unknown_labels(
            "quality", settings.tags.quality.labels, LABELS, f"not one of {', '.join(LABELS)}"
        ),
        *unknown_labels(
            "vlm", settings.tags.vlm.labels, vlm_labels, f"not a label of [vlm] tags: {asked}"
        ),
        *review,
    ]


def model_label_problems(settings: Settings) -> list[str]:
    """Labels of [tags.objects] and [tags.nsfw] rules that their model lacks."""
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


def _model_spec(settings: Settings, task: str, name: str) -> ModelSpec | None:
    """The manifest entry a group's labels come from; None when the model is not
    installed (loading the analyzer then reports that, with what to run)."""
    try:
        specs = prefer_engine(load_manifest(models_dir(settings)), settings.runtime.backend)
        return resolve(specs, task, name, f"{task}.model")
    except ModelError:
        return None
