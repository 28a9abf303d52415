"""`tagd run` stops within daemon.stop_timeout even while a sidecar write hangs,
and a write process that dies costs one write, not the daemon.

The share is a real filesystem (a small ext4 image, loop-mounted inside the
library) frozen with fsfreeze, as a snapshot tool freezes it: every write to it
blocks in the kernel, uninterruptibly, until it is thawed, the way a write to a
dead NFS or SMB server or a failing disk blocks (needs root: mount, fsfreeze).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import PERSON_PHOTO, write_config
from test_races import PERSON, analysed_library, config_text, copied_an_hour_ago, outbox
from test_service import NotifySocket, running_daemon, start_daemon, stop, wait_until

from tagd.sinks.writer import WriterProcess
from tagd.sinks.xmp.deliver import deliver_xmp
from tagd.sinks.xmp.embed import KILL_ENV
from tagd.sinks.xmp.sidecar import sidecar_path

STOP_TIMEOUT = 2.0
MARGIN = 1.0  # what a stop may take beyond daemon.stop_timeout


class Share:
    """A filesystem mounted at `path` that can be frozen and thawed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frozen = False

    def freeze(self) -> None:
        subprocess.run(["fsfreeze", "--freeze", str(self.path)], check=True)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            subprocess.run(["fsfreeze", "--unfreeze", str(self.path)], check=True)
            self.frozen = False


@pytest.fixture
def share(tmp_path: Path) -> Iterator[Share]:
    """An ext4 share mounted at lib/nas (lib is the library root)."""
    tools = ("mkfs.ext4", "mount", "umount", "fsfreeze")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        pytest.skip("needs root and " + ", ".join(tools))
    image = tmp_path / "share.img"
    with image.open("wb") as fh:
        fh.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mountpoint = tmp_path / "lib" / "nas"
    mountpoint.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-o", "loop,noatime", str(image), str(mountpoint)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount a filesystem here: {done.stderr.strip()}")
    mounted = Share(mountpoint)
    try:
        yield mounted
    finally:
        mounted.thaw()
        # A killed writer still stuck in the kernel lets go a moment after the thaw.
        for _ in range(100):
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)


def blocked_in_kernel(pid: int) -> bool:
    """A thread of `pid` or of one of its children sleeps uninterruptibly (state D)."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in procs:
        try:
            for task in Path(f"/proc/{proc.pid}/task").iterdir():
                if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "D":
                    return True
        except OSError:
            continue
    return False


def stuck(pid: int, seconds: float = 1.0) -> bool:
    """Blocked in the kernel for `seconds` on end (a read from disk is a moment in D)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not blocked_in_kernel(pid):
            return False
        time.sleep(0.1)
    return True


@pytest.mark.usefixtures("default_models")
def test_sigterm_exits_on_time_while_a_sidecar_write_hangs(
    tmp_path: Path, state_dir: Path, coco_dir: Path, share: Share
) -> None:
    photo = share.path / PERSON_PHOTO
    photo.write_bytes((coco_dir / PERSON_PHOTO).read_bytes())
    copied_an_hour_ago(photo)
    lib = share.path.parent
    config = write_config(
        tmp_path / "config.toml",
        config_text(lib, '[daemon]\nschedule = ""\nwatch = false\n')
        + f"stop_timeout = {STOP_TIMEOUT}\n",
    )
    notify = NotifySocket(str(tmp_path / "notify.sock"))  # start_daemon wants one
    share.freeze()
    proc, log = start_daemon(tmp_path, state_dir, config, notify, NOTIFY_SOCKET="")
    code, took = None, 0.0
    try:
        wait_until(lambda: stuck(proc.pid), 60, "the sidecar write to hang")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = proc.wait(timeout=STOP_TIMEOUT + MARGIN)
        took = time.monotonic() - start
    finally:
        share.thaw()
        if proc.poll() is None:  # too late already: the test has failed
            proc.kill()
            proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0, f"still running {took:.1f} s after SIGTERM\n{text}"
    assert took < STOP_TIMEOUT + MARGIN
    assert "stopping: 0 sidecars written, 1 left queued for the next start" in text
    assert "Traceback" not in text
    # The write in flight stays queued, due at once (not backing off as a failure).
    assert outbox(state_dir) == [(0, False)]
    assert not sidecar_path(photo).exists()

    # The next start writes it, and no temp file of the killed write is left.
    with running_daemon(tmp_path, state_dir, config, notify, NOTIFY_SOCKET="") as (proc, log, _):
        try:
            wait_until(
                lambda: sidecar_path(photo).exists() and not outbox(state_dir),
                60,
                "the sidecar at the next start",
            )
        finally:
            code, _ = stop(proc)
    assert code == 0, log.read_text()
    assert PERSON.rsplit("|", 1)[1] in sidecar_path(photo).read_text()
    assert sorted(p.name for p in share.path.iterdir()) == [
        PERSON_PHOTO,
        sidecar_path(photo).name,
        "lost+found",
    ]


@pytest.mark.usefixtures("default_models")
def test_a_writer_process_that_dies_mid_write_is_a_failed_write(
    tmp_path: Path, coco_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's writes run in a child: one that dies in the middle of rewriting a
    photo (here SIGKILLed by the embedded writer's kill hook after its backup, as the
    OOM killer would) costs that write, retried later, not the daemon."""
    catalog, settings = analysed_library(
        tmp_path, [PERSON_PHOTO], coco_dir, xmp={"embed": ["jpeg"]}
    )
    photo = tmp_path / "lib" / PERSON_PHOTO
    original = photo.read_bytes()
    monkeypatch.setenv(KILL_ENV, "2")
    with WriterProcess(tmp_path / "catalog.db") as writer:
        report = deliver_xmp(catalog, settings, writer=writer)
    assert report.failed == 1 and report.written == 0, report
    [(path, reason)] = report.errors
    assert path == str(photo) and "the writing process ended (killed by SIGKILL)" in reason
    assert photo.read_bytes() == original
    [(attempts, last_error)] = catalog.con.execute(
        "SELECT attempts, last_error FROM outbox"
    ).fetchall()
    assert attempts == 1 and "killed by SIGKILL" in last_error

    monkeypatch.delenv(KILL_ENV)
    with WriterProcess(tmp_path / "catalog.db") as writer:
        report = deliver_xmp(catalog, settings, now=math.inf, writer=writer)
    assert report.written == 1 and report.failed == 0, report
    assert PERSON.rsplit("|", 1)[1].encode() in photo.read_bytes()
    assert sorted(p.name for p in photo.parent.iterdir()) == [PERSON_PHOTO]  # no backup left
    catalog.close()
