"""The lifecycle every model shares: verified lazy load, use, unload when idle.

A NAS has little memory, so a session exists only while it is used: it is
created on the first `session()` call and dropped by `unload_if_idle()` once
nobody used it for `idle_unload` seconds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagd.config import RuntimeSettings
from tagd.runtime.backends import Session, inference_lanes, model_threads, open_session
from tagd.runtime.manifest import ModelError, ModelSpec, verified_path

if TYPE_CHECKING:
    from tagd.runtime.endpoints import EndpointPool
    from tagd.runtime.pixels import Affine


class ManagedModel:
    def __init__(
        self,
        spec: ModelSpec,
        models_dir: Path,
        *,
        backend: str,
        threads: int,
        idle_unload: float,
        spin: bool = False,
        streams: int = 1,
        remote: EndpointPool | None = None,
        local_fallback: bool = True,
    ) -> None:
        self.spec = spec
        self.models_dir = models_dir
        self.backend = backend
        self.threads = threads
        self.idle_unload = idle_unload
        self.spin = spin
        self.streams = streams  # callers running it at once (the inference lanes)
        self.remote = remote  # the inference servers that run it, if not this machine
        self.local_fallback = local_fallback  # run here when every server is down
        # How the input's floats come from 8-bit pixels, when they do: set by the
        # analyzer; inference servers then get uint8 (tagd.runtime.pixels).
        self.pixels: Affine | None = None
        self._session: Session | None = None
        self._lock = threading.Lock()
        self._last_used = 0.0

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def check(self) -> Path:
        """Verify the file without loading it (raises ModelError with the fix)."""
        return verified_path(self.spec, self.models_dir)

    def session(self) -> Session:
        with self._lock:
            if self._session is None:
                self._session = self._open(self.check())
            self._last_used = time.monotonic()
            return self._session

    def _open(self, path: Path) -> Session:
        def local() -> Session:
            backend = "auto" if self.remote is not None else self.backend
            return open_session(path, backend, self.threads, spin=self.spin, streams=self.streams)

        if self.remote is None:
            return local()
        from tagd.runtime.remote import RemoteSession

        fallback = local if self.local_fallback else None
        return RemoteSession(self.spec, path, self.remote, fallback, pixels=self.pixels)

    def unload(self) -> None:
        with self._lock:
            self._session = None

    def unload_if_idle(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._session is not None and now - self._last_used >= self.idle_unload:
                self._session = None
                return True
        return False


def model_for(
    spec: ModelSpec, models_dir: Path, runtime: RuntimeSettings, spin: bool = False
) -> ManagedModel:
    """A model configured from the [runtime] settings."""
    return ManagedModel(
        spec,
        models_dir,
        backend=runtime.backend,
        threads=model_threads(runtime),
        idle_unload=runtime.idle_unload,
        # Spinning workers only pay while one batch has the cores to itself.
        spin=spin and inference_lanes(runtime) == 1,
        streams=inference_lanes(runtime),
        remote=remote_pool(runtime),
        local_fallback=runtime.local_fallback,
    )


def remote_pool(runtime: RuntimeSettings) -> EndpointPool | None:
    """The inference servers of backend = "remote" (None for the local engines)."""
    if runtime.backend != "remote":
        return None
    from tagd.runtime.endpoints import pool_for

    return pool_for(runtime)


def batched_options(runtime: RuntimeSettings) -> dict[str, Any]:
    """The [runtime] keyword arguments of the wrappers that batch their own inputs
    (CLIP, DINOv2, face embeddings)."""
    return {
        "backend": runtime.backend,
        "threads": model_threads(runtime),
        "streams": inference_lanes(runtime),
        "idle_unload": runtime.idle_unload,
        "batch_size": runtime.batch_size,
        "remote": remote_pool(runtime),
        "local_fallback": runtime.local_fallback,
    }


def require_task(spec: ModelSpec, task: str) -> None:
    if spec.task != task:
        raise ModelError(f"model {spec.name!r} is a {spec.task} model, not a {task} model")


class HoldsModel:
    """Lifecycle of a runtime class built around one ManagedModel (`self.model`)."""

    model: ManagedModel
    spec: ModelSpec

    def check(self) -> None:
        self.model.check()

    @property
    def loaded(self) -> bool:
        return self.model.loaded

    def unload(self) -> None:
        self.model.unload()

    def unload_if_idle(self, now: float | None = None) -> bool:
        return self.model.unload_if_idle(now)
