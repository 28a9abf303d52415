"""Analyze what the catalog says is pending: decode in threads, infer in batches.

Decoding (libjpeg, PyAV) and inference (onnxruntime) both release the GIL,
so worker threads decode the next photos while the main thread runs the
models on the current batch, and both cores stay busy. Each batch's results,
errors and derived tags are committed in one transaction: a killed process
loses at most the batch in flight and never leaves half of one behind.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tagd import raw_pairs
from tagd.analyzers import registry
from tagd.analyzers.base import Analyzer, Deferred, Finding
from tagd.analyzers.taught import NAME as TAUGHT
from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.media import thumbnail
from tagd.media.files import NotRegularFile, open_regular
from tagd.media.image import DecodeError, decode_image
from tagd.media.sniff import describe, kind_of_format, sniff
from tagd.policy.apply import derive_and_queue
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, WorkItem
from tagd.runtime.backends import cpu_threads, inference_lanes
from tagd.runtime.manifest import load_manifest, prefer_engine
from tagd.runtime.unmade import unmade

SINKS_KEY = "derived_with"
log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """One work item after decoding: frames to analyse, or the reason there are none."""

    item: WorkItem
    kind: str = "image"
    frames: list[np.ndarray] = field(default_factory=list)
    times: list[float | None] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    width: int = 0
    height: int = 0
    duration: float | None = None
    error: str | None = None
    interval: float | None = None  # videos: seconds between the sampled frames


# A batch's files still as indexed, and each analyzer's findings per file per frame.
Inferred = tuple[list["Loaded"], dict[str, "list[list[list[Finding]]] | Deferred"]]


@dataclass
class AnalyzeReport:
    done: int = 0
    failed: int = 0
    frames: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Files that changed while they were analysed (still being copied?): nothing
    # recorded, they stay pending for the next scan.
    unsettled: list[str] = field(default_factory=list)
    # (path, "analyzer: why") of analyses put off to the next scan (analyzers.base.Deferred).
    deferred: list[tuple[str, str]] = field(default_factory=list)


def _first_done(
    inflight: deque[tuple[list[Loaded], Future[Inferred]]],
) -> tuple[list[Loaded], Future[Inferred]]:
    """Take the oldest batch whose models are done (waiting for one if none is)."""
    wait([future for _, future in inflight], return_when=FIRST_COMPLETED)
    for index, (_, future) in enumerate(inflight):
        if future.done():
            entry = inflight[index]
            del inflight[index]
            return entry
    raise AssertionError("wait() returned with no batch done")  # pragma: no cover


def build_analyzers(settings: Settings, models_dir: Path) -> list[Analyzer]:
    """The enabled analyzers (tagd.analyzers.registry), each with its (not yet loaded)
    models; those `usable_analyzers` turns off are left out."""
    return usable_analyzers(settings, models_dir)[0]


def usable_analyzers(settings: Settings, models_dir: Path) -> tuple[list[Analyzer], dict[str, str]]:
    """(the enabled analyzers that can run, name -> why for those that stay off):
    off is an analyzer whose model `tagd models fetch` could not make here
    (tagd.runtime.unmade)."""
    specs = prefer_engine(load_manifest(models_dir), settings.runtime.backend)
    built = registry.build_analyzers(settings, specs, models_dir)
    notes = unmade(models_dir)
    off = {
        a.name: f"off until its model is made: {notes[m.spec.family]}"
        for a in built
        for m in a.models
        if m.spec.family in notes and not (models_dir / m.spec.file).is_file()
    }
    return [a for a in built if a.name not in off], off


def analyzer_shas(settings: Settings, models_dir: Path) -> dict[str, str]:
    """analyzer name -> model sha256 of the enabled analyzers (no model is loaded):
    what tells a file analysed with today's models (ok) from one to redo (pending)."""
    return {a.name: a.model_sha256 for a in build_analyzers(settings, models_dir)}


class Pipeline:
    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        analyzers: Sequence[Analyzer],
        prefixes: Sequence[str] = (),
        thumbnails: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.prefixes = list(prefixes)
        # Where previews of what is decoded go (tagd.media.thumbnail); None: none.
        self.thumbnails = thumbnails
        self.settings = settings
        self.analyzers = list(analyzers)
        self.policy = TagPolicy(settings.tags)
        self.min_long_side = max((a.min_long_side for a in self.analyzers), default=0)
        self.shas = {a.name: a.model_sha256 for a in self.analyzers}
        # Model calls of one large batch (a video's frames) run side by side here.
        self._chunk_pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ tags

    def sinks(self) -> list[str]:
        from tagd.sinks.select import enabled_sinks

        return enabled_sinks(self.settings)

    def rederive_if_policy_changed(self) -> int:
        """Re-derive every tag when the tag rules or sinks changed; returns files queued."""
        xmp = self.settings.xmp
        key = f"{self.policy.fingerprint}:{self.sinks()}:{xmp.sidecar}:{xmp.faces}"
        # Turning Stash performers/studio on or off moves tags to or from them
        # in every file. Appended only when on, so catalogs that never used them
        # keep their key (and are not all queued again by this upgrade).
        stash = self.settings.stash
        key += "".join(f":{name}" for name in ("performers", "studio") if getattr(stash, name))
        if self.catalog.get_meta(SINKS_KEY) == key:
            return 0
        with self.catalog.transaction():
            work: dict[int, list[str]] = {}
            # Taught tags' scores are stored like an analyzer's (tagd.teach).
            for name in [a.name for a in self.analyzers] + [TAUGHT]:
                for cid in self.catalog.analysed_contents(name):
                    work.setdefault(cid, []).append(name)
            # Every analysed file is written again, changed tags or not: the sinks'
            # own settings are part of the key.
            queued = derive_and_queue(self.catalog, self.policy, self.sinks(), work, queue_all=True)
            self.catalog.set_meta(SINKS_KEY, key)
        return len(queued)

    # ------------------------------------------------------------ analysis

    def pending_count(self) -> int:
        return self.catalog.pending_count(self.shas, self.prefixes)

    def run(
        self,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        turn: Callable[[], AbstractContextManager[None]] = nullcontext,
        lanes: int | None = None,
        decoders: ThreadPoolExecutor | None = None,
    ) -> AnalyzeReport:
        """Analyse what is pending: `lanes` batches at once (default runtime.lanes,
        see tagd.runtime.backends.inference_lanes). `turn()` is held around each
        batch's inference: the analysis process lets on-demand requests in
        between. One lane runs the models in this thread. `decoders`: a decode
        pool the caller keeps (on-demand batches of a file or two would start and
        join its threads every time); by default one made for this run."""
        report = AnalyzeReport()
        if not self.analyzers:
            return report
        start = time.perf_counter()
        workers = cpu_threads(self.settings.decode.workers)
        lanes = lanes or inference_lanes(self.settings.runtime)
        seen: set[int] = set()
        with contextlib.ExitStack() as pools:
            pool = decoders or pools.enter_context(
                ThreadPoolExecutor(workers, thread_name_prefix="decode")
            )
            infer: ThreadPoolExecutor | None = None
            if lanes > 1:
                infer = pools.enter_context(ThreadPoolExecutor(lanes, thread_name_prefix="infer"))
                self._chunk_pool = pools.enter_context(
                    ThreadPoolExecutor(lanes, thread_name_prefix="chunk")
                )
                pools.callback(setattr, self, "_chunk_pool", None)
            while not (stop and stop.is_set()):
                batch = self.catalog.pending(self.shas, 512, self.prefixes)
                items = [i for i in batch if i.content_id not in seen]
                if not items:
                    break
                # RAWs whose JPEG is in this batch wait for it (and are not seen yet).
                items = self._pair_raws(items, report, progress)
                seen.update(i.content_id for i in items)
                if not items:
                    continue
                # Decode ahead of every lane, so workers keep going while models run.
                depth = self.settings.runtime.batch_size + 2 * workers
                loaded = _prefetch(pool, self.load, items, depth=depth)
                # Each lane runs the models on a batch; this thread saves them as they
                # come (one catalog connection, one transaction per batch): a batch
                # that takes long (a slow inference server) holds up no other lane.
                inflight: deque[tuple[list[Loaded], Future[Inferred]]] = deque()
                for batch in self._batches(loaded):
                    if infer is not None:
                        inferred = infer.submit(self._infer_batch, batch, turn)
                    else:
                        inferred = Future()
                        inferred.set_result(self._infer_batch(batch, turn))
                    inflight.append((batch, inferred))
                    if len(inflight) >= lanes:
                        self._finish(*_first_done(inflight), report, stop, progress)
                    if stop and stop.is_set():
                        break
                while inflight:
                    self._finish(*_first_done(inflight), report, stop, progress)
        report.seconds = time.perf_counter() - start
        return report

    def _pair_raws(
        self,
        items: list[WorkItem],
        report: AnalyzeReport,
        progress: Callable[[int], None] | None,
    ) -> list[WorkItem]:
        """The items to decode: a RAW whose JPEG partner is analysed takes a copy
        of its findings instead (tagd.raw_pairs); one whose partner is among
        `items` is left out, to come back once the partner is done."""
        if not any(raw_pairs.is_raw_name(i.path) for i in items):
            return items
        paths = {i.path for i in items}
        out = []
        for item in items:
            partner = (
                raw_pairs.partner_of(self.catalog, item.path)
                if raw_pairs.is_raw_name(item.path)
                else None
            )
            if partner is None or partner.content_id is None:
                out.append(item)
            elif partner.path in paths:
                continue  # analysed first; this RAW comes back in the next round
            elif self._copy_partner(item, partner.content_id):
                report.done += 1
                if progress:
                    progress(1)
            else:
                out.append(item)
        return out

    def _copy_partner(self, item: WorkItem, partner: int) -> bool:
        with self.catalog.transaction():
            if not raw_pairs.copy_findings(self.catalog, self.analyzers, item, partner):
                return False
            names = [a.name for a in self.analyzers]
            derive_and_queue(self.catalog, self.policy, self.sinks(), {item.content_id: names})
        return True

    def _infer_batch(
        self, batch: list[Loaded], turn: Callable[[], AbstractContextManager[None]]
    ) -> Inferred:
        """The models' findings for a batch (in an inference lane). `turn()` is held
        around them: the analysis process lets on-demand requests in between."""
        # A file changed since it was indexed is not worth a model's time.
        steady = [loaded for loaded in batch if _as_indexed(loaded.item) is not None]
        with turn():
            return steady, {a.name: self._infer_or_defer(a, steady) for a in self.analyzers}

    def _infer_or_defer(
        self, analyzer: Analyzer, batch: list[Loaded]
    ) -> list[list[list[Finding]]] | Deferred:
        try:
            return self._infer(analyzer, batch)
        except Deferred as exc:
            return exc

    def _finish(
        self,
        batch: list[Loaded],
        inferred: Future[Inferred],
        report: AnalyzeReport,
        stop: threading.Event | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        steady, findings = inferred.result()
        settled = self._settled(steady, stop)
        with self.catalog.transaction():
            for index, loaded in enumerate(steady):
                if id(loaded) in settled:
                    own = {
                        name: f if isinstance(f, Deferred) else f[index]
                        for name, f in findings.items()
                    }
                    self._save(loaded, own, report)
        report.unsettled += [x.item.path for x in batch if id(x) not in settled]
        if progress:
            progress(len(batch))

    def _batches(self, loaded: Iterable[Loaded]) -> Iterator[list[Loaded]]:
        """Group items until the batch holds batch_size frames (videos count per frame)."""
        batch: list[Loaded] = []
        frames = 0
        for item in loaded:
            batch.append(item)
            frames += len(item.frames)
            if frames >= self.settings.runtime.batch_size:
                yield batch
                batch, frames = [], 0
        if batch:
            yield batch

    def load(self, item: WorkItem) -> Loaded:
        """Read and decode one file, and keep a preview of it (runs in a worker
        thread, beside the models; never raises)."""
        loaded = self._decode(item)
        folder = self.thumbnails
        if folder is not None and loaded.frames:
            try:
                thumbnail.save(folder, item.content_id, loaded.frames[len(loaded.frames) // 2])
            except (OSError, ValueError, cv2.error) as exc:
                self._no_previews(item.path, exc)
        return loaded

    def _no_previews(self, path: str, exc: Exception) -> None:
        """A preview is a convenience: the analysis goes on without it, and, when the
        state dir cannot take them (full, read-only), without the rest of this run's
        (said once; a full disk is reported by the catalog as well)."""
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            if self.thumbnails is not None:
                self.thumbnails = None
                log.debug("no previews for the rest of this scan: %s", exc.strerror)
            return
        log.warning("%s: no preview: %s", path, exc)

    def _decode(self, item: WorkItem) -> Loaded:
        try:
            with open_regular(item.path) as fh:
                head = fh.read(64)
                fmt = sniff(head)
                kind = kind_of_format(fmt)
                if kind == "image":
                    return self._load_image(item, head + fh.read())
            if kind == "video":
                return self._load_video(item)
            if not head:
                return Loaded(item, item.kind, error="zero-byte file")
            return Loaded(
                item, item.kind, error=f"not a supported image or video ({describe(head)})"
            )
        except NotRegularFile:
            return Loaded(item, item.kind, error="not a regular file")
        except OSError as exc:
            return Loaded(item, item.kind, error=f"cannot read: {exc.strerror or exc}")
        except DecodeError as exc:
            return Loaded(item, item.kind, error=str(exc))
        except MemoryError:
            return Loaded(item, item.kind, error="not enough memory to decode")

    def _load_image(self, item: WorkItem, data: bytes) -> Loaded:
        decoded = decode_image(
            data,
            min_long_side=self.min_long_side,
            reduced=self.settings.decode.reduced,
            max_pixels=self.settings.decode.max_pixels,
            name=item.path,
        )
        return Loaded(
            item,
            "image",
            [decoded.image],
            [None],
            [decoded.scale],
            decoded.width,
            decoded.height,
        )

    def _load_video(self, item: WorkItem) -> Loaded:
        from tagd.media.video import VideoError, probe_video, sample_frames

        try:
            info = probe_video(Path(item.path))
            interval = video_interval(
                info.duration,
                self.settings.decode.video_interval,
                self.settings.decode.video_max_frames,
            )
            frames = list(
                sample_frames(
                    Path(item.path),
                    interval,
                    min_long_side=self.min_long_side,
                    max_frames=self.settings.decode.video_max_frames,
                )
            )
        except VideoError as exc:
            return Loaded(item, "video", error=str(exc))
        return Loaded(
            item,
            "video",
            [f.image for f in frames],
            [f.t for f in frames],
            [info.width / f.image.shape[1] for f in frames],
            info.width,
            info.height,
            info.duration,
            interval=interval,
        )

    def _settled(self, batch: list[Loaded], stop: threading.Event | None) -> set[int]:
        """ids of the items whose file is still as indexed, and has been for
        library.settle_seconds. A file changed more recently may still be being
        copied: wait until the newest is that old (at most settle_seconds, as the
        watcher waits for quiet) and look again. The others are not recorded
        (neither ok nor an error) and stay pending."""
        window = self.settings.library.settle_seconds
        settled: set[int] = set()
        fresh: dict[int, float] = {}
        for loaded in batch:
            mtime = _as_indexed(loaded.item)
            if mtime is None:
                continue
            # A future mtime (a share's clock ahead) says nothing once past the window.
            if abs(time.time() - mtime) < window:
                fresh[id(loaded)] = mtime
            else:
                settled.add(id(loaded))
        if not fresh:
            return settled
        delay = min(window, max(fresh.values()) + window - time.time())
        if delay > 0 and (stop.wait(delay) if stop is not None else time.sleep(delay)):
            return settled  # stopping: a later run analyses them
        by_id = {id(loaded): loaded for loaded in batch}
        settled.update(i for i in fresh if _as_indexed(by_id[i].item) is not None)
        return settled

    def _infer(self, analyzer: Analyzer, batch: list[Loaded]) -> list[list[list[Finding]]]:
        """Findings per item per frame, running the model batch_size frames at a time."""
        chosen = [_frames_for(analyzer, loaded) for loaded in batch]
        frames = [loaded.frames[i] for loaded, idx in zip(batch, chosen, strict=True) for i in idx]
        size = self.settings.runtime.batch_size
        chunks = [frames[start : start + size] for start in range(0, len(frames), size)]
        flat: list[list[Finding]] = []
        # A video is one batch of many frames: its model calls share the lanes'
        # cores too, or one long video would leave all but one core idle.
        pool = self._chunk_pool
        runs = (
            pool.map(analyzer.analyze, chunks)
            if pool and len(chunks) > 1
            else map(analyzer.analyze, chunks)
        )
        for found in runs:
            flat.extend(found)
        out, pos = [], 0
        for loaded, idx in zip(batch, chosen, strict=True):
            per_frame: list[list[Finding]] = [[] for _ in loaded.frames]
            for i in idx:
                per_frame[i] = flat[pos]
                pos += 1
            out.append(per_frame)
        return out

    def _face_previews(self, loaded: Loaded, cid: int) -> None:
        """A preview of each face just stored, cut from the decoded frame."""
        folder = self.thumbnails
        if folder is None:
            return
        for face in self.catalog.detections(cid, "faces"):
            index = _frame_of(loaded, face.t)
            if face.id is None or face.box is None or index is None:
                continue
            scale = loaded.scales[index]  # stored boxes are in the original's pixels
            x0, y0, x1, y1 = (v / scale for v in face.box)
            try:
                thumbnail.save_face(folder, face.id, loaded.frames[index], (x0, y0, x1, y1))
            except (OSError, ValueError, cv2.error) as exc:
                self._no_previews(loaded.item.path, exc)
                if self.thumbnails is None:
                    return

    def _save(
        self,
        loaded: Loaded,
        findings: dict[str, list[list[Finding]] | Deferred],
        report: AnalyzeReport,
    ) -> None:
        cid = loaded.item.content_id
        if loaded.error or not loaded.frames:
            reason = loaded.error or "no frame could be decoded"
            self.catalog.set_content_error(cid, reason)
            report.failed += 1
            report.errors.append((loaded.item.path, reason))
            return
        self.catalog.set_media_info(
            cid,
            kind=loaded.kind,
            width=loaded.width,
            height=loaded.height,
            duration=loaded.duration,
            interval=loaded.interval,
        )
        names = []
        for analyzer in self.analyzers:
            per_frame = findings[analyzer.name]
            if isinstance(per_frame, Deferred):
                # Nothing stored: this analyzer looks at the file again next scan.
                report.deferred.append((loaded.item.path, f"{analyzer.name}: {per_frame}"))
                continue
            names.append(analyzer.name)
            detections = [
                _detection(f, t, scale)
                for frame, t, scale in zip(per_frame, loaded.times, loaded.scales, strict=True)
                for f in frame
            ]
            analyzer.save(self.catalog, cid, detections, per_frame)
            if loaded.kind == "video" and analyzer.video_interval > 0:
                self.catalog.set_analysis_interval(
                    cid, analyzer.name, _picked_interval(analyzer, loaded)
                )
        if not names:
            return
        if self.thumbnails is not None and "faces" in names:
            self._face_previews(loaded, cid)
        derive_and_queue(self.catalog, self.policy, self.sinks(), {cid: names})
        report.done += 1
        report.frames += len(loaded.frames)


def _frame_of(loaded: Loaded, t: float | None) -> int | None:
    try:
        return loaded.times.index(t)
    except ValueError:
        return None


def video_interval(duration: float | None, interval: float, max_frames: int) -> float:
    """Seconds between sampled frames: decode.video_interval, widened for long videos
    so video_max_frames frames cover the whole video rather than its first minutes
    (time ranges and the whole-file tag must speak for the whole video). Stored with
    the content: the tag policy turns hits into ranges with it."""
    if duration and duration > interval * max_frames:
        return duration / max_frames
    return interval


def _frames_for(analyzer: Analyzer, loaded: Loaded) -> list[int]:
    """Indices of the frames an analyzer looks at: all, or spaced by its video_interval."""
    if loaded.kind == "video" and not analyzer.videos:
        return []
    if loaded.kind != "video" or analyzer.video_interval <= 0:
        return list(range(len(loaded.frames)))
    picked: list[int] = []
    last = float("-inf")
    for i, t in enumerate(loaded.times):
        if t is None or t - last >= analyzer.video_interval - 1e-6:
            picked.append(i)
            last = t if t is not None else last
    return picked


def _picked_interval(analyzer: Analyzer, loaded: Loaded) -> float:
    """Seconds between the frames `analyzer` looked at in a video (see _frames_for):
    their typical spacing, at least the analyzer's own interval."""
    times = [loaded.times[i] for i in _frames_for(analyzer, loaded)]
    steps = [b - a for a, b in itertools.pairwise(t for t in times if t is not None)]
    spacing = statistics.median(steps) if steps else 0.0
    return round(max(spacing, analyzer.video_interval, loaded.interval or 0.0), 6)


def _detection(f: Finding, t: float | None, scale: float) -> Detection:
    """A finding in the decoded image's pixels, as a detection in the original's."""
    box = None
    if f.box is not None:
        x0, y0, x1, y1 = (round(v * scale, 1) for v in f.box)
        box = (x0, y0, x1, y1)
    points = tuple(round(v * scale, 1) for v in f.points)
    return Detection(f.label, round(f.score, 5), box, t, f.text, points, f.vector)


def _prefetch(
    pool: ThreadPoolExecutor,
    fn: Callable[[WorkItem], Loaded],
    items: Sequence[WorkItem],
    depth: int,
) -> Iterator[Loaded]:
    """Results of fn over items, in order, with at most `depth` decodes in flight."""
    pending: deque[Future[Loaded]] = deque()
    queue = iter(items)
    for item in queue:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            break
    while pending:
        result = pending.popleft().result()
        for item in queue:
            pending.append(pool.submit(fn, item))
            break
        yield result


def _as_indexed(item: WorkItem) -> float | None:
    """The file's mtime (seconds) when its size and mtime are still those the index
    recorded (no catalog query: the work item carries them), else None (changed
    since, or gone)."""
    try:
        st = os.stat(item.path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        return -math.inf  # cannot look (permissions): reading it says why
    if item.size is not None and (item.size, item.mtime_ns) != (st.st_size, st.st_mtime_ns):
        return None
    return st.st_mtime
