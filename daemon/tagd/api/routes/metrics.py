"""GET /metrics: the catalog, the write queues and the scans, in Prometheus's text
format (prometheus_client writes it), for a dashboard or an alert ("writes to
Stash failing for an hour")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tagd.api.auth import require
from tagd.api.state import ApiState, api_state
from tagd.cli.report_cmds import status_report
from tagd.service.stats import TOTALS, get_json

router = APIRouter(tags=["status"], dependencies=[Depends(require("read"))])


class Snapshot:
    """A collector over one reading of the catalog (taken per scrape)."""

    def __init__(self, report: dict[str, Any], totals: dict[str, Any], live: dict[str, Any]):
        self.report = report
        self.totals = totals
        self.live = live  # the processes now (ApiState.snapshot)

    def collect(self) -> Iterator[Metric]:
        r = self.report
        files = GaugeMetricFamily(
            "tagd_files", "Files in the catalog, by status", labels=["status"]
        )
        for status in ("ok", "pending", "error"):
            files.add_metric([status], r["files"][status])
        yield files
        kinds = GaugeMetricFamily("tagd_files_by_kind", "Files by kind", labels=["kind"])
        kinds.add_metric(["image"], r["files"]["images"])
        kinds.add_metric(["video"], r["files"]["videos"])
        yield kinds
        yield GaugeMetricFamily("tagd_detections", "Findings stored", value=r["detections"])
        yield GaugeMetricFamily("tagd_tags", "Tags derived", value=r["tags"])
        queued = GaugeMetricFamily("tagd_writes_queued", "Writes waiting", labels=["sink"])
        failed = GaugeMetricFamily(
            "tagd_writes_failing", "Queued writes that failed at least once", labels=["sink"]
        )
        for sink, w in r["writes"].items():
            queued.add_metric([sink], w["queued"])
            failed.add_metric([sink], w["failed"])
        yield queued
        yield failed
        last = r["last_scan"] or {}
        if last:
            yield GaugeMetricFamily(
                "tagd_last_scan_end_timestamp_seconds", "When the last scan ended",
                value=last.get("end", 0.0),
            )  # fmt: skip
            yield GaugeMetricFamily(
                "tagd_last_scan_files_per_second", "Analysis rate of the last scan",
                value=last.get("rate", 0.0),
            )  # fmt: skip
        yield CounterMetricFamily("tagd_scans", "Scans recorded", value=self.totals.get("scans", 0))
        yield CounterMetricFamily(
            "tagd_files_analysed", "Files analysed by all scans",
            value=self.totals.get("analysed", 0),
        )  # fmt: skip
        live = self.live
        yield GaugeMetricFamily(
            "tagd_analysis_process_up",
            "1 while the analysis process runs (its models loaded); it ends when idle",
            value=1.0 if live["analysis_process"] else 0.0,
        )
        yield CounterMetricFamily(
            "tagd_analysis_process_starts", "Analysis processes started", value=live["starts"]
        )
        if live.get("daemon"):
            yield GaugeMetricFamily(
                "tagd_paused", "1 while scanning is paused", value=1.0 if live["paused"] else 0.0
            )
            state = GaugeMetricFamily(
                "tagd_activity", "What the daemon does now (1 for its state)", labels=["state"]
            )
            for name in ("idle", "indexing", "listing", "analysing", "asking", "writing", "paused"):
                state.add_metric([name], 1.0 if live["state"] == name else 0.0)
            yield state
            yield GaugeMetricFamily(
                "tagd_scans_waiting", "Scan requests queued", value=live["waiting"]
            )
            progress = live.get("progress") or [0, 0]
            yield GaugeMetricFamily(
                "tagd_scan_files_done", "Files analysed so far by the scan in flight",
                value=progress[0],
            )  # fmt: skip
            yield GaugeMetricFamily(
                "tagd_scan_files_total", "Files the scan in flight analyses", value=progress[1]
            )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: Annotated[ApiState, Depends(api_state)]) -> Response:
    with state.catalog() as catalog:
        report = status_report(catalog, state.shas, state.state_dir)
        totals = get_json(catalog, TOTALS)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(report, totals, state.snapshot()))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
