"""One tag-rule resolver for every tag group: label rule over shipped defaults over group."""

from __future__ import annotations

from tagd.config import (
    ClipTagSettings,
    ConceptTagSettings,
    TagGroupSettings,
    TagRule,
    TagSettings,
    TextTagSettings,
)
from tagd.policy import clip_tags, concepts
from tagd.policy.rules import LabelRule, group_rule, resolve, tag_path
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media


def test_tag_path_drops_empty_parts_and_trims_the_name() -> None:
    assert tag_path("AI", "", " dog ") == "AI|dog"
    assert tag_path("AI", "Animals||Pets|", "dog") == "AI|Animals|Pets|dog"


def test_a_tag_that_only_repeats_its_parent_is_the_parent() -> None:
    assert tag_path("AI", "Concepts|Food", "food") == "AI|Concepts|Food"
    assert tag_path("AI", "Concepts|Animals", "animal") == "AI|Concepts|Animals"
    assert tag_path("AI", "People", "people") == "AI|People"
    assert tag_path("AI", "Concepts|Food", "pizza") == "AI|Concepts|Food|pizza"
    assert tag_path("AI", "", "ai") == "AI|ai"  # the root is no parent
    assert tag_path("AI", "Glass", "glasses") == "AI|Glass|glasses"


def test_no_shipped_concept_tag_repeats_its_parent() -> None:
    settings = ConceptTagSettings()
    for name in concepts.shipped_taxonomy():
        rule = concepts.label_rule("AI", settings, name)
        assert rule.tag is not None
        parts = [p.casefold().rstrip("s") for p in rule.tag.split("|")]
        assert len(parts) == len(set(parts)), rule.tag


def test_label_rule_wins_over_shipped_defaults_which_win_over_the_group() -> None:
    group = TagGroupSettings(parent="Objects", threshold=0.5)
    assert group_rule("AI", group, "dog") == LabelRule(0.5, "AI|Objects|dog")
    # A shipped entry's parent goes below the group's; its threshold replaces the group's.
    shipped = group_rule("AI", group, "dog", own_parent="Animals", own_threshold=0.3)
    assert shipped == LabelRule(0.3, "AI|Objects|Animals|dog")
    # The config rule replaces both, parent included (a parent is a full path below root).
    rule = TagRule(threshold=0.7, name="Hund", parent="Pets")
    configured = TagGroupSettings(parent="Objects", labels={"dog": rule})
    assert group_rule("AI", configured, "dog", own_parent="Animals", own_threshold=0.3) == (
        LabelRule(0.7, "AI|Pets|Hund")
    )
    # A rule that sets only some keys leaves the others to the defaults.
    partial = TagGroupSettings(labels={"dog": TagRule(name="Hund")})
    assert group_rule("AI", partial, "dog", own_threshold=0.3) == LabelRule(0.3, "AI|Objects|Hund")


def test_switched_off_label_has_no_tag() -> None:
    off = TagGroupSettings(labels={"dog": TagRule(enabled=False, threshold=0.1)})
    assert group_rule("AI", off, "dog").tag is None
    assert resolve("AI", "x", TagRule(enabled=False), parent="P", threshold=0.2).tag is None


def test_objects_nsfw_concepts_and_clip_resolve_alike() -> None:
    rule = TagRule(threshold=0.05, name="Renamed", parent="Mine")
    # Objects and NSFW through the policy, concepts and CLIP through their own modules:
    # the same rule gives the same tag everywhere.
    settings = TagSettings(
        objects=TagGroupSettings(labels={"dog": rule}),
        concepts=ConceptTagSettings(labels={"dog": rule}),
        clip=ClipTagSettings(labels={"beach": rule}),
    )
    policy = TagPolicy(settings)
    assert policy.rule(settings.objects, "dog") == LabelRule(0.05, "AI|Mine|Renamed")
    assert concepts.label_rule("AI", settings.concepts, "dog") == LabelRule(0.05, "AI|Mine|Renamed")
    sets = clip_tags.prompt_sets(settings.clip)
    assert clip_tags._rules("AI", settings.clip, sets)["beach"] == LabelRule(
        0.05, "AI|Mine|Renamed"
    )


def test_text_tags_use_the_resolver_paths() -> None:
    text = TextTagSettings(name=" Words ", studios=["Acme Studios"], studio_parent="Studio|Made")
    policy = TagPolicy(TagSettings(root="AI", text=text))
    found = [Detection("text", 0.95, None, text="ACME STUDIOS presents")]
    names = {t.name for t in policy.derive("ocr", found, Media("image", 10, 10))}
    assert names == {"AI|Words", "AI|Studio|Made|Acme Studios"}
