"""Which inference server runs the next request: health, speed and load.

Every remote model of a process shares one pool, so the in-flight count of a
server is its real load. A request goes to the usable server that would
finish it first: (requests in flight there + 1) x that server's measured time
per request for this model. Each server's time is measured from its own
answers, so work follows speed, not only the configured weight (the weight is
the prior until a server has answered). When every server holds its
`max_concurrent` requests, the next one waits for a slot: slots free up at
each server's own pace, which again shares work in proportion to speed.

A server that fails to answer is down for a while (backoff doubling to a
minute) and is asked whether it is ready before it gets work again. A server
that lacks a model is skipped for that model only. Fallback servers take work
only while every other server is down.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from tagd.config import RuntimeSettings
from tagd.runtime.kserve import EndpointDown, KServeClient, ModelMissing

T = TypeVar("T")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
MISSING_RECHECK = 300.0  # seconds before a server that lacked a model is asked again
SMOOTHING = 0.3  # weight of the newest measurement in the moving average


class ServerClient(Protocol):
    """What the pool needs of a server's client (KServeClient; the VLM's ChatClient)."""

    url: str

    def ready(self, model: str, version: str) -> None:
        """Raise EndpointDown or ModelMissing unless it serves this model now."""


C = TypeVar("C", bound=ServerClient)


@dataclass
class Endpoint(Generic[C]):
    url: str
    weight: float
    max_concurrent: int
    fallback: bool
    client: C
    in_flight: int = 0
    down_until: float = 0.0  # monotonic time; 0: up
    backoff: float = 0.0
    last_error: str = ""
    checked: set[str] = field(default_factory=set)  # model/version known ready
    missing: dict[str, float] = field(default_factory=dict)  # model/version -> recheck time
    seconds: dict[str, float] = field(default_factory=dict)  # model -> time per request
    # Bytes of input tensors sent, by model (what crosses the network, framing aside).
    sent: Counter[str] = field(default_factory=Counter)

    def up(self, now: float) -> bool:
        return self.down_until <= now


class AllDown(RuntimeError):
    """No server can take this model now."""


class EndpointPool(Generic[C]):
    def __init__(self, endpoints: list[Endpoint[C]]) -> None:
        self.endpoints = endpoints
        self._cond = threading.Condition()

    def can_run(self, model: str, version: str) -> bool:
        """Whether some server may take this model now (not all down or lacking it)."""
        with self._cond:
            return self._candidates(f"{model}/{version}", time.monotonic()) is not None

    def run(self, model: str, version: str, sent: int, call: Callable[[C], T]) -> T:
        """`call` on the server that would finish first, again on another one when
        a server fails; raises AllDown when none is left for this model."""
        key = f"{model}/{version}"
        while True:
            endpoint = self._acquire(model, key)
            ahead = endpoint.in_flight - 1
            try:
                if key not in endpoint.checked:
                    endpoint.client.ready(model, version)
                    endpoint.checked.add(key)
                started = time.monotonic()
                result = call(endpoint.client)
            except EndpointDown as exc:
                self._release(endpoint, failed=str(exc))
                continue
            except ModelMissing as exc:
                self._release(endpoint, missing=(key, str(exc)))
                continue
            except BaseException:
                self._release(endpoint)
                raise
            self._release(endpoint, model=model, seconds=time.monotonic() - started,
                          ahead=ahead, sent=sent)  # fmt: skip
            return result

    def _acquire(self, model: str, key: str) -> Endpoint[C]:
        with self._cond:
            while True:
                now = time.monotonic()
                candidates = self._candidates(key, now)
                if candidates is None:
                    raise AllDown(self._why(key))
                free = [e for e in candidates if e.in_flight < e.max_concurrent]
                if free:
                    best = min(free, key=lambda e: (e.in_flight + 1) * self._cost(e, model))
                    best.in_flight += 1
                    return best
                # Every usable server is full: wait for a slot (or a server's return).
                self._cond.wait(timeout=self._next_change(now))

    def _candidates(self, key: str, now: float) -> list[Endpoint[C]] | None:
        """The servers that may take this model now (None: nobody can, or will soon)."""
        able = [e for e in self.endpoints if e.missing.get(key, 0.0) <= now]
        for e in able:
            e.missing.pop(key, None)
        primary = [e for e in able if not e.fallback]
        for group in (primary, [e for e in able if e.fallback]):
            up = [e for e in group if e.up(now)]
            if up:
                return up
        return None

    def _next_change(self, now: float) -> float:
        waits = [e.down_until - now for e in self.endpoints if e.down_until > now]
        return max(0.05, min(waits, default=1.0))

    def _cost(self, endpoint: Endpoint[C], model: str) -> float:
        """Seconds per request for this model: measured, else the others' measure
        scaled by the weights, else the weight alone (unmeasured servers go first,
        which measures them)."""
        if model in endpoint.seconds:
            return endpoint.seconds[model]
        known = [(e.seconds[model] * e.weight) for e in self.endpoints if model in e.seconds]
        if known:
            return min(known) / endpoint.weight
        return 1e-3 / endpoint.weight

    def _release(
        self,
        endpoint: Endpoint[C],
        *,
        failed: str = "",
        missing: tuple[str, str] | None = None,
        model: str = "",
        seconds: float = 0.0,
        ahead: int = 0,
        sent: int = 0,
    ) -> None:
        with self._cond:
            endpoint.in_flight -= 1
            now = time.monotonic()
            if failed:
                endpoint.last_error = failed
                endpoint.backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, endpoint.backoff * 2))
                endpoint.down_until = now + endpoint.backoff
                endpoint.checked.clear()  # a restarted server may have other models
            elif missing is not None:
                key, why = missing
                endpoint.last_error = why
                endpoint.missing[key] = now + MISSING_RECHECK
                endpoint.checked.discard(key)
            elif model:
                endpoint.backoff = 0.0
                endpoint.down_until = 0.0
                # Time per request of its own: a server that works through requests
                # one by one answers the k-th in k times its own time.
                own = seconds / max(1, ahead + 1)
                old = endpoint.seconds.get(model)
                endpoint.seconds[model] = own if old is None else old + SMOOTHING * (own - old)
                endpoint.sent[model] += sent
            self._cond.notify_all()

    def _why(self, key: str) -> str:
        parts = [f"{e.url}: {e.last_error or 'down'}" for e in self.endpoints]
        model = key.split("/")[0]
        return f"no inference server can run {model} now ({'; '.join(parts)})"


class EndpointSettings(Protocol):
    """A configured server: [[runtime.endpoints]] or [[vlm.endpoints]]."""

    url: str
    weight: float
    max_concurrent: int
    fallback: bool


MAX_LANES = 16


def lanes_for(endpoints: Sequence[EndpointSettings]) -> int:
    """Batches to keep in flight for these servers: as many as they take at once
    (the fallbacks aside), 16 at most (each holds its decoded frames)."""
    return max(1, min(MAX_LANES, sum(e.max_concurrent for e in endpoints if not e.fallback)))


_POOLS: dict[tuple[object, ...], EndpointPool[Any]] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(
    endpoints: Sequence[EndpointSettings], timeout: float, client: Callable[[Any], C]
) -> EndpointPool[C]:
    """The process's one pool for these servers, made on first use (every model
    sent to them shares it: their in-flight counts are their real load, and
    their measured speeds last from one scan to the next)."""
    key = (tuple(endpoints), timeout)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = EndpointPool(
                [
                    Endpoint(e.url, e.weight, e.max_concurrent, e.fallback, client(e))
                    for e in endpoints
                ]
            )
        return pool


def pool_for(runtime: RuntimeSettings) -> EndpointPool[KServeClient]:
    """The pool of [[runtime.endpoints]]: KServe v2 inference servers."""
    return shared_pool(
        runtime.endpoints,
        runtime.remote_timeout,
        lambda e: KServeClient(e.url, runtime.remote_timeout),
    )
