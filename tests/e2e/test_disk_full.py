"""A full disk under the state directory: a real small tmpfs as TAGD_STATE_DIR,
filled up while `tagd scan` and `tagd run` work on real photos. One clear line
instead of a traceback, exit 2 for a command, a daemon that keeps running and
goes on once there is space, and a catalog that stays intact throughout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import run_tagd, write_config
from test_end_to_end import db_rows
from test_service import (
    NotifySocket,
    analysed_paths,
    running_daemon,
    stop,
    tagged_and_written,
    wait_until,
)

from tagd.catalog.connect import connect

SIZE = "4m"


@contextmanager
def tmpfs(folder: Path) -> Iterator[Path]:
    """`folder` on its own 4 MiB tmpfs while in the block (mounting needs root)."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs on {folder}: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_state(state_dir: Path) -> Iterator[Path]:
    """TAGD_STATE_DIR on a small tmpfs of its own."""
    with tmpfs(state_dir):
        yield state_dir


def fill(folder: Path, leave: int = 0) -> Path:
    """Take the free space of `folder`'s filesystem, all of it or all but `leave` bytes."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
        if free > leave:
            os.posix_fallocate(fd, 0, free - leave)
        while not leave:  # whatever statvfs did not count
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC
    finally:
        os.close(fd)
    return filler


def scan_now(proc: subprocess.Popen, notify: NotifySocket) -> None:
    """SIGUSR1, then wait until that scan has ended (the daemon is idle again)."""
    notify.drain()
    start = len(notify.messages)
    proc.send_signal(signal.SIGUSR1)

    def ended() -> bool:
        notify.drain()
        new = notify.messages[start:]
        began = next((i for i, m in enumerate(new) if "STATUS=indexing" in m), None)
        return began is not None and any("STATUS=idle" in m for m in new[began:])

    wait_until(ended, 30, "the scan to end")


def idle_after_a_scan(notify: NotifySocket) -> bool:
    """The daemon's last status is idle, and a scan has run since it started."""
    notify.drain()
    statuses = [m for m in notify.messages if "STATUS=" in m]
    began = any("STATUS=indexing" in m for m in statuses)
    return began and "STATUS=idle" in statuses[-1]


def assert_intact(catalog: Path) -> None:
    con = connect(catalog)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()


def assert_disk_full_line(stderr: str, state: Path) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tagd: disk full: {state}; "), stderr


@pytest.mark.usefixtures("default_models")
def test_tagd_scan_on_a_full_state_dir_says_so_and_keeps_the_catalog(
    small_state: Path, coco_photos, tmp_path: Path
) -> None:
    photos = coco_photos(12)
    lib = photos[0].parent

    # Full before anything is there: the lock file cannot take the pid.
    filler = fill(small_state)
    done = run_tagd("scan", lib)
    assert done.returncode == 2, done.stdout + done.stderr
    assert_disk_full_line(done.stderr, small_state)
    filler.unlink()

    # A catalog that knows the photos, then a disk that fills up during the scan:
    # past the lock and the index, the analysis' commits hit SQLITE_FULL.
    assert run_tagd("scan", "--index-only", lib).returncode == 0
    filler = fill(small_state, leave=200_000)
    done = run_tagd("scan", lib)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "indexed 12 files" in done.stdout
    assert_disk_full_line(done.stderr, small_state)
    # The catalog as the failed scan left it, before anything cleans up: intact.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in os.listdir(small_state):
        if name.startswith("catalog.db"):
            shutil.copyfile(small_state / name, copy / name)
    assert_intact(copy / "catalog.db")

    # Space again: the same catalog, and the next scan does all that is left.
    filler.unlink()
    assert_intact(small_state / "catalog.db")
    done = run_tagd("scan", lib)
    assert done.returncode == 0, done.stdout + done.stderr
    assert analysed_paths(small_state) == {str(p) for p in photos}
    assert tagged_and_written(small_state, photos)


def test_export_to_a_full_disk_names_that_file(
    state_dir: Path, coco_photos, tmp_path: Path
) -> None:
    """Not the state directory's disk: the message names the output instead."""
    photos = coco_photos(3)
    assert run_tagd("scan", "--index-only", photos[0].parent).returncode == 0
    out = tmp_path / "out"
    with tmpfs(out):
        fill(out)
        done = run_tagd("export", "-o", out / "all.jsonl")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"tagd: disk full: {out / 'all.jsonl'}; "), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.usefixtures("default_models")
def test_the_daemon_says_it_once_keeps_running_and_goes_on_later(
    small_state: Path, coco_photos, coco_dir: Path, tmp_path: Path
) -> None:
    lib = tmp_path / "library"
    first = coco_photos(2, dest=lib)
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[daemon]\nschedule = ""\nwatch = false\n',
    )
    # Full at start: nothing runs yet, so it cannot start: the same line, exit 2
    # (systemd's RestartPreventExitStatus=2: no restart loop).
    filler = fill(small_state)
    done = run_tagd("--config", config, "run", timeout=60)
    assert done.returncode == 2, done.stderr
    assert_disk_full_line(done.stderr, small_state)
    filler.unlink()

    with running_daemon(tmp_path, small_state, config) as (proc, log, notify):
        notify.wait_for("READY=1", 60, proc)
        wait_until(lambda: tagged_and_written(small_state, first), 60, "the first scan")
        # Written is not ended: the scan still records its stats after the writes.
        wait_until(lambda: idle_after_a_scan(notify), 30, "the first scan to end")
        spare = sorted(p for p in coco_dir.glob("*.jpg") if p.name not in {f.name for f in first})
        later = [Path(shutil.copyfile(src, lib / src.name)) for src in spare[:2]]
        filler = fill(small_state)
        for _ in range(2):  # a second failure is not logged again
            scan_now(proc, notify)
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        full = [line for line in text.splitlines() if "disk full" in line]
        assert len(full) == 1 and " ERROR tagd.scan: scan (signal) stopped: disk full: " in full[0]
        assert f"disk full: {small_state}; free some space there" in full[0]
        assert "Traceback" not in text, text
        status = run_tagd("status")
        assert f"disk full: {small_state}: scans cannot save their work" in status.stdout

        filler.unlink()
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: tagged_and_written(small_state, first + later), 60, "the next scan")
        code, _ = stop(proc)
    text = log.read_text()
    assert code == 0, text
    assert "the catalog takes writes again" in text
    assert "Traceback" not in text, text
    assert db_rows(small_state, "PRAGMA integrity_check") == [("ok",)]
