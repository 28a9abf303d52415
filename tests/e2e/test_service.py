"""`tagd run` as a service: the real daemon in a subprocess on real photos
(scheduled scans, inotify watching, SIGHUP, SIGTERM mid-batch), the sd_notify
protocol on a real AF_UNIX socket, the instance lock, journald log lines, the
systemd unit (systemd-analyze verify) and `tagd doctor`."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from conftest import PERSON_PHOTO, REPO, write_config
from test_end_to_end import assert_sidecars_match_catalog, db_rows

from tagd.service import logs
from tagd.service.lock import InstanceLock, InstanceLockError, holder
from tagd.service.notify import Notifier, watchdog_interval
from tagd.service.watch import Debouncer

UNIT = REPO / "systemd" / "tagd.service"
DROP_IN = REPO / "systemd" / "tagd.service.d" / "limits.conf.example"


# ---------------------------------------------------------------- helpers


class NotifySocket:
    """What systemd does for Type=notify: a datagram socket that collects messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.address = address
        self.messages: list[str] = []
        self._next = 0  # the first message wait_for has not gone past
        self._closed = False

    def collect(self) -> NotifySocket:
        """Read every message as it comes, in a thread, as systemd does. Unread, the
        socket's queue fills after a few messages and each later one stalls the
        daemon for the notifier's send timeout (a wedged systemd: a test of its own)."""
        threading.Thread(target=self._collect, daemon=True).start()
        return self

    def _collect(self) -> None:
        while not self._closed:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return

    def drain(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except (TimeoutError, BlockingIOError):
                return

    def wait_for(self, needle: str, timeout: float, proc: subprocess.Popen | None = None) -> str:
        """The first message with `needle` among those no earlier wait_for went past."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.drain()
            # Index by index: a collecting thread may append at any moment.
            while self._next < len(self.messages):
                self._next += 1
                if needle in self.messages[self._next - 1]:
                    return self.messages[self._next - 1]
            if proc is not None and proc.poll() is not None:
                break
        raise AssertionError(f"no {needle!r} notification; got {self.messages[-8:]}")

    def close(self) -> None:
        self._closed = True
        self.sock.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def analysed_paths(state: Path) -> set[str]:
    if not (state / "catalog.db").exists():
        return set()
    return {
        r[0]
        for r in db_rows(
            state,
            "SELECT f.path FROM files f JOIN analyses a ON a.content_id = f.content_id",
        )
    }


def tagged_and_written(state: Path, photos: list[Path]) -> bool:
    """Analysed, and the sidecar written (nothing left in the outbox for them)."""
    done = analysed_paths(state)
    if not all(str(p) in done for p in photos):
        return False
    queued = {
        r[0] for r in db_rows(state, "SELECT f.path FROM outbox o JOIN files f ON f.id = o.file_id")
    }
    return not any(str(p) in queued for p in photos)


def assert_consistent(state: Path, photos: list[Path]) -> None:
    """integrity_check ok; one analysis per analysed content; no detection or tag
    without its analysis; nothing left in the outbox; sidecars equal the catalog."""
    assert db_rows(state, "PRAGMA integrity_check") == [("ok",)]
    per = db_rows(
        state,
        "SELECT content_id, analyzer, COUNT(*) FROM analyses GROUP BY content_id, analyzer "
        "HAVING COUNT(*) > 1",
    )
    assert per == []
    orphans = db_rows(
        state,
        "SELECT COUNT(*) FROM detections d WHERE NOT EXISTS (SELECT 1 FROM analyses a "
        "WHERE a.content_id = d.content_id AND a.analyzer = d.analyzer)",
    )
    assert orphans == [(0,)]
    untagged = db_rows(
        state,
        "SELECT COUNT(*) FROM tags t WHERE NOT EXISTS (SELECT 1 FROM analyses a "
        "WHERE a.content_id = t.content_id)",
    )
    assert untagged == [(0,)]
    assert db_rows(state, "SELECT COUNT(*) FROM outbox") == [(0,)]
    assert_sidecars_match_catalog(state, photos)


def start_daemon(
    tmp_path: Path, state: Path, config: Path, notify: NotifySocket, **extra_env: str
) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "daemon.log"
    env = os.environ | {
        "TAGD_STATE_DIR": str(state),
        "NOTIFY_SOCKET": notify.address,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        **extra_env,
    }
    env.pop("TAGD_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagd", "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=env,
    )
    return proc, log


@contextmanager
def running_daemon(
    tmp_path: Path,
    state: Path,
    config: Path,
    notify: NotifySocket | None = None,
    **extra_env: str,
) -> Iterator[tuple[subprocess.Popen, Path, NotifySocket]]:
    """start_daemon, then on the way out: killed if still running, waited for, and
    the notify socket (one at tmp_path/notify.sock unless given) closed."""
    if notify is None:
        notify = NotifySocket(str(tmp_path / "notify.sock"))
    notify.collect()
    try:
        proc, log = start_daemon(tmp_path, state, config, notify, **extra_env)
        try:
            yield proc, log, notify
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        notify.close()


def copy_in(src: Path, dest: Path, atomic: bool) -> Path:
    """A photo arriving in the library: written in place, or under a hidden name
    and renamed (what rsync and most uploaders do)."""
    if atomic:
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(src, tmp)
        os.rename(tmp, dest)
    else:
        shutil.copyfile(src, dest)
    return dest


def stop(proc: subprocess.Popen) -> tuple[int, float]:
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return code, time.monotonic() - start


# ---------------------------------------------------------------- the daemon, end to end


@pytest.mark.usefixtures("default_models")
def test_run_schedules_watches_reloads_and_stops_cleanly(
    tmp_path: Path, state_dir: Path, coco_dir: Path, coco_photos, cli
) -> None:
    lib = tmp_path / "library"
    first = coco_photos(2, dest=lib, first=PERSON_PHOTO)
    spare = sorted(p for p in coco_dir.glob("*.jpg") if p.name not in {f.name for f in first})
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n'
        "[runtime]\nidle_unload = 1.0\n"
        '[daemon]\nschedule = "3s"\nwatch = true\nwatch_debounce = 0.3\nlog_level = "debug"\n',
    )
    notify = NotifySocket(f"@tagd-test-{os.getpid()}-{time.monotonic_ns()}")
    # systemd's WatchdogSec=2: the daemon must ping every second.
    with running_daemon(tmp_path, state_dir, config, notify, WATCHDOG_USEC="2000000") as (
        proc,
        log,
        _,
    ):
        notify.wait_for("READY=1", 60, proc)
        wait_until(lambda: tagged_and_written(state_dir, first), 30, "the first scan")
        notify.wait_for("WATCHDOG=1", 3, proc)
        # Low priority, for every thread of every process (the analysis process's
        # decode workers and model threads included, while it runs).
        pids = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        stats = [t for pid in pids for t in _task_stats(pid)]
        tids = [int(t.parent.name) for t in stats]
        assert {psutil.Process(t).ionice().ioclass for t in tids} == {psutil.IOPRIO_CLASS_IDLE}
        nices = {int(t.read_text().rsplit(")", 1)[1].split()[16]) for t in stats}
        assert nices == {15}, nices

        # New photos are tagged within seconds: one written in place, one renamed in.
        (lib / "new album").mkdir()
        added = [
            copy_in(spare[0], lib / spare[0].name, atomic=False),
            copy_in(spare[1], lib / "new album" / spare[1].name, atomic=True),
        ]
        took = wait_until(lambda: tagged_and_written(state_dir, added), 15, "new photos")
        assert took < 5
        # Idle for runtime.idle_unload: the analysis process ends, models and all.
        assert "models are released" in _wait_log(log, "models are released", 10)
        notify.wait_for("STATUS=idle", 10, proc)

        # A second daemon, or a scan of given paths, on the same state dir: exit 2
        # with the reason; a plain `tagd scan` is done by the daemon.
        code, _, err = cli("--config", config, "run")
        assert code == 2 and "already uses the state directory" in err, err
        code, _, err = cli("--config", config, "scan", lib)
        assert code == 2 and f"tagd run (pid {proc.pid})" in err and "USR1" in err, err
        code, out, err = cli("--config", config, "scan")
        assert code == 0 and f"the tagd daemon (pid {proc.pid}) runs" in out, err
        assert "tagd daemon: 4 files indexed (0 new, 0 changed), 0 analysed" in out, out

        code, out, _ = cli("--config", config, "status")
        assert code == 0, out
        assert f"daemon: running (pid {proc.pid})" in out
        assert "schedule: 3s; next scan: " in out and "(in " in out, out
        assert "watching: 1 folder(s)" in out
        assert "last scan: " in out and "throughput: " in out
        assert "queue: 0 files to analyse, 0 writes" in out

        # SIGHUP with a broken config: reported, and the daemon goes on with the old one.
        config.write_text(config.read_text() + "[objects]\nmin_score = 7\n")
        proc.send_signal(signal.SIGHUP)
        failed = notify.wait_for("STATUS=config reload failed", 10, proc)
        assert "objects.min_score" in failed
        assert proc.poll() is None
        late = copy_in(spare[2], lib / spare[2].name, atomic=True)
        wait_until(lambda: tagged_and_written(state_dir, [late]), 15, "a photo after SIGHUP")
        code, out, _ = cli("status")  # the file is broken: status reads the catalog only
        assert "config reload rejected" in out and "objects.min_score" in out

        # A good config is taken: the new schedule shows at once.
        config.write_text(config.read_text().replace("min_score = 7", "min_score = 0.05"))
        config.write_text(config.read_text().replace('schedule = "3s"', 'schedule = "1h"'))
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", 10, proc)
        code, out, _ = cli("--config", config, "status")
        assert "schedule: 1h; next scan: " in out and "config reload rejected" not in out

        code, took = stop(proc)
        assert code == 0, log.read_text()
        assert took < 10
        notify.wait_for("STOPPING=1", 1)
    text = log.read_text()
    assert "config not reloaded, running on the previous one" in text
    assert "Traceback" not in text
    assert "scan (start)" in text and "scan (schedule)" in text and "scan (watch)" in text
    assert holder(state_dir) is None
    assert_consistent(state_dir, [*first, *added, late])
    code, out, _ = cli("status")  # the file is still broken: status works without it
    assert "daemon: not running (stopped " in out


def _task_stats(pid: int) -> list[Path]:
    return [t / "stat" for t in Path(f"/proc/{pid}/task").iterdir()]


def _wait_log(log: Path, needle: str, timeout: float) -> str:
    wait_until(lambda: needle in log.read_text(), timeout, f"{needle!r} in the log")
    return log.read_text()


@pytest.mark.usefixtures("default_models")
def test_sigterm_mid_scan_exits_0_and_the_rest_is_done_later(
    tmp_path: Path, state_dir: Path, coco_photos, cli
) -> None:
    photos = coco_photos(48)
    lib = photos[0].parent
    config = write_config(
        tmp_path / "config.toml",
        f'profile = "low-power"\n[library]\nroots = ["{lib}"]\n'
        '[daemon]\nschedule = ""\nwatch = false\n',
    )
    with running_daemon(tmp_path, state_dir, config) as (proc, log, notify):
        notify.wait_for("READY=1", 60, proc)
        notify.wait_for("STATUS=analysing", 60, proc)
        wait_until(lambda: len(analysed_paths(state_dir)) > 0, 30, "a first batch")
        code, took = stop(proc)
    assert code == 0, log.read_text()
    assert took < 10
    done = analysed_paths(state_dir)
    assert 0 < len(done) < len(photos), "the scan was not stopped mid-way"
    assert_consistent(state_dir, photos)
    assert "scan (start) stopped early" in log.read_text()

    # A later scan does exactly the rest.
    code, out, err = cli("--config", config, "scan")
    assert code == 0, out + err
    assert f"analysed {len(photos) - len(done)} files" in out
    assert len(analysed_paths(state_dir)) == len(photos)
    assert_consistent(state_dir, photos)


# ---------------------------------------------------------------- parts


def test_notifier_speaks_sd_notify_on_a_real_socket(tmp_path: Path, monkeypatch) -> None:
    for address in (str(tmp_path / "n.sock"), f"@tagd-unit-{os.getpid()}"):
        server = NotifySocket(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        notifier = Notifier()
        assert notifier.enabled
        assert notifier.ready("idle, watching")
        assert notifier.status("analysing: 3/10 files\nsecond line")
        assert notifier.watchdog()
        assert notifier.reloading()
        assert notifier.stopping()
        server.drain()
        assert server.messages[0] == "READY=1\nSTATUS=idle, watching"
        assert server.messages[1] == "STATUS=analysing: 3/10 files second line"
        assert server.messages[2] == "WATCHDOG=1"
        assert server.messages[3].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert server.messages[4] == "STOPPING=1"
        notifier.close()
        server.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not Notifier().enabled and not Notifier().ready()  # outside systemd: no-op


def test_notifier_never_blocks_on_a_receiver_that_stopped_reading(tmp_path: Path) -> None:
    """A full socket buffer costs at most SEND_TIMEOUT per message, then messages drop."""
    from tagd.service.notify import SEND_TIMEOUT

    server = NotifySocket(str(tmp_path / "n.sock"))  # never drained
    notifier = Notifier(server.address)
    start = time.monotonic()
    sent = 0
    while notifier.status("analysing: " + "x" * 1000):
        sent += 1
        assert sent < 100_000, "the buffer never filled"
    assert time.monotonic() - start < 30
    again = time.monotonic()
    assert not notifier.status("still full")
    assert time.monotonic() - again <= SEND_TIMEOUT + 1.0
    notifier.close()
    server.close()


def test_watchdog_interval_is_half_the_timeout_for_this_process(monkeypatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None  # meant for another process


def test_instance_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    with InstanceLock(tmp_path, "tagd run"):
        assert holder(tmp_path) == (os.getpid(), "tagd run")
        with pytest.raises(InstanceLockError, match=rf"tagd run \(pid {os.getpid()}\).*USR1"):
            InstanceLock(tmp_path, "tagd scan").acquire()
    assert holder(tmp_path) is None
    with InstanceLock(tmp_path, "tagd scan"):
        pass


def test_scan_refuses_while_the_state_dir_is_locked(
    tmp_path: Path, state_dir: Path, make_jpeg, cli
) -> None:
    make_jpeg(tmp_path / "lib" / "a.jpg")
    with InstanceLock(state_dir, "tagd run"):
        code, _out, err = cli("scan", "--index-only", tmp_path / "lib")
    assert code == 2 and "already uses the state directory" in err
    code, _, err = cli("scan", "--index-only", tmp_path / "lib")
    assert code == 0, err


def test_debouncer_turns_a_burst_into_one_call() -> None:
    calls: list[set[str]] = []
    fired = threading.Event()

    def fire(keys: set[str]) -> None:
        calls.append(keys)
        fired.set()

    debouncer = Debouncer(0.3, fire, max_wait=5)
    try:
        for i in range(20):
            debouncer.add("/a" if i % 2 else "/b")
            time.sleep(0.02)
        assert not calls  # still inside the quiet window
        assert fired.wait(3)
        time.sleep(0.5)
        assert calls == [{"/a", "/b"}]
    finally:
        debouncer.close()


def test_journald_lines_carry_the_syslog_priority(tmp_path: Path, monkeypatch) -> None:
    out = (tmp_path / "stderr").open("w+")
    st = os.fstat(out.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    root = logging.getLogger()
    level = root.level
    try:
        logs.configure("info", stream=out)
        log = logging.getLogger("tagd.test")
        log.debug("hidden")
        log.info("hello")
        log.warning("careful")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        logs.set_level("warning")
        log.info("now hidden")
    finally:
        for h in [h for h in root.handlers if getattr(h, "_tagd", False)]:
            root.removeHandler(h)
        root.setLevel(level)
    out.seek(0)
    lines = out.read().splitlines()
    assert lines[0] == "<6>tagd.test: hello"
    assert lines[1] == "<4>tagd.test: careful"
    assert lines[2] == "<3>tagd.test: failed"
    assert all(line.startswith("<3>") for line in lines[3:]) and "ValueError: boom" in lines[-1]
    assert not any("hidden" in line for line in lines)


@pytest.mark.usefixtures("default_models")
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=tagd",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Nice=",
        "IOSchedulingClass=idle",
        "ExecReload=/bin/kill -HUP $MAINPID",
        " run\n",
    ):
        assert directive in text, directive
    # The unit names the install location; verify it against this checkout.
    unit = tmp_path / "tagd.service"
    unit.write_text(text.replace("/opt/tagd", str(REPO)))
    (tmp_path / "tagd.service.d").mkdir()
    (tmp_path / "tagd.service.d" / "limits.conf").write_text(DROP_IN.read_text())
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Unknown or misspelt keys are only warnings: there must be none.
    complaints = [line for line in done.stderr.splitlines() if str(tmp_path) in line]
    assert complaints == []
    assert "CPUQuota=" in DROP_IN.read_text() and "MemoryMax=" in DROP_IN.read_text()


@pytest.mark.usefixtures("default_models")
def test_doctor_reports_everything_and_survives_a_broken_config(
    tmp_path: Path, state_dir: Path, make_jpeg, cli
) -> None:
    make_jpeg(tmp_path / "lib" / "a.jpg")
    assert cli("scan", "--index-only", tmp_path / "lib")[0] == 0
    code, out, _err = cli("doctor")
    for needle in (
        "tagd 0.1.0, Python 3.",
        "config: built-in defaults (no config file): OK",
        "profile balanced: ",
        "cpu: ",
        "flags: ",
        "gpu: ",
        "onnxruntime ",
        "CPUExecutionProvider",
        "openvino ",
        "quick_check ok",
        "daemon: not running",
    ):
        assert needle in out, (needle, out)
    # The objects default, on the engine fetch measured faster here.
    used = r"picodet-s-416(-openvino)? \(objects, used\): picodet_s_416(\.onnx|_openvino\.xml): "
    assert re.search(used + "present, sha256 verified", out), out
    assert code == 0, out
    bad = write_config(tmp_path / "bad.toml", "[runtime]\nthreads = -1\n")
    code, out, _ = cli("--config", bad, "doctor")
    assert code == 1
    assert "INVALID" in out and "runtime.threads" in out and "cpu: " in out
