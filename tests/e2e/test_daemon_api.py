"""`tagd run` serving the HTTP API: scans asked over HTTP, pause and resume during
a scan (HTTP, the CLI, kept across a restart), live events read by a real SSE
client, POST /analyze answered by the scan's own analysis process while the scan
is paused, and that process ending when idle."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config
from test_api import all_files, exchange, get, reply
from test_service import NotifySocket, running_daemon, stop, wait_until
from test_stash_plugin import run_task

from tagd.catalog.catalog import Catalog
from tagd.config import load_settings
from tagd.service.lock import holder_notes
from tagd.service.stats import SERVICE, get_json


def post(base: str, route: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(
        base + route, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    return reply(request, None)


class EventStream:
    """GET /api/v1/events read by a thread: every event as (name, data)."""

    def __init__(self, base: str) -> None:
        url = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.conn.request("GET", "/api/v1/events")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("content-type", "").startswith("text/event-stream")
        self.events: list[tuple[str, dict[str, Any]]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name, data = "message", ""
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and data:
                    self.events.append((name, json.loads(data)))
                    name, data = "message", ""
        except Exception:  # closed by the test, or the server went away
            return

    def seen(self, name: str, **match: Any) -> bool:
        return any(
            n == name and all(d.get(k) == v for k, v in match.items()) for n, d in self.events
        )

    def close(self) -> None:
        self.conn.close()


def api_url(state: Path) -> str:
    wait_until(lambda: "api" in holder_notes(state), 30, "the daemon's API")
    return holder_notes(state)["api"]


def service_state(state: Path) -> dict[str, Any]:
    with Catalog(state / "catalog.db") as catalog:
        return get_json(catalog, SERVICE)


def metric(base: str, name: str) -> float:
    status, _, raw = exchange(urllib.request.Request(base + "/api/v1/metrics"))
    assert status == 200
    for line in raw.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.usefixtures("default_models")
def test_daemon_serves_scans_pause_events_and_analysis(
    tmp_path: Path, state_dir: Path, coco_photos, cli
) -> None:
    lib = tmp_path / "library"
    # Enough work, one photo per batch on one core, for the pause to land while the
    # scan analyses (the default pipeline does two dozen photos in a second).
    photos = coco_photos(24, dest=lib)
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n'
        "[runtime]\nidle_unload = 2.0\nbatch_size = 1\nlanes = 1\nthreads = 1\n"
        "[decode]\nworkers = 1\n"
        '[daemon]\nschedule = ""\nwatch = false\nscan_on_start = false\n'
        '[api]\nlisten = "127.0.0.1:0"\n',
    )
    with running_daemon(tmp_path, state_dir, config) as (proc, log, notify):
        notify.wait_for("READY=1", 60, proc)
        base = api_url(state_dir)
        events = EventStream(base)
        try:
            wait_until(lambda: events.seen("hello", daemon=True), 10, "the first event")

            # Paused before it starts: the scan is queued, and stays so.
            assert post(base, "/api/v1/scans/pause").body == {"paused": True, "state": "paused"}
            asked = post(base, "/api/v1/scans")
            assert asked.status == 202, asked.body
            scan_id = asked.body["id"]
            assert asked.headers["location"] == f"/api/v1/scans/{scan_id}"
            time.sleep(1.5)
            assert get(base, f"/api/v1/scans/{scan_id}").body["state"] == "queued"

            # Resumed, then paused again as soon as it runs: the batch in flight
            # finishes and the analysis waits, part-way.
            post(base, "/api/v1/scans/resume")
            wait_until(
                lambda: get(base, f"/api/v1/scans/{scan_id}").body["state"] == "running",
                30,
                "the scan to start",
            )
            post(base, "/api/v1/scans/pause")
            wait_until(
                lambda: any(
                    n == "progress" and d["state"] == "paused" and scan_id in d["scans"]
                    for n, d in events.events
                ),
                60,
                "the scan to pause",
            )
            done = get(base, "/api/v1/status").body["files"]["ok"]
            assert done < len(photos)
            time.sleep(1.5)
            assert get(base, "/api/v1/status").body["files"]["ok"] == done  # waiting

            # A paused daemon still analyses on demand, in the same process (the
            # scan's models, not a second copy).
            starts = metric(base, "tagd_analysis_process_starts_total")
            request = urllib.request.Request(
                base + "/api/v1/analyze",
                data=urllib.parse.urlencode(
                    {"path": str(photos[-1]), "analyzers": "objects"}
                ).encode(),
                method="POST",
            )
            analysed = reply(request, None)
            assert analysed.status == 200, analysed.body
            assert analysed.body["objects"], analysed.body
            assert metric(base, "tagd_analysis_process_starts_total") == starts
            assert metric(base, "tagd_paused") == 1.0

            # The Stash plugin's task and `tagd status` see it; `tagd resume` (the
            # control socket) lets it go on.
            task = run_task(tmp_path, "pause", "/nonexistent/tagd", state=state_dir)
            assert task == {"output": "tagd daemon: paused"}, task
            code, out, _ = cli("--config", config, "status")
            assert "scans: paused" in out and f"HTTP API: {base}/api/v1" in out, out
            code, out, err = cli("--config", config, "resume")
            assert code == 0 and "resumed" in out, out + err
            wait_until(
                lambda: get(base, f"/api/v1/scans/{scan_id}").body["state"] == "done",
                120,
                "the scan to finish",
            )
            finished = get(base, f"/api/v1/scans/{scan_id}").body
            assert f"{len(photos)} analysed" in finished["summary"][0], finished
            assert get(base, "/api/v1/status").body["files"]["ok"] == len(photos)
            wait_until(lambda: events.seen("scan", id=scan_id, state="done"), 10, "its event")
            assert events.seen("paused") and events.seen("resumed")

            # Idle for runtime.idle_unload: the analysis process ends, its memory freed.
            wait_until(lambda: metric(base, "tagd_analysis_process_up") == 0.0, 20, "the idle exit")

            # store=true: the daemon scans a new file into the catalog and answers
            # what it stored (an upload cannot be stored).
            new = lib / "arrived.jpg"
            new.write_bytes(photos[0].read_bytes())
            stored = reply(
                urllib.request.Request(
                    base + "/api/v1/analyze",
                    data=urllib.parse.urlencode({"path": str(new), "store": "true"}).encode(),
                    method="POST",
                ),
                None,
            )
            assert stored.status == 200, stored.body
            assert stored.body["stored"] and stored.body["path"] == str(new)
            [entry] = [f for f in all_files(base) if f["path"] == str(new)]
            kept = get(base, f"/api/v1/files/{entry['id']}").body
            assert kept["status"] == "ok"
            assert [(t["name"], t["score"]) for t in kept["tags"]] == [
                (t["name"], t["score"]) for t in stored.body["tags"]
            ]
            assert stored.body["tags"], stored.body  # a COCO photo: something was found
            listed = get(base, "/api/v1/status").body["files"]
            assert listed["ok"] == len(photos) + 1, listed

            # A learned threshold applied: written into the config file, the daemon
            # reloads (as on SIGHUP) and the tags are derived again, no model run.
            tag = next(t for t in kept["tags"] if t["name"].startswith("AI|Objects|"))
            if tag["score"] < 0.99:
                body = {"tag": tag["name"], "threshold": 0.99}
                applied = post(base, "/api/v1/review/thresholds", body)
                assert applied.status == 200, applied.body
                wait_until(lambda: "config reloaded" in log.read_text(), 20, "the reload")
                label = tag["name"].rsplit("|", 1)[-1]
                assert load_settings(config).tags.objects.labels[label].threshold == 0.99
                wait_until(
                    lambda: (
                        tag["name"]
                        not in [
                            t["name"]
                            for t in get(base, f"/api/v1/files/{entry['id']}").body["tags"]
                        ]
                    ),
                    60,
                    "the tags derived by the new rule",
                )

            # A path outside the library is refused; the CLI's pause is kept over a restart.
            outside = post(base, "/api/v1/scans", {"paths": [str(tmp_path)]})
            assert outside.status == 403 and "outside the library" in outside.body["detail"]
            code, out, _ = cli("--config", config, "pause")
            assert code == 0 and "paused" in out, out
            # Recorded at once (a kill now would keep it), not only at the stop.
            wait_until(lambda: service_state(state_dir).get("paused") is True, 5, "the record")
        finally:
            events.close()
        code, _ = stop(proc)
        assert code == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text

    again = NotifySocket(str(tmp_path / "notify-again.sock"))
    with running_daemon(tmp_path, state_dir, config, again) as (proc, log, notify):
        notify.wait_for("READY=1", 60, proc)
        assert "paused before the last stop" in log.read_text()
        base = api_url(state_dir)
        assert metric(base, "tagd_paused") == 1.0
        assert post(base, "/api/v1/scans/resume").body["paused"] is False
        code, _ = stop(proc)
        assert code == 0, log.read_text()


def test_serve_has_no_scans(tmp_path: Path) -> None:
    """`tagd serve` runs no scheduler: the scan routes say so, and what to run."""
    from test_api import serve

    from tagd.config import Settings

    served = serve(Settings(), tmp_path / "state")
    try:
        answer = post(served.base, "/api/v1/scans")
        assert answer.status == 503 and "tagd run" in answer.body["detail"]
        assert answer.headers["content-type"] == "application/problem+json"
        assert get(served.base, "/api/v1/scans/1").status == 503
    finally:
        served.stop()
