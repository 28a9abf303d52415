"""A model run on KServe v2 inference servers: the same Session as a local one.

The analyzers keep their pre- and post-processing here; only the network call
moves. Its inputs and outputs are read from the local file (checked against
the manifest's sha256 like any model), so the outputs come back in the order
the analyzer expects whatever order a server lists them in, and the server is
asked for the version named after that same sha256.

Image inputs go as uint8 pixels to the model's "-pixels" twin where the
analyzer says how its floats come from pixels and the servers have the twin
(tagd.runtime.pixels): a quarter of the bytes.

When no server can run the model, the batch runs on this machine's CPU
(runtime.local_fallback), or the call raises ModelError and the scan stops
without storing anything for the files in flight: they wait for the next scan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tagd.runtime.backends import Session
from tagd.runtime.endpoints import AllDown, EndpointPool
from tagd.runtime.kserve import KServeClient, ModelMissing, Tensor, model_version, wire_bytes
from tagd.runtime.manifest import ModelError, ModelSpec
from tagd.runtime.pixels import OFFSET, PIXELS, SCALE, SUFFIX, Affine
from tagd.runtime.repository import model_io

log = logging.getLogger(__name__)


class RemoteSession:
    engine = "remote"

    def __init__(
        self,
        spec: ModelSpec,
        path: Path,
        pool: EndpointPool,
        local: Callable[[], Session] | None,
        pixels: Affine | None = None,
    ) -> None:
        self.name = spec.name
        self.pixels = pixels
        self.version = model_version(spec.sha256)
        self.pool = pool
        try:
            inputs, outputs = model_io(path)
        except Exception as exc:  # the engines raise their own untyped errors
            raise ModelError(f"cannot read the inputs and outputs of {path}: {exc}") from None
        self.input_name = inputs[0].name
        self.input_shape: tuple[int | str | None, ...] = tuple(
            None if d < 0 else d for d in inputs[0].dims
        )
        self.outputs = [t.name for t in outputs]
        # Outputs whose first axis is the batch: an answer must have a row per input.
        self._batched = [t.dims[:1] == (-1,) and self.input_shape[:1] == (None,) for t in outputs]
        self._ranks = [len(t.dims) for t in outputs]
        self._make_local = local
        self._local: Session | None = None
        self._local_lock = threading.Lock()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        rows = int(batch.shape[0]) if batch.ndim else 1
        twin = self.name + SUFFIX
        # Converted only when a server may have the twin: once every server said it
        # lacks it, batches go as floats with no conversion tried first.
        if self.pixels is not None and self.pool.can_run(twin, self.version):
            levels = self.pixels.to_pixels(batch)
            if levels is not None:
                scale, offset = self.pixels.tensors(rows)
                wired = [Tensor(PIXELS, levels), Tensor(SCALE, scale), Tensor(OFFSET, offset)]
                try:
                    return self._remote(twin, wired, rows)
                except AllDown:
                    pass  # no server has the twin after all (or none is up): the floats
        try:
            return self._remote(self.name, [Tensor(self.input_name, batch)], rows)
        except AllDown as exc:
            return self._fallback(str(exc)).run(batch)

    def _remote(self, model: str, inputs: list[Tensor], rows: int) -> list[np.ndarray]:
        def call(client: KServeClient) -> list[np.ndarray]:
            arrays = client.infer(model, self.version, inputs, self.outputs)
            self._check(client.url, arrays, rows)
            return arrays

        return self.pool.run(model, self.version, wire_bytes(inputs), call)

    def _check(self, url: str, arrays: list[np.ndarray], rows: int) -> None:
        """A garbled answer is the server's fault: another server gets the batch."""
        for name, array, rank, batched in zip(
            self.outputs, arrays, self._ranks, self._batched, strict=True
        ):
            if array.ndim != rank or (batched and array.shape[0] != rows):
                raise ModelMissing(
                    f"{url} answered {self.name} with {name} of shape {array.shape} "
                    f"for {rows} inputs"
                )

    def _fallback(self, why: str) -> Session:
        if self._make_local is None:
            raise ModelError(
                f"{why}; runtime.local_fallback = false, so the files wait for the next scan"
            )
        with self._local_lock:
            if self._local is None:
                log.warning("%s: running %s on this machine's CPU meanwhile", why, self.name)
                self._local = self._make_local()
            return self._local
