"""Drain the outbox into Stash: tags on scenes/images, markers for video ranges.

Each queued file is found in Stash by path (after `path_mappings`); tagd's
tags are added with bulk*Update in ADD mode and only the ones tagd itself
added earlier (recorded in the catalog's stash_tags) are removed with REMOVE
mode, so tags people set stay. Scene markers follow the tags' time ranges and
are matched by (primary tag, start, end): a re-run creates nothing new and
moves the markers tagd made when the ranges changed. Opt-in, named people
become performers and the best studio found in the text the studio, by the
same rules (fields.py); one bulk update adds all, one removes all.

Files are planned in batches (their objects found through lookup.py),
then objects that get the same change share one bulk update, so a first
delivery costs about one update per distinct tag set, not one per file.

Every write is idempotent, and what tagd records is recorded before the
write that could be lost (or found again by matching), so a Stash that goes
away halfway ends, once it is back, in the same state as an undisturbed run.
Stash down, slow, 5xx or answering garbage: the file stays queued with
exponential backoff (and the rest of this run waits for the next one).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.paths import shown
from tagd.records import Tag
from tagd.sinks.outbox import Deadline, DeliveryReport, Progress, backoff, past
from tagd.sinks.stash.client import (
    StashClient,
    StashError,
    StashRefused,
    StashTimeout,
    StashUnavailable,
)
from tagd.sinks.stash.fields import PerformerResolver, StudioResolver, plan_studio, route
from tagd.sinks.stash.lookup import (
    NotSendable,
    StashLookup,
    StashObject,
    markers_problem,
    stash_path,
)
from tagd.sinks.stash.tags import TagResolver

SINK = "stash"
# Stash itself unusable for now (down, overloaded, refusing tagd's key): the
# delivery stops at once and every due file stays queued.
STOP = (StashUnavailable, StashRefused)
# Files planned before their writes go out together: objects that get the same
# change share one bulk update (a first delivery: one per distinct tag set).
BATCH = 500
log = logging.getLogger(__name__)

BULK = {
    "scene": "mutation B($input: BulkSceneUpdateInput!) { bulkSceneUpdate(input: $input) { id } }",
    "image": "mutation B($input: BulkImageUpdateInput!) { bulkImageUpdate(input: $input) { id } }",
}

CREATE_MARKER = """
mutation M($input: SceneMarkerCreateInput!) { sceneMarkerCreate(input: $input) { id } }
"""
UPDATE_MARKER = """
mutation M($input: SceneMarkerUpdateInput!) { sceneMarkerUpdate(input: $input) { id } }
"""
DESTROY_MARKER = "mutation M($id: ID!) { sceneMarkerDestroy(id: $id) }"
VERSION = "query V { version { version } }"


@dataclass
class Plan:
    """One object's writes, by bulk update field ("tag_ids", "performer_ids",
    "studio_id"): recorded as tagd's before the ADD update, forgotten after the
    REMOVE one."""

    add: dict[str, set[str]] = field(default_factory=dict)
    remove: dict[str, set[str]] = field(default_factory=dict)
    record: dict[str, set[str]] = field(default_factory=dict)
    forget: dict[str, set[str]] = field(default_factory=dict)
    # Plain fields (studio_id) sent with that mode's update.
    extra: dict[str, dict[str, Any]] = field(default_factory=lambda: {"ADD": {}, "REMOVE": {}})

    def fields(self, mode: str) -> dict[str, Any]:
        """The bulk update's fields for `mode` (no ids): {} when nothing changes."""
        ids = self.add if mode == "ADD" else self.remove
        out: dict[str, Any] = {
            name: {"ids": sorted(values), "mode": mode} for name, values in ids.items() if values
        }
        out.update(self.extra[mode])
        return out


@dataclass
class Pending:
    """One due file: its Stash object and what to write there."""

    item: tuple[int, str, int | None]  # file id, path, content id
    obj: StashObject
    plan: Plan
    markers: list[Tag] | None = None  # scenes: the tags whose ranges become markers


@dataclass
class Applied:
    """A batch's outcome per object key."""

    changed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


def make_client(settings: Settings) -> StashClient:
    s = settings.stash
    return StashClient(s.url, s.api_key, timeout=s.timeout, retries=s.retries)


def deliver_stash(
    catalog: Catalog,
    settings: Settings,
    *,
    client: StashClient | None = None,
    now: float | None = None,
    deadline: Deadline | None = None,
    progress: Progress | None = None,
) -> DeliveryReport:
    """Write due files to Stash; failures stay queued with backoff."""
    report = DeliveryReport()
    client = client or make_client(settings)
    writer = StashWriter(catalog, settings, client)
    due = catalog.due(SINK, time.time() if now is None else now, limit=10**9)
    if not due:
        return report
    try:
        kinds = Counter(writer.kind(file_id) for file_id, _, _ in due)
        if kinds["scene"] and settings.stash.markers:
            writer.check_markers()
        writer.lookup.prepare(kinds)
    except STOP as exc:
        _stash_down(catalog, due, exc, report)
        return report
    except StashError as exc:  # the list failed: ask per file instead
        log.warning("stash: cannot list Stash's scenes and images: %s", exc)
    index = 0
    while index < len(due) and not past(deadline):
        batch: list[Pending] = []
        while index < len(due) and len(batch) < BATCH and not past(deadline):
            if progress is not None:
                progress(index, len(due))
            file_id, path, content_id = due[index]
            try:
                pending = writer.prepare(file_id, path, content_id)
            except STOP as exc:
                _stash_down(catalog, [p.item for p in batch] + due[index:], exc, report)
                return report
            except NotSendable as exc:
                # Skipped, not retried: no retry helps while the file keeps its name.
                log.warning("stash: %s: %s", shown(path), exc)
                catalog.outbox_done(file_id, SINK)
                index += 1
                continue
            except StashError as exc:
                _failed(catalog, file_id, path, exc, report)
                index += 1
                continue
            if any(p.obj.key == pending.obj.key for p in batch):
                break  # a second file of one scene: planned again after this batch
            batch.append(pending)
            index += 1
        try:
            result = writer.apply(batch)
        except STOP as exc:
            _stash_down(catalog, [p.item for p in batch] + due[index:], exc, report)
            return report
        for pending in batch:
            file_id, path, _ = pending.item
            error = result.failed.get(pending.obj.key)
            if error is not None:
                _failed(catalog, file_id, path, error, report)
                continue
            catalog.outbox_done(file_id, SINK)
            if pending.obj.key in result.changed:
                report.written += 1
            else:
                report.unchanged += 1
    report.left += len(due) - index
    return report


def _failed(
    catalog: Catalog, file_id: int, path: str, exc: StashError | str, report: DeliveryReport
) -> None:
    """One file could not be written (not in Stash yet, a rejected update): it backs off."""
    report.failed += 1
    report.errors.append((path, str(exc)))
    attempts = catalog.outbox_attempts(file_id, SINK)
    catalog.outbox_failed(file_id, SINK, str(exc), backoff(attempts))


def _stash_down(
    catalog: Catalog, due: list[tuple[int, str, int]], exc: StashError, report: DeliveryReport
) -> None:
    """Stash is down or overloaded: the first file records the failure and backs
    off; the others wait as long, untried."""
    if not due:
        return
    (file_id, path, _), rest = due[0], due[1:]
    attempts = catalog.outbox_attempts(file_id, SINK)
    catalog.outbox_failed(file_id, SINK, str(exc), backoff(attempts))
    catalog.outbox_defer([f for f, _, _ in rest], SINK, time.time() + backoff(attempts))
    report.failed += 1
    report.errors.append((path, str(exc)))
    report.left += len(rest)


class BulkSizer:
    """How many objects one bulk update carries, from how long Stash took.

    Stash runs every object's Scene/Image.Update.Post plugin hooks, one after
    the other, before it answers a bulk update: with slow hooks a 500-object
    update outlasts the timeout although the write goes in. Chunks are sized so
    that the expected time is a third of the timeout."""

    def __init__(self, timeout: float, largest: int = BATCH) -> None:
        self.budget = timeout / 3
        self.largest = largest
        self.size = largest
        self.per_object: float | None = None  # seconds, smoothed

    def answered(self, objects: int, seconds: float) -> None:
        each = seconds / max(objects, 1)
        self.per_object = each if self.per_object is None else 0.5 * (self.per_object + each)
        fits = int(self.budget / self.per_object) if self.per_object > 0 else self.largest
        self.size = max(1, min(self.largest, fits))

    def timed_out(self, objects: int) -> None:
        self.size = max(1, min(self.size, objects) // 2)


class StashWriter:
    def __init__(self, catalog: Catalog, settings: Settings, client: StashClient) -> None:
        self.catalog = catalog
        self.settings = settings
        self.client = client
        self.tags = TagResolver(client, settings.stash.parent_tag)
        self.performers = PerformerResolver(client)
        self.studios = StudioResolver(client)
        self.root = settings.tags.root + "|"
        self.lookup = StashLookup(client, settings)
        self.sizer = BulkSizer(settings.stash.timeout)
        self._kinds: dict[int, str] = {}  # file id -> scene | image

    def prepare(self, file_id: int, path: str, content_id: int | None) -> Pending:
        """Find one file's Stash object and plan its writes (nothing written yet)."""
        where = stash_path(path, self.settings.stash.path_mappings)
        obj = self.lookup.find(self.kind(file_id), where)
        self.lookup.written(obj)  # a second file of this scene must see it fresh
        item = (file_id, path, content_id)
        plan = Plan()
        error = self._error(content_id)
        prefix = self.settings.stash.workflow_prefix
        if error is not None:
            log.warning("stash: %s: could not be analysed: %s", path, error)
            if prefix:
                # Done with it, if not well: Errored replaces TagMe (the log says why).
                plan.add["tag_ids"] = {self.tags.plain(f"{prefix}_Errored")} - obj.tag_ids
                plan.remove["tag_ids"] = {self.tags.plain(f"{prefix}_TagMe")} & obj.tag_ids
            return Pending(item, obj, plan)
        tags = [t for t in self.catalog.tags(content_id or 0) if t.name.startswith(self.root)]
        routed = route(tags, self.settings)  # people/studio tags out when those are on
        self._plan_tags(plan, obj, {self.tags.child(_leaf(t)) for t in routed.tags}, prefix)
        if self.settings.stash.performers:
            self._plan_performers(plan, obj, routed.people)
        if self.settings.stash.studio:
            self._plan_studio(plan, obj, routed.studio)
        scene_markers = obj.kind == "scene" and self.settings.stash.markers
        return Pending(item, obj, plan, routed.tags if scene_markers else None)

    def apply(self, batch: list[Pending]) -> Applied:
        """Send a batch's plans: objects with the same change share one bulk update.

        Recorded before the ADD updates: a lost answer must not turn tagd's
        tag, performer or studio into one that looks like the user's; forgotten
        only once Stash no longer has them (after the REMOVE updates)."""
        result = Applied()
        self._records(batch, forget=False)
        for mode in ("ADD", "REMOVE"):
            groups: dict[str, list[Pending]] = {}
            for pending in batch:
                fields = pending.plan.fields(mode)
                if fields and pending.obj.key not in result.failed:
                    key = json.dumps([pending.obj.kind, fields], sort_keys=True)
                    groups.setdefault(key, []).append(pending)
            for members in groups.values():
                self._bulk(members, mode, result)
        done = [p for p in batch if p.obj.key not in result.failed]
        self._records(done, forget=True)
        for pending in done:
            if pending.markers is None:
                continue
            try:
                if self._sync_markers(pending.obj, pending.markers):
                    result.changed.add(pending.obj.key)
            except STOP:
                raise
            except StashError as exc:
                result.failed[pending.obj.key] = str(exc)
        return result

    # ------------------------------------------------------------ lookups

    def check_markers(self) -> None:
        """Refuse, once, a Stash too old for the markers tagd writes."""
        version = str(self.client.call(VERSION)["version"]["version"] or "")
        problem = markers_problem(version)
        if problem is not None:
            raise StashRefused(problem)

    def kind(self, file_id: int) -> str:
        """Scene or image: asked when sizing the lookup and again when planning."""
        if file_id not in self._kinds:
            video = self.catalog.file_kind(file_id) == "video"
            self._kinds[file_id] = "scene" if video else "image"
        return self._kinds[file_id]

    def _error(self, content_id: int | None) -> str | None:
        if content_id is None:
            return "unreadable file"
        return self.catalog.content_error(content_id)

    # ------------------------------------------------------------ tags, performers, studio

    def _plan_tags(self, plan: Plan, obj: StashObject, wanted: set[str], prefix: str) -> None:
        self._plan_ids(plan, obj.key, "tag_ids", wanted, obj.tag_ids)
        if prefix:
            plan.add["tag_ids"] |= {self.tags.plain(f"{prefix}_Tagged")} - obj.tag_ids
            for name in (f"{prefix}_Errored", f"{prefix}_TagMe"):
                plan.remove["tag_ids"] |= {self.tags.plain(name)} & obj.tag_ids

    def _plan_performers(self, plan: Plan, obj: StashObject, names: list[str]) -> None:
        wanted = {pid for name in names if (pid := self.performers.resolve(name)) is not None}
        # A person skipped as ambiguous still applies: whichever of its
        # performers tagd added earlier stays until the user settles it.
        keep = set().union(*(self.performers.ambiguous.get(n.lower(), ()) for n in names))
        self._plan_ids(plan, obj.key, "performer_ids", wanted, obj.performer_ids, keep)

    def _plan_ids(
        self,
        plan: Plan,
        key: str,
        ids_field: str,
        wanted: set[str],
        present: frozenset[str],
        keep: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Add what is wanted and missing; remove only what tagd added and is no
        longer wanted. Ids already on the object are never recorded as tagd's."""
        ours = self._recorded(ids_field, key)
        add = wanted - present
        stale = ours - wanted - keep
        plan.add[ids_field] = set(add)
        plan.remove[ids_field] = stale & present
        plan.record[ids_field] = set(add)
        plan.forget[ids_field] = stale

    def _plan_studio(self, plan: Plan, obj: StashObject, suggestion: str | None) -> None:
        change = plan_studio(
            obj.studio_id, self._recorded("studio_id", obj.key), suggestion, self.studios.resolve
        )
        plan.record["studio_id"] = set(change.record)
        plan.forget["studio_id"] = set(change.forget)
        if change.write:
            # Setting goes with the ADD update, clearing with the REMOVE one.
            plan.extra["ADD" if change.studio_id else "REMOVE"]["studio_id"] = change.studio_id

    def _records(self, batch: list[Pending], forget: bool) -> None:
        change = self.catalog.stash_forget if forget else self.catalog.stash_record
        with self.catalog.transaction():
            for pending in batch:
                plan = pending.plan
                for ids_field, ids in (plan.forget if forget else plan.record).items():
                    change(ids_field, pending.obj.key, sorted(ids))

    def _recorded(self, ids_field: str, key: str) -> set[str]:
        return self.catalog.stash_recorded(ids_field, key)

    def _bulk(self, members: list[Pending], mode: str, result: Applied) -> None:
        """Bulk*Updates for objects of one kind that get the same change, in
        chunks sized so that each answers well within the timeout."""
        start = 0
        while start < len(members):
            chunk = members[start : start + self.sizer.size]
            began = time.monotonic()
            try:
                self._bulk_chunk(chunk, mode, result)
            except StashTimeout:
                # Stash runs each object's update hooks before it answers: the
                # write may have gone in (it is idempotent). Smaller, then again.
                if len(chunk) == 1:
                    raise
                self.sizer.timed_out(len(chunk))
                continue
            self.sizer.answered(len(chunk), time.monotonic() - began)
            start += len(chunk)

    def _bulk_chunk(self, members: list[Pending], mode: str, result: Applied) -> None:
        kind = members[0].obj.kind
        payload = {"ids": [m.obj.id for m in members], **members[0].plan.fields(mode)}
        try:
            self.client.call(BULK[kind], {"input": payload}, retry_timeouts=False)
        except STOP:
            raise
        except StashError as exc:
            if len(members) == 1:
                result.failed[members[0].obj.key] = str(exc)
                return
            for member in members:  # find the one Stash refuses; the others go through
                self._bulk_chunk([member], mode, result)
            return
        result.changed.update(m.obj.key for m in members)

    # ------------------------------------------------------------ markers

    def _sync_markers(self, obj: StashObject, tags: list[Tag]) -> bool:
        desired: dict[tuple[str, float, float], str] = {}
        for tag in tags:
            tag_id = self.tags.child(_leaf(tag))
            for seg in tag.segments:
                desired.setdefault((tag_id, _t(seg.start), _t(seg.end)), _leaf(tag))
        tracked = self.catalog.stash_markers(obj.id)
        existing = {
            str(m["id"]): (str(m["primary_tag"]["id"]), _t(m["seconds"]), _t(m["end_seconds"]))
            for m in obj.markers
        }
        # Markers deleted in Stash are forgotten (and made again if still wanted).
        for gone in set(tracked) - set(existing):
            self.catalog.forget_stash_marker(gone)
            del tracked[gone]
        # An identical marker not recorded (a create whose answer was lost) is adopted.
        for mid, key in existing.items():
            if mid not in tracked and key in desired and key not in tracked.values():
                self._record_marker(mid, obj.id, key)
                tracked[mid] = key
        keep = {mid for mid, key in tracked.items() if key in desired}
        todo = [key for key in desired if key not in {tracked[m] for m in keep}]
        spare = [mid for mid in tracked if mid not in keep]
        changed = False
        for key in todo:
            tag_id, start, end = key
            reuse = next((m for m in spare if tracked[m][0] == tag_id), None)
            if reuse is not None:
                spare.remove(reuse)
                self.client.call(
                    UPDATE_MARKER,
                    {"input": {"id": reuse, "seconds": start, "end_seconds": end}},
                )
                self._record_marker(reuse, obj.id, key)
            else:
                payload = {
                    "title": desired[key],
                    "seconds": start,
                    "end_seconds": end,
                    "scene_id": obj.id,
                    "primary_tag_id": tag_id,
                }
                created = self.client.call(CREATE_MARKER, {"input": payload})
                self._record_marker(str(created["sceneMarkerCreate"]["id"]), obj.id, key)
            changed = True
        for mid in spare:
            self.client.call(DESTROY_MARKER, {"id": mid})
            self.catalog.forget_stash_marker(mid)
            changed = True
        return changed

    def _record_marker(self, marker_id: str, scene_id: str, key: tuple[str, float, float]) -> None:
        self.catalog.record_stash_marker(marker_id, scene_id, *key)


def _leaf(tag: Tag) -> str:
    return tag.name.rsplit("|", 1)[-1]


def _t(seconds: float | None) -> float:
    # Stash stores float seconds; compare at 10 ms so float noise is no change.
    return round(float(seconds or 0.0), 2)


def summary(report: DeliveryReport) -> str:
    """One line for `tagd scan` and the daemon's log."""
    line = f"stash: {report.written} updated, {report.unchanged} unchanged"
    if report.failed or report.left:
        line += f", {report.failed + report.left} queued for a retry"
        if report.errors:
            line += f" ({report.errors[-1][1]})"
    return line
