"""Which sinks the outbox queues work for (one place for scan, daemon and pipeline)."""

from __future__ import annotations

from tagd.config import Settings


def enabled_sinks(settings: Settings) -> list[str]:
    sinks = []
    if settings.xmp.enabled:
        sinks.append("xmp")
    if settings.stash.enabled:
        sinks.append("stash")
    return sinks
