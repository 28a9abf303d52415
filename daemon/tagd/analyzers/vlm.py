"""Tags (and captions) from a vision-language model on OpenAI-compatible chat servers.

For each photo, and each sampled video frame at [vlm] video_interval, the
model is asked one question per tag set of [vlm] tags ("which of these
apply"), and for a caption when [vlm] captions is on. Findings: one per label
that applies (score 1.0: an answer, not a probability), and the caption as a
finding whose text is full-text indexed (found by `GET /search`). They become
tags under `AI|VLM` by [tags.vlm]'s rules; video frames merge into time ranges
like every other tag.

It does not run in the analysis lanes: a model of a few billion parameters
takes seconds an image, and every other analyzer would wait. tagd.vlm.ask
runs it after them, on the servers' own schedule (tagd.runtime.endpoints:
measured speed, max_concurrent, fallback). An answer that cannot be read, or
no server up, leaves the file to be asked again at the next scan.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import cv2
import numpy as np

from tagd.analyzers.base import Analyzer, Deferred, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import Settings, VlmSettings
from tagd.policy.labels import group_tags
from tagd.records import Detection, Media, Tag
from tagd.runtime.endpoints import AllDown, EndpointPool
from tagd.runtime.lifecycle import Builtin
from tagd.runtime.manifest import ModelSpec
from tagd.vlm import answers
from tagd.vlm.chat import BadAnswer, ChatClient

if TYPE_CHECKING:
    from tagd.catalog.catalog import Catalog
    from tagd.policy.tags import TagPolicy

NAME = "vlm"
CAPTION = "(caption)"  # the label of a caption finding; its text is the caption
ATTEMPTS = 2  # a garbled answer is asked once more before the file waits
JPEG_QUALITY = 90
T = TypeVar("T")


def version_of(settings: VlmSettings) -> str:
    """What the findings depend on: a change asks every file again."""
    what = {
        "model": settings.model,
        "tags": settings.tags,
        "captions": settings.captions,
        "size": settings.image_size,
        "questions": answers.VERSION,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


class VlmAnalyzer(Analyzer):
    name = NAME

    def __init__(
        self, settings: VlmSettings, pool: EndpointPool[ChatClient], gone: threading.Event
    ) -> None:
        super().__init__(Builtin(NAME, version_of(settings), settings.image_size))
        self.settings = settings
        self.pool = pool
        self.video_interval = settings.video_interval
        self.gone = gone  # set when no server is up: the pass stops

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        return [self._findings(image) for image in images]

    def _findings(self, image: np.ndarray) -> list[Finding]:
        jpeg = self._jpeg(image)
        found: list[Finding] = []
        for labels in self.settings.tags.values():
            question = answers.labels_question(labels)
            applies = self._ask(question, jpeg, partial(answers.read_labels, offered=labels))
            seen = {f.label for f in found}  # a label in two sets is one finding
            found += [Finding(label, 1.0) for label in applies if label not in seen]
        if self.settings.captions:
            caption = self._ask(answers.CAPTION_QUESTION, jpeg, answers.read_caption)
            found.append(Finding(CAPTION, 1.0, text=caption))
        return found

    def _jpeg(self, image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        scale = self.settings.image_size / max(h, w)
        if scale < 1:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise Deferred("cannot encode the image as JPEG")
        return data.tobytes()

    def _ask(self, question: str, jpeg: bytes, read: Callable[[str], T]) -> T:
        """The answer, read; asked again once when it cannot be read."""
        model = self.settings.model
        wanted = answers.messages(question, jpeg)
        problem = ""
        for _ in range(ATTEMPTS):
            try:
                text = self.pool.run(
                    model,
                    "",
                    len(jpeg),
                    lambda c: c.complete(model, wanted, self.settings.max_tokens),
                )
                return read(text)
            except BadAnswer as exc:
                problem = str(exc)
            except AllDown as exc:
                self.gone.set()
                raise Deferred(str(exc)) from None
        raise Deferred(f"{problem} (asked {ATTEMPTS} times; asked again at the next scan)")


def derive(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    labels = [d for d in detections if d.text is None]
    return group_tags(policy, policy.settings.vlm, labels, media, NAME)


def export(catalog: Catalog, content_id: int) -> dict[str, Any]:
    found = catalog.detections(content_id, NAME)

    def at(d: Detection) -> dict[str, float]:
        return {"t": d.t} if d.t is not None else {}

    return {
        "labels": [{"label": d.label} | at(d) for d in found if d.text is None],
        "captions": [{"text": d.text} | at(d) for d in found if d.text],
    }


def _not_in_the_lanes(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> None:
    """Never built for the analysis lanes: tagd.vlm.ask runs it after them."""
    return None


PLUGIN = AnalyzerPlugin(
    name=NAME,
    rank=80,
    section="vlm",
    build=_not_in_the_lanes,
    derive=derive,
    export_key="vlm",
    export=export,
)
