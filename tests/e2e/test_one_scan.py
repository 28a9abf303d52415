"""`tagd scan` and `tagd run` are one scan: the same real library (COCO photos and
a video, objects only) scanned by each into its own state directory gives the
same `tagd export`, byte for byte, and the same sidecars."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import VIDEOS, write_config
from test_end_to_end import db_rows
from test_service import running_daemon, stop, wait_until

PHOTOS = 6
VIDEO = VIDEOS / "chaplin.mp4"
MTIME_NS = 1_700_000_000 * 10**9  # long settled: no scan waits for a copy to end

# Every test here runs tagd with its default analyzers.
pytestmark = pytest.mark.usefixtures("default_models")


def fresh_library(lib: Path, photos: list[Path]) -> None:
    """The library as it was before any scan: same paths, bytes and mtimes, no sidecar."""
    shutil.rmtree(lib, ignore_errors=True)
    (lib / "clips").mkdir(parents=True)
    copies = [shutil.copyfile(photo, lib / photo.name) for photo in photos]
    copies.append(shutil.copyfile(VIDEO, lib / "clips" / VIDEO.name))
    for copy in copies:
        os.utime(copy, ns=(MTIME_NS, MTIME_NS))


def sidecars(lib: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lib)): p.read_bytes() for p in sorted(lib.rglob("*.xmp"))}


def scanned(state: Path) -> bool:
    if not (state / "catalog.db").exists():
        return False
    return bool(db_rows(state, "SELECT value FROM meta WHERE key = 'last_scan'"))


def test_scan_and_run_give_the_same_export(
    tmp_path: Path, state_dir: Path, coco_photos, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} is absent")
    photos = coco_photos(PHOTOS)
    lib = tmp_path / "lib"
    config = write_config(
        tmp_path / "config.toml",
        f'profile = "low-power"\n[library]\nroots = ["{lib}"]\n'
        "[faces]\nenabled = false\n[concepts]\nenabled = false\n"
        "[clip]\nenabled = false\n[duplicates]\nenabled = false\n"
        '[daemon]\nschedule = ""\nwatch = false\n',
    )

    fresh_library(lib, photos)
    code, out, err = cli("--config", config, "scan")
    assert code == 0, out + err
    assert f"analysed {PHOTOS + 1} files" in out
    code, by_scan, err = cli("--config", config, "export")
    assert code == 0, err
    written_by_scan = sidecars(lib)

    fresh_library(lib, photos)
    run_state = tmp_path / "run-state"
    with running_daemon(tmp_path, run_state, config) as (proc, log, notify):
        notify.wait_for("READY=1", 60, proc)
        wait_until(lambda: scanned(run_state), 120, "the daemon's first scan")
        code, _ = stop(proc)
    assert code == 0, log.read_text()
    monkeypatch.setenv("TAGD_STATE_DIR", str(run_state))
    code, by_run, err = cli("--config", config, "export")
    assert code == 0, err

    assert len(by_scan.splitlines()) == PHOTOS + 1
    assert '"kind": "video"' in by_scan and '"AI|Objects|' in by_scan
    assert '"status": "error"' not in by_scan
    # Nothing to normalise: no timestamp or state-dir path is in the export.
    assert by_run == by_scan
    assert written_by_scan and sidecars(lib) == written_by_scan


def test_sinks_are_the_modules_that_declare_one() -> None:
    """Scans and the daemon loop over the registered sinks, in delivery order."""
    from tagd.config import parse_settings
    from tagd.sinks.outbox import all_sinks
    from tagd.sinks.select import enabled_sinks

    assert [sink.name for sink in all_sinks()] == ["xmp", "stash"]
    assert [sink.local for sink in all_sinks()] == [True, False]
    both = parse_settings({"stash": {"enabled": True, "url": "http://localhost:9999"}})
    assert enabled_sinks(both) == ["xmp", "stash"]
    neither = parse_settings({"xmp": {"enabled": False}})
    assert enabled_sinks(neither) == []
