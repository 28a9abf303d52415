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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from tagd.config import RuntimeSettings
from tagd.runtime.kserve import EndpointDown, KServeClient, ModelMissing

T = TypeVar("T")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
MISSING_RECHECK = 300.0  # seconds before a server that lacked a model is asked again
SMOOTHING = 0.3  # weight of the newest measurement in the moving average


@dataclass
class Stats:
    requests: int = 0
    rows: int = 0
    bytes_sent: int = 0  # input tensors (what crosses the network, framing aside)
    failures: int = 0
    bytes_by_model: Counter[str] = field(default_factory=Counter)


class ServerClient(Protocol):
    """What the pool needs of a server's client (KServeClient; the VLM's ChatClient)."""

    url: str

    def ready(self, model: str, version: str) -> None:
        """Raise EndpointDown or ModelMissing unless it serves this model now."""

    def close(self) -> None: ...


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
    stats: Stats = field(default_factory=Stats)

    def up(self, now: float) -> bool:
        return self.down_until <= now


class AllDown(RuntimeError):
    """No server can take this model now."""


class EndpointPool(Generic[C]):
    def __init__(self, endpoints: list[Endpoint[C]]) -> None:
        self.endpoints = endpoints
        self._cond = threading.Condition()

    @classmethod
    def from_settings(cls, runtime: RuntimeSettings) -> EndpointPool[KServeClient]:
        return EndpointPool(
            [
                Endpoint(
                    url=e.url,
                    weight=e.weight,
                    max_concurrent=e.max_concurrent,
                    fallback=e.fallback,
                    client=KServeClient(e.url, runtime.remote_timeout),
                )
                for e in runtime.endpoints
            ]
        )

    @property
    def capacity(self) -> int:
        """Requests the primary (not fallback) servers take at once."""
        return sum(e.max_concurrent for e in self.endpoints if not e.fallback)

    def run(self, model: str, version: str, rows: int, sent: int, call: Callable[[C], T]) -> T:
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
                          ahead=ahead, rows=rows, sent=sent)  # fmt: skip
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
        rows: int = 0,
        sent: int = 0,
    ) -> None:
        with self._cond:
            endpoint.in_flight -= 1
            now = time.monotonic()
            if failed:
                endpoint.stats.failures += 1
                endpoint.last_error = failed
                endpoint.backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, endpoint.backoff * 2))
                endpoint.down_until = now + endpoint.backoff
                endpoint.checked.clear()  # a restarted server may have other models
            elif missing is not None:
                key, why = missing
                endpoint.stats.failures += 1
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
                endpoint.stats.requests += 1
                endpoint.stats.rows += rows
                endpoint.stats.bytes_sent += sent
                endpoint.stats.bytes_by_model[model] += sent
            self._cond.notify_all()

    def _why(self, key: str) -> str:
        parts = [f"{e.url}: {e.last_error or 'down'}" for e in self.endpoints]
        model = key.split("/")[0]
        return f"no inference server can run {model} now ({'; '.join(parts)})"

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.client.close()


_POOLS: dict[tuple[object, ...], EndpointPool[KServeClient]] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(runtime: RuntimeSettings) -> EndpointPool[KServeClient]:
    """The process's one pool for these endpoints (shared by every remote model)."""
    key = (tuple(runtime.endpoints), runtime.remote_timeout)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = EndpointPool.from_settings(runtime)
        return pool
