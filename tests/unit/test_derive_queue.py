"""The one derive-and-queue path: tags from stored findings, a write queued per sink
only where they changed (or everywhere, when what the sinks write changed)."""

from __future__ import annotations

from pathlib import Path

from tagd.catalog.catalog import Catalog
from tagd.config import TagGroupSettings, TagSettings
from tagd.policy.apply import derive_and_queue
from tagd.policy.tags import TagPolicy
from tagd.records import Detection

SINKS = ["xmp", "stash"]


def _queued(catalog: Catalog) -> dict[str, int]:
    return {sink: n for sink, (n, _, _) in catalog.outbox_by_sink().items()}


def _clear(catalog: Catalog, file_id: int) -> None:
    for sink in SINKS:
        catalog.outbox_done(file_id, sink)


def test_tags_are_derived_and_only_changes_are_queued(tmp_path: Path) -> None:
    policy = TagPolicy(TagSettings())
    with Catalog(tmp_path / "catalog.db") as catalog:
        with catalog.transaction():
            cid = catalog.ensure_content("b2s3:one", "image")
            fid = catalog.add_file(str(tmp_path / "a.jpg"), "image", 10, 1, cid, None)
            other = catalog.ensure_content("b2s3:two", "image")
            catalog.add_file(str(tmp_path / "b.jpg"), "image", 10, 1, other, None)
            dog = Detection("dog", 0.9, (1.0, 2.0, 30.0, 40.0))
            catalog.save_analysis(cid, "objects", "sha", [dog])
            catalog.save_analysis(other, "objects", "sha", [])
            work = {cid: ["objects", "phash"], other: ["objects"]}
            assert derive_and_queue(catalog, policy, SINKS, work) == [cid]
        assert [t.name for t in catalog.tags(cid)] == ["AI|Objects|dog"]
        assert catalog.tags(other) == []
        assert _queued(catalog) == {"xmp": 1, "stash": 1}

        with catalog.transaction():
            _clear(catalog, fid)
            # Same findings, same rules: nothing changed, nothing to write.
            assert derive_and_queue(catalog, policy, SINKS, work) == []
            assert _queued(catalog) == {}
            # What the sinks write changed: every file of the work is written again.
            assert derive_and_queue(catalog, policy, SINKS, work, queue_all=True) == [cid, other]
            assert _queued(catalog) == {"xmp": 2, "stash": 2}

        strict = TagPolicy(TagSettings(objects=TagGroupSettings(threshold=0.95)))
        with catalog.transaction():
            _clear(catalog, fid)
            assert derive_and_queue(catalog, strict, ["xmp"], {cid: ["objects"]}) == [cid]
        assert catalog.tags(cid) == []  # the dog no longer passes: its tag is gone
        # Queued for the sink asked for only ("b.jpg" is still waiting for both).
        assert _queued(catalog) == {"xmp": 2, "stash": 1}
