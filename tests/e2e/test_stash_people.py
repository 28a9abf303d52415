"""Stash performers from named people and the studio from OCR (`[stash] performers`,
`[stash] studio`), against the Stash stand-in speaking the real schema.

Catalogs are built by hand (person tags from "faces", studio suggestions from
"ocr"), so no model runs; every server must end with `invalid == []`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stash_server import StashServer

from tagd.catalog.catalog import Catalog
from tagd.config import PathMapping, Settings, StashSettings
from tagd.records import Tag
from tagd.sinks.stash.deliver import SINK, deliver_stash
from tagd.sinks.stash.fields import route

LATER = 10**12  # a `now` past every backoff
DOG = Tag("AI|Objects|dog", 0.9, "objects")
TEXT = Tag("AI|Text", 0.95, "ocr")


def person(name: str) -> Tag:
    return Tag(f"AI|People|{name}", 0.9, "faces")


def studio(name: str, score: float = 0.95) -> Tag:
    return Tag(f"AI|Studio|{name}", score, "ocr")


@pytest.fixture
def server() -> Iterator[StashServer]:
    stash = StashServer(api_key="secret").start()
    yield stash
    stash.stop()
    assert stash.invalid == [], "tagd sent requests real Stash would reject"


def settings_for(server: StashServer, performers: bool = True, studio: bool = True) -> Settings:
    s = StashSettings(
        enabled=True,
        url=server.url,
        api_key=server.api_key,
        timeout=5.0,  # generous: a loaded CI machine
        retries=0,
        performers=performers,
        studio=studio,
        path_mappings=[PathMapping(stash="/data", local="/srv")],
    )
    return dataclasses.replace(Settings(), stash=s)


def catalog_with(path: Path, files: dict[str, list[Tag]]) -> Catalog:
    """A catalog holding `files` (name -> tags; *.mp4 are videos), all queued for Stash."""
    catalog = Catalog(path)
    with catalog.transaction():
        for name, tags in files.items():
            kind = "video" if name.endswith(".mp4") else "image"
            cid = catalog.ensure_content(f"fp-{name}", kind)
            set_tags(catalog, name, tags)
            catalog.add_file(f"/srv/{name}", kind, 1, 1, cid, None)
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
    return catalog


def set_tags(catalog: Catalog, name: str, tags: list[Tag]) -> None:
    """Replace the file's derived tags, source by source (as the policy does)."""
    cid = catalog.content_by_fingerprint(f"fp-{name}")
    assert cid is not None
    for source in ("objects", "faces", "ocr"):
        catalog.replace_tags(cid, source, [t for t in tags if t.source == source])


def requeue(catalog: Catalog) -> None:
    with catalog.transaction():
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)


def deliver(catalog: Catalog, settings: Settings) -> None:
    report = deliver_stash(catalog, settings, now=LATER)
    assert report.failed == 0, report.errors
    assert catalog.due(SINK, LATER) == []


def objects(server: StashServer) -> dict[str, dict[str, Any]]:
    """path -> its tags, performers (name or name/disambiguation) and studio, by name."""
    st = server.state

    def performer(pid: str) -> str:
        p = st.performers[pid]
        return f"{p.name}/{p.disambiguation}" if p.disambiguation else p.name

    return {
        row.path: {
            "tags": sorted(st.tags[t].name for t in row.tag_ids),
            "performers": sorted(performer(p) for p in row.performer_ids),
            "studio": st.studios[row.studio_id].name if row.studio_id else None,
        }
        for row in [*st.scenes.values(), *st.images.values()]
    }


def snapshot(server: StashServer) -> dict[str, Any]:
    st = server.state
    return {
        "objects": objects(server),
        "tags": sorted((t.name, t.ignore_auto_tag) for t in st.tags.values()),
        "performers": sorted(
            (p.name, p.disambiguation or "", tuple(p.aliases), p.ignore_auto_tag)
            for p in st.performers.values()
        ),
        "studios": sorted(
            (s.name, tuple(s.aliases), s.ignore_auto_tag) for s in st.studios.values()
        ),
    }


def mutations(server: StashServer) -> list[str]:
    return [q for q in server.requests if q.lstrip().startswith("mutation")]


def recorded(catalog: Catalog, table: str) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in catalog.con.execute(f"SELECT * FROM {table}")}


def _ids(st: Any, *names: str) -> list[str]:
    """Stash ids of the scenes/images with these file names."""
    rows = {Path(r.path).name: r.id for r in [*st.images.values(), *st.scenes.values()]}
    return [rows[n] for n in names]


# ---------------------------------------------------------------- which tags go where


def test_route_splits_people_and_the_best_studio() -> None:
    tags = [DOG, TEXT, person("Alice"), studio("Zeta"), studio("Acme"), studio("B", 0.9)]
    both = dataclasses.replace(Settings(), stash=StashSettings(performers=True, studio=True))
    routed = route(tags, both)
    assert routed.people == ["Alice"]
    assert routed.studio == "Acme"  # a tie goes to the name first in order
    assert [t.name for t in routed.tags] == ["AI|Objects|dog", "AI|Text"]
    off = route(tags, Settings())
    assert off.people == [] and off.studio is None and off.tags == tags


# ---------------------------------------------------------------- performers


def test_people_become_performers(
    server: StashServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = server.state
    bob = st.add_performer("Bob")
    carol = st.add_performer("Carol Smith", aliases=["Carol"])
    st.add_performer("Dana", disambiguation="actress")
    st.add_performer("Dana", disambiguation="singer")  # two Danas: never guessed
    st.add_performer("Fay", disambiguation="the other one")
    fay = st.add_performer("fay")  # case-insensitive, and without a disambiguation
    eve = st.add_performer("Eve")
    st.add_image("/data/a.jpg", performer_ids=[eve])  # the user's performer
    st.add_image("/data/b.jpg", performer_ids=[bob])  # Bob set by the user already
    st.add_scene("/data/c.mp4")
    catalog = catalog_with(
        tmp_path / "c.db",
        {
            "a.jpg": [DOG, person("Alice"), person("Bob"), person("Carol"), person("Dana")],
            "b.jpg": [person("Bob"), person("Fay"), person("Gil")],
            "c.mp4": [person("Alice")],
        },
    )
    with caplog.at_level(logging.WARNING, logger="tagd.sinks.stash.fields"):
        deliver(catalog, settings_for(server, studio=False))
    assert "'Dana'" in caplog.text and "Dana (actress)" in caplog.text

    assert objects(server) == {
        "/data/a.jpg": {
            "tags": ["dog", "tagd_Tagged"],  # people are performers, not tags
            "performers": ["Alice", "Bob", "Carol Smith", "Eve"],
            "studio": None,
        },
        "/data/b.jpg": {
            "tags": ["tagd_Tagged"],
            "performers": ["Bob", "Gil", "fay"],
            "studio": None,
        },
        "/data/c.mp4": {"tags": ["tagd_Tagged"], "performers": ["Alice"], "studio": None},
    }
    [alice] = st.performers_named("Alice")  # created once, used twice
    [gil] = st.performers_named("Gil")
    assert alice.ignore_auto_tag and alice.disambiguation is None
    assert not any(st.tag_by_name(n) for n in ("Alice", "Bob", "Carol", "Dana", "People"))
    ia, ib, sc = _ids(st, "a.jpg", "b.jpg", "c.mp4")
    a, b, c = f"image:{ia}", f"image:{ib}", f"scene:{sc}"
    # Only what tagd added is tagd's: not Eve (the user's), not Bob on b.jpg.
    assert recorded(catalog, "stash_performers") == {
        (a, alice.id),
        (a, bob),
        (a, carol),
        (b, fay),
        (b, gil.id),
        (c, alice.id),
    }

    # Again: nothing to change, so nothing is written.
    before = len(mutations(server))
    requeue(catalog)
    deliver(catalog, settings_for(server, studio=False))
    assert len(mutations(server)) == before

    # Alice is renamed Alicia, Bob is split away from both photos: tagd takes
    # back what it added; Eve and the user's Bob on b.jpg stay. The user made
    # "Gil" ambiguous meanwhile: tagd's Gil stays (not removed, not guessed).
    gil.disambiguation = "uncle"
    st.add_performer("Gil", disambiguation="cousin")
    with catalog.transaction():
        set_tags(catalog, "a.jpg", [DOG, person("Alicia"), person("Carol"), person("Dana")])
        set_tags(catalog, "b.jpg", [person("Fay"), person("Gil")])
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
    deliver(catalog, settings_for(server, studio=False))
    after = objects(server)
    assert after["/data/a.jpg"]["performers"] == ["Alicia", "Carol Smith", "Eve"]
    assert after["/data/b.jpg"]["performers"] == ["Bob", "Gil/uncle", "fay"]
    assert after["/data/c.mp4"]["performers"] == ["Alice"]
    assert (a, bob) not in recorded(catalog, "stash_performers")
    assert st.performers_named("Alice")  # performers themselves are never deleted
    catalog.close()


def test_turning_performers_on_moves_people_from_tags(server: StashServer, tmp_path: Path) -> None:
    st = server.state
    alice = st.add_tag("Alice")  # the user's own tag of that name: theirs, kept
    st.add_image("/data/a.jpg", tag_ids=[alice])
    catalog = catalog_with(tmp_path / "c.db", {"a.jpg": [DOG, person("Alice"), person("Bob")]})
    deliver(catalog, settings_for(server, performers=False, studio=False))
    assert objects(server)["/data/a.jpg"] == {
        "tags": ["Alice", "Alice (AI)", "Bob", "dog", "tagd_Tagged"],
        "performers": [],
        "studio": None,
    }
    requeue(catalog)  # what the pipeline does when the option changes
    deliver(catalog, settings_for(server, studio=False))
    assert objects(server)["/data/a.jpg"] == {
        "tags": ["Alice", "dog", "tagd_Tagged"],
        "performers": ["Alice", "Bob"],
        "studio": None,
    }
    catalog.close()


# ---------------------------------------------------------------- studio


def test_studio_from_the_best_suggestion(server: StashServer, tmp_path: Path) -> None:
    st = server.state
    mine = st.add_studio("Mine")
    acme_inc = st.add_studio("ACME Inc.", aliases=["Acme Studios"])
    st.add_image("/data/a.jpg")
    st.add_image("/data/b.jpg", studio_id=mine)  # the user's studio
    st.add_image("/data/c.jpg")
    st.add_image("/data/d.jpg")
    st.add_scene("/data/e.mp4")
    catalog = catalog_with(
        tmp_path / "c.db",
        {
            # Tie at 0.95: the name first in order wins; Beta scores lower.
            "a.jpg": [TEXT, studio("Zeta"), studio("Acme"), studio("Beta", 0.92)],
            "b.jpg": [TEXT, studio("Acme")],
            "c.jpg": [TEXT, studio("Acme Studios")],  # an alias of the user's studio
            "d.jpg": [TEXT, studio("Beta")],
            "e.mp4": [TEXT, studio("Beta")],
        },
    )
    settings = settings_for(server, performers=False)
    deliver(catalog, settings)
    state = objects(server)
    assert {p: o["studio"] for p, o in state.items()} == {
        "/data/a.jpg": "Acme",
        "/data/b.jpg": "Mine",  # never replaced
        "/data/c.jpg": "ACME Inc.",
        "/data/d.jpg": "Beta",
        "/data/e.mp4": "Beta",
    }
    assert all(o["tags"] == ["Text", "tagd_Tagged"] for o in state.values())  # no studio tags
    assert sorted(s.name for s in st.studios.values()) == ["ACME Inc.", "Acme", "Beta", "Mine"]
    assert all(s.ignore_auto_tag for s in st.studios.values() if s.name in ("Acme", "Beta"))
    assert not any(st.tag_by_name(n) for n in ("Acme", "Zeta", "Beta", "Studio"))
    assert ("image:" + _ids(st, "c.jpg")[0], acme_inc) in recorded(catalog, "stash_studios")
    assert not [r for r in recorded(catalog, "stash_studios") if r[1] == mine]

    before = len(mutations(server))
    requeue(catalog)
    deliver(catalog, settings)
    assert len(mutations(server)) == before  # a re-run writes nothing

    # a.jpg: the suggestion goes (a higher threshold): tagd clears its studio.
    # c.jpg: Zeta is now the best: tagd's studio moves to it.
    # d.jpg: the user picked another studio meanwhile: theirs; tagd forgets its own.
    # e.mp4: the user cleared it, the suggestion goes: nothing to do.
    [d] = _ids(st, "d.jpg")
    st.images[d].studio_id = mine
    [e] = _ids(st, "e.mp4")
    st.scenes[e].studio_id = None
    with catalog.transaction():
        set_tags(catalog, "a.jpg", [TEXT])
        set_tags(catalog, "c.jpg", [TEXT, studio("Acme Studios", 0.91), studio("Zeta", 0.99)])
        set_tags(catalog, "d.jpg", [TEXT])
        set_tags(catalog, "e.mp4", [TEXT])
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
    deliver(catalog, settings)
    assert {p: o["studio"] for p, o in objects(server).items()} == {
        "/data/a.jpg": None,
        "/data/b.jpg": "Mine",
        "/data/c.jpg": "Zeta",
        "/data/d.jpg": "Mine",
        "/data/e.mp4": None,
    }
    assert {r[1] for r in recorded(catalog, "stash_studios")} == {st.studio_by_name("Zeta").id}

    # The suggestion comes back to d.jpg: the user's studio still wins.
    with catalog.transaction():
        set_tags(catalog, "d.jpg", [TEXT, studio("Beta")])
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)
    deliver(catalog, settings)
    assert objects(server)["/data/d.jpg"]["studio"] == "Mine"
    catalog.close()


# ---------------------------------------------------------------- off


def test_options_off_ask_nothing_about_performers_or_studios(
    server: StashServer, tmp_path: Path
) -> None:
    server.state.add_image("/data/a.jpg")
    server.state.add_scene("/data/b.mp4")
    files = {n: [DOG, TEXT, person("Alice"), studio("Acme")] for n in ("a.jpg", "b.mp4")}
    catalog = catalog_with(tmp_path / "c.db", files)
    deliver(catalog, settings_for(server, performers=False, studio=False))
    asked = "\n".join(server.requests).lower()
    assert "performer" not in asked and "studio" not in asked
    tags = ["Acme", "Alice", "Text", "dog", "tagd_Tagged"]  # as ordinary tags, as before
    assert objects(server) == {
        "/data/a.jpg": {"tags": tags, "performers": [], "studio": None},
        "/data/b.mp4": {"tags": tags, "performers": [], "studio": None},
    }
    assert server.state.performers == {} and server.state.studios == {}
    catalog.close()


# ---------------------------------------------------------------- interrupted


def populate(server: StashServer) -> None:
    st = server.state
    bob = st.add_performer("Bob")
    eve = st.add_performer("Eve")
    mine = st.add_studio("Mine")
    st.add_studio("Beta Films", aliases=["Beta"])
    st.add_image("/data/a.jpg", performer_ids=[eve])
    st.add_image("/data/b.jpg", performer_ids=[bob], studio_id=mine)
    st.add_scene("/data/c.mp4")


FIRST = {
    "a.jpg": [DOG, person("Alice"), person("Bob"), studio("Acme")],
    "b.jpg": [person("Bob"), person("Carol"), studio("Acme")],
    "c.mp4": [DOG, person("Alice"), studio("Beta"), studio("Acme", 0.9)],
}
# Renames, splits, a studio that moves and one that goes.
SECOND = {
    "a.jpg": [DOG, person("Alicia"), studio("Beta")],
    "b.jpg": [person("Carol")],
    "c.mp4": [DOG, person("Alicia"), person("Bob")],
}


def run_phases(server: StashServer, path: Path, cut: tuple[int, int, str] | None) -> Any:
    """FIRST then SECOND delivered to a fresh Stash; `cut` = (phase, n, how): Stash
    goes away after n answers in that phase ("drop": before the next request;
    "lose": it carries the next one out, but the answer is lost), comes back and
    the work is retried. Returns each phase's (snapshot, requests so far)."""
    server.reset()
    populate(server)
    # No workflow tags: test_stash.py covers them, and each cut costs a run.
    settings = dataclasses.replace(
        settings_for(server),
        stash=dataclasses.replace(settings_for(server).stash, workflow_prefix=""),
    )
    catalog = catalog_with(path, FIRST)
    snaps = []
    for phase, files in enumerate((FIRST, SECOND), start=1):
        if phase == 2:
            with catalog.transaction():
                for name, tags in files.items():
                    set_tags(catalog, name, tags)
            requeue(catalog)
        if cut is not None and cut[0] == phase:
            _, n, how = cut
            setattr(server, f"{how}_after", len(server.requests) + n)
            deliver_stash(catalog, settings)
            assert catalog.due(SINK, LATER), f"{cut}: work lost"
            server.drop_after, server.lose_after, server.mode = None, None, "ok"  # back
        deliver(catalog, settings)
        snaps.append((snapshot(server), len(server.requests)))
    catalog.close()
    return snaps


def test_interrupted_runs_end_like_an_undisturbed_one(tmp_path: Path) -> None:
    stash = StashServer().start()
    try:
        (first, n1), (second, n2) = run_phases(stash, tmp_path / "ref.db", None)
        is_mutation = [q.lstrip().startswith("mutation") for q in stash.requests]
        assert first["objects"]["/data/b.jpg"] == {
            "tags": [],
            "performers": ["Bob", "Carol"],
            "studio": "Mine",
        }
        assert second["objects"]["/data/c.mp4"] == {
            "tags": ["dog"],
            "performers": ["Alicia", "Bob"],
            "studio": None,
        }
        cuts = [(1, n, "drop") for n in range(1, n1)] + [(2, n, "drop") for n in range(1, n2 - n1)]
        # A lost answer differs from a drop only where the request changed something.
        cuts += [(p, n, "lose") for p, n, _ in cuts if is_mutation[n + (n1 if p == 2 else 0)]]
        assert len(cuts) > 25
        for number, cut in enumerate(cuts):
            snaps = run_phases(stash, tmp_path / f"{number}.db", cut)
            assert [s for s, _ in snaps] == [first, second], (
                f"phase {cut[0]}, {cut[2]} after {cut[1]}"
            )
        assert stash.invalid == []
    finally:
        stash.stop()


# ---------------------------------------------------------------- reaching the outbox


def test_toggling_the_options_queues_every_file_again(tmp_path: Path) -> None:
    from tagd.pipeline import SINKS_KEY, Pipeline

    catalog = Catalog(tmp_path / "c.db")
    keys = []
    for performers, studio_on in [(False, False), (True, False), (True, True), (False, False)]:
        stash = StashSettings(enabled=True, performers=performers, studio=studio_on)
        Pipeline(
            catalog, dataclasses.replace(Settings(), stash=stash), []
        ).rederive_if_policy_changed()
        keys.append(catalog.get_meta(SINKS_KEY))
    # Each change re-derives and re-queues; off, the key is the one from before the options.
    assert len(set(keys[:3])) == 3 and keys[3] == keys[0]
    assert keys[0] is not None and "performers" not in keys[0] and "studio" not in keys[0]
    catalog.close()


def test_people_changes_are_queued_for_stash(tmp_path: Path) -> None:
    """Naming, merging or splitting people re-derives faces tags: Stash must hear of it."""
    from tagd.people.cluster import rederive

    catalog = catalog_with(tmp_path / "c.db", {"a.jpg": [person("Alice")]})
    with catalog.transaction():
        catalog.con.execute("DELETE FROM outbox")
        cid = catalog.content_by_fingerprint("fp-a.jpg")
        # No faces stored for it: its person tag goes (as after a split).
        stash = StashSettings(enabled=True)
        assert rederive(catalog, dataclasses.replace(Settings(), stash=stash), [cid]) == 1
    assert [p for _, p, _ in catalog.due(SINK, LATER)] == ["/srv/a.jpg"]
    catalog.close()
