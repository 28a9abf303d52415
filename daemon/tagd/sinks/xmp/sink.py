"""The XMP sink: tags into sidecars next to the photos, or into the file itself
for the formats in xmp.embed (writes in deliver.py, imported at the first
delivery: it needs OpenCV, which `tagd scan --index-only` does without)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagd.config import Settings
from tagd.sinks.outbox import Delivery, DeliveryReport

if TYPE_CHECKING:
    from tagd.catalog.catalog import Catalog

MAX_LISTED = 20  # write errors `tagd scan` prints; `tagd status` has them all


class XmpSink:
    name = "xmp"
    order = 0  # local files first: quick, and what most users look at
    local = True
    previews = True

    def enabled(self, settings: Settings) -> bool:
        return settings.xmp.enabled

    def deliver(self, catalog: Catalog, settings: Settings, delivery: Delivery) -> DeliveryReport:
        from tagd.sinks.xmp.deliver import deliver_xmp

        return deliver_xmp(
            catalog,
            settings,
            dry_run=delivery.dry_run,
            now=delivery.now,
            deadline=delivery.deadline,
            progress=delivery.progress,
            roots=delivery.roots,
            writer=delivery.writer,
        )

    def forget(self, catalog: Catalog, settings: Settings, gone: Sequence[str]) -> None:
        if settings.xmp.sidecar == "stem":
            from tagd.sinks.xmp.deliver import queue_sharing

            queue_sharing(catalog, settings, gone)

    def summary(self, report: DeliveryReport) -> str:
        line = f"xmp: {report.written} written, {report.failed} failed"
        if report.vanished:
            line += f", {report.vanished} skipped (deleted meanwhile)"
        if report.failed:
            line += " (queued for a retry: `tagd status` says why)"
        return line

    def explain(self, report: DeliveryReport, dry_run: bool) -> tuple[list[str], list[str]]:
        out = []
        if dry_run:
            for change in report.changes:
                out.append(f"would update {change.sidecar}")
                out += [f"  + {tag}" for tag in change.added]
                out += [f"  - {tag}" for tag in change.removed]
                out += [f"  + face region {region}" for region in change.regions_added]
                out += [f"  - face region {region}" for region in change.regions_removed]
        verb = "would change" if dry_run else "written"
        count = len(report.changes) if dry_run else report.written
        out.append(f"sidecars {verb}: {count}; failed: {report.failed}")
        if report.vanished:
            out.append(f"  {count(report.vanished, 'file')} deleted meanwhile: no sidecar for them")
        err = [f"  {reason}" for _path, reason in report.errors[:MAX_LISTED]]
        if report.failed:
            err.append(
                f"  {report.failed} sidecar writes stay queued: retried by the next `tagd scan` "
                "(by `tagd run` after a backoff); "
                "for a library tagd must not write to, set [xmp] enabled = false"
            )
        return out, err


PLUGIN = XmpSink()
