"""Which sinks the outbox queues work for (one place for scan, daemon and pipeline)."""

from __future__ import annotations

from tagd.config import Settings
from tagd.sinks.outbox import enabled


def enabled_sinks(settings: Settings) -> list[str]:
    return [sink.name for sink in enabled(settings)]
