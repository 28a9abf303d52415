"""The Stash sink: tags, markers, performers and studios on Stash's scenes and
images (writes in deliver.py, imported at the first delivery)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagd.config import Settings
from tagd.sinks.outbox import Delivery, DeliveryReport

if TYPE_CHECKING:
    from tagd.catalog.catalog import Catalog


class StashSink:
    name = "stash"
    order = 10  # after the local files: a server that is down must not delay them
    local = False
    previews = False

    def enabled(self, settings: Settings) -> bool:
        return settings.stash.enabled

    def deliver(self, catalog: Catalog, settings: Settings, delivery: Delivery) -> DeliveryReport:
        from tagd.sinks.stash.deliver import deliver_stash

        return deliver_stash(
            catalog,
            settings,
            now=delivery.now,
            deadline=delivery.deadline,
            progress=delivery.progress,
        )

    def forget(self, catalog: Catalog, settings: Settings, gone: Sequence[str]) -> None:
        """A file gone from the library is Stash's to handle (its own scan)."""

    def summary(self, report: DeliveryReport) -> str:
        from tagd.sinks.stash.deliver import summary

        return summary(report)

    def explain(self, report: DeliveryReport, dry_run: bool) -> tuple[list[str], list[str]]:
        return [self.summary(report)], []


PLUGIN = StashSink()
