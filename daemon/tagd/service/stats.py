"""What the daemon is doing and has done, kept in the catalog's `meta` table.

`tagd status` is another process: it reads these rows (and the instance lock,
to know whether a daemon is alive) instead of asking the daemon. Three keys,
each written by one thread only, as JSON:

- `service`           the daemon (main thread): pid, start, schedule, next
                      scan, watched roots, a rejected config reload
- `service.activity`  the scan thread: idle / indexing / analysing / writing,
                      progress, the last error
- `last_scan`, `scan_totals`   every finished scan, by `tagd run` or `tagd scan`
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.catalog.connect import no_room
from tagd.scan.roots import SKIPPED
from tagd.service.lock import holder, holder_notes
from tagd.words import count

SERVICE, ACTIVITY, LAST_SCAN, TOTALS = "service", "service.activity", "last_scan", "scan_totals"


@dataclass
class ScanStats:
    trigger: str  # schedule | watch | start | reload | signal | tagd scan
    roots: list[str]
    start: float = field(default_factory=time.time)
    end: float = 0.0
    indexed: int = 0
    new: int = 0
    changed: int = 0
    moved: int = 0
    deleted: int = 0
    analysed: int = 0
    failed: int = 0
    frames: int = 0
    analyse_seconds: float = 0.0
    written: int = 0
    write_failed: int = 0
    stopped: bool = False
    # Library roots skipped as missing, not folders or unreadable (tagd.scan.roots).
    root_problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.analysed / self.analyse_seconds if self.analyse_seconds > 0 else 0.0


def get_json(catalog: Catalog, key: str) -> dict[str, Any]:
    raw = catalog.get_meta(key)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def put_json(catalog: Catalog, key: str, value: dict[str, Any]) -> None:
    catalog.set_meta(key, json.dumps(value, sort_keys=True))


def record_scan(catalog: Catalog, stats: ScanStats) -> None:
    """Store a finished scan and add it to the running totals (one transaction)."""
    stats.end = stats.end or time.time()
    with catalog.transaction():
        put_json(catalog, LAST_SCAN, asdict(stats) | {"rate": stats.rate})
        totals = get_json(catalog, TOTALS)
        put_json(
            catalog,
            TOTALS,
            {
                "scans": int(totals.get("scans", 0)) + 1,
                "analysed": int(totals.get("analysed", 0)) + stats.analysed,
                "seconds": float(totals.get("seconds", 0.0)) + stats.analyse_seconds,
            },
        )


# ---------------------------------------------------------------- `tagd status`


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    delta = ts - now
    ago = abs(delta)
    span = (
        f"{ago:.0f} s"
        if ago < 120
        else f"{ago / 60:.0f} min"
        if ago < 7200
        else f"{ago / 3600:.1f} h"
    )
    return f"{stamp} ({'in ' + span if delta > 0 else span + ' ago'})"


def status_lines(catalog: Catalog, state_dir: Path, now: float | None = None) -> list[str]:
    """The daemon, schedule, last scan and throughput, as lines for `tagd status`."""
    now = time.time() if now is None else now
    service = get_json(catalog, SERVICE)
    activity = get_json(catalog, ACTIVITY)
    last = get_json(catalog, LAST_SCAN)
    totals = get_json(catalog, TOTALS)
    lines = []
    held = holder(state_dir)
    if held and "run" in held[1]:
        doing = activity.get("state", "starting")
        progress = activity.get("progress")
        if doing in ("analysing", "writing") and progress:
            doing += f" {progress[0]}/{progress[1]} files"
        lines.append(
            f"daemon: running (pid {held[0]}) since {_when(service.get('started'), now)}; "
            f"now {doing}"
        )
        schedule = service.get("schedule") or ""
        lines.append(
            f"schedule: {schedule or 'none'}; next scan: "
            + (_when(service.get("next_scan"), now) if service.get("next_scan") else "none")
        )
        watching = service.get("watching") or []
        lines.append(
            f"watching: {len(watching)} folder(s) for new files" if watching else "watching: off"
        )
        notes = holder_notes(state_dir)
        lines.append(f"control socket: {notes.get('socket') or 'off'}")
        lines.append(f"HTTP API: {notes['api'] + '/api/v1' if notes.get('api') else 'off'}")
        if activity.get("paused"):
            lines.append("scans: paused (`tagd resume` goes on)")
        if service.get("config_error"):
            lines.append(
                f"config reload rejected (running on the previous one): {service['config_error']}"
            )
    elif held:
        lines.append(f"daemon: not running; {held[1]} (pid {held[0]}) is scanning")
    else:
        stopped = service.get("stopped")
        lines.append(
            "daemon: not running" + (f" (stopped {_when(stopped, now)})" if stopped else "")
        )
    if last:
        how = "stopped early" if last.get("stopped") else f"{last['end'] - last['start']:.1f} s"
        lines.append(
            f"last scan: {_when(last.get('end'), now)} by {last.get('trigger')} ({how}): "
            f"{count(last.get('indexed', 0), 'file')} indexed, {last.get('new', 0)} new, "
            f"{last.get('changed', 0)} changed, {last.get('deleted', 0)} deleted; "
            f"{last.get('analysed', 0)} analysed, {last.get('failed', 0)} failed; "
            f"{count(last.get('written', 0), 'sidecar')} written"
        )
        for problem in last.get("root_problems") or ():
            lines.append(f"library root {problem}; {SKIPPED}")
        overall = ""
        if totals.get("seconds"):
            overall = (
                f"; {totals['analysed'] / totals['seconds']:.1f} files/s over "
                f"{count(totals['analysed'], 'file')} in {count(totals['scans'], 'scan')}"
            )
        if last.get("analysed"):
            lines.append(
                f"throughput: {last.get('rate', 0.0):.1f} files/s in the last scan{overall}"
            )
        elif overall:
            lines.append(f"throughput: {overall[2:]}")
    else:
        lines.append("last scan: never")
    error = activity.get("last_error")
    if error:
        lines.append(f"last daemon error: {_when(error.get('time'), now)}: {error.get('message')}")
    if no_room(state_dir):
        # Asked here, not stored: a full disk cannot take the daemon's note of it.
        lines.append(
            f"disk full: {state_dir}: scans cannot save their work until there is space again"
        )
    return lines
