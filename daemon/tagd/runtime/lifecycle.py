"""The one shape every model wrapper has, whatever it runs.

The service, `tagd scan` and `tagd doctor` only check model files, drop
sessions when idle and name models in messages; they never care whether an
analyzer runs one network (ManagedModel), two towers (ClipModel), a network
behind a runtime class (HoldsModel) or none at all (Builtin). This protocol
is that common part, so `Analyzer.models` has one element type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from tagd.runtime.manifest import ModelSpec


@runtime_checkable
class ModelLifecycle(Protocol):
    """Verified lazy load, use, unload when idle. Sessions open on first use, so
    there is no `load`: `check` verifies the files without loading them."""

    spec: ModelSpec

    @property
    def loaded(self) -> bool: ...

    def check(self) -> object:
        """Verify the files without loading them (raises ModelError with the fix)."""
        ...

    def unload(self) -> None: ...

    def unload_if_idle(self, now: float | None = None) -> bool:
        """Drop the session(s) unused for the idle time; True when one was dropped."""
        ...


class Builtin:
    """The model of an analyzer that has none (a hash): nothing to load or check.

    `version` stands in for the sha256, so changing the algorithm re-runs only
    that analyzer.
    """

    loaded = False

    def __init__(self, name: str, version: str, min_long_side: int) -> None:
        self.spec = ModelSpec(
            name=name,
            task=name,
            file="",
            sha256=f"builtin:{version}",
            input=(min_long_side, min_long_side),
            variant="builtin",
        )

    def check(self) -> Path:
        return Path()

    def unload(self) -> None:
        pass

    def unload_if_idle(self, now: float | None = None) -> bool:
        return False
