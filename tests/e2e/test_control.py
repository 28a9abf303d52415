"""The daemon's control socket: the protocol, request merging, the retry timer's
decision, and end to end a real `tagd run` doing what the Stash plugin and
`tagd scan` ask of it against the real-schema Stash server."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_tagd, write_config
from stash_server import StashServer
from test_service import analysed_paths, running_daemon, stop, wait_until
from test_stash import image_tags, only_objects
from test_stash_plugin import run_task

from tagd.catalog.catalog import Catalog
from tagd.config import Settings, parse_settings
from tagd.service.control import (
    BURST,
    REFILL,
    ControlError,
    ControlSocket,
    ask,
    socket_path,
)
from tagd.service.lock import holder_notes
from tagd.service.work import ScanRequest, merge

# ---------------------------------------------------------------- protocol


def test_socket_answers_commands_and_rejects_garbage(tmp_path: Path) -> None:
    asked: list[tuple[str, bool]] = []

    def handler(command: str, wait: bool, gone: Any) -> dict[str, Any]:
        asked.append((command, wait))
        if command == "status":
            raise RuntimeError("boom")  # a bug in a handler is an answer, not a crash
        return {"ok": True, "message": f"did {command}"}

    path = tmp_path / "c.sock"
    control = ControlSocket(path, 0o600, handler)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert ask(path, "scan", wait=True) == {"ok": True, "message": "did scan"}
        assert asked == [("scan", True)]
        answer = ask(path, "status")
        assert answer["ok"] is False and "boom" in answer["error"]
        assert "unknown command" in ask(path, "rm -rf")["error"]
        with socket.socket(socket.AF_UNIX) as sock:  # not JSON at all
            sock.connect(str(path))
            sock.sendall(b"hello\n")
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["ok"] is False and "bad request" in reply["error"]
        assert asked == [("scan", True), ("status", False)]
    finally:
        control.close()
    assert not path.exists()
    with pytest.raises(ControlError, match="no tagd daemon answers"):
        ask(path, "scan")
    with pytest.raises(ControlError, match="shorter path"):
        ControlSocket(tmp_path / ("x" * 120), 0o600, handler)


def test_socket_path_follows_the_config_and_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    settings = Settings()
    assert socket_path(settings, tmp_path) == tmp_path / "tagd.sock"
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/tagd")
    assert socket_path(settings, tmp_path) == Path("/run/tagd/tagd.sock")
    assert socket_path(parse_settings({"daemon": {"control_socket": ""}}), tmp_path) is None
    custom = parse_settings({"daemon": {"control_socket": "/srv/t.sock"}})
    assert socket_path(custom, tmp_path) == Path("/srv/t.sock")
    from tagd.config import ConfigError

    with pytest.raises(ConfigError, match=r"daemon\.control_socket_mode"):
        parse_settings({"daemon": {"control_socket_mode": 0o1777}})


def test_requests_are_rate_limited_and_refusals_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client in a loop gets a burst, then about one request a second; the
    rest is refused with when to try again, and the log gets one line, not one
    per refusal."""
    asked: list[str] = []
    path = tmp_path / "c.sock"
    control = ControlSocket(path, 0o600, lambda c, w, g: asked.append(c) or {"ok": True})
    try:
        start = time.monotonic()
        with caplog.at_level(logging.INFO, logger="tagd.service"):
            answers = [ask(path, "deliver") for _ in range(BURST + 20)]
        elapsed = time.monotonic() - start
        assert answers[:BURST] == [{"ok": True}] * BURST
        refused = [a for a in answers if not a["ok"]]
        assert refused and all(
            a == {"ok": False, "error": "too many requests, try again in 1 s"} for a in refused
        ), refused
        # A slow machine may see the bucket refill during the loop, no more.
        assert len(asked) == len(answers) - len(refused) <= BURST + 1 + elapsed / REFILL
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1 and "more than 5 at once" in lines[0], lines
        time.sleep(REFILL * 1.2)  # refilled: the next one goes through
        assert ask(path, "status") == {"ok": True}
    finally:
        control.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as other users")
def test_default_mode_lets_the_group_in_and_other_users_not(tmp_path: Path) -> None:
    """0o660 (the default): a member of the socket's group may ask, any other
    local user gets "Permission denied", explained."""
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="tagd-control-"))  # pytest's tmp is root-only
    try:
        shared.chmod(0o755)
        path = shared / "tagd.sock"
        mode = Settings().daemon.control_socket_mode
        control = ControlSocket(path, mode, lambda c, w, g: {"ok": True, "message": c})
        try:
            assert stat.S_IMODE(path.stat().st_mode) == 0o660

            def ask_as(groups: tuple[int, ...] = ()) -> str:
                """`ask` in a forked child that is user nobody (with `groups`)."""
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:  # the child: never back into pytest
                    try:
                        os.setgroups(list(groups))
                        os.setresgid(65534, 65534, 65534)
                        os.setresuid(65534, 65534, 65534)
                        try:
                            answer = str(ask(path, "scan"))
                        except ControlError as exc:
                            answer = str(exc)
                        os.write(write, answer.encode())
                    finally:
                        os._exit(0)
                os.close(write)
                with os.fdopen(read) as out:
                    answer = out.read()
                os.waitpid(pid, 0)
                return answer

            refused = ask_as()
            assert "Permission denied" in refused and "daemon.control_socket_mode" in refused
            assert ask_as((path.stat().st_gid,)) == "{'ok': True, 'message': 'scan'}"
        finally:
            control.close()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_waiting_requests_merge_into_few_jobs() -> None:
    def req(source: str, roots: set[str] | None = None, trigger: str = "t") -> ScanRequest:
        return ScanRequest(trigger, roots, source)

    jobs = merge([req("library", {"/a"}), req("library", {"/b"}), req("deliver")])
    assert [(j.source, j.roots) for j in jobs] == [("library", {"/a", "/b"})]
    jobs = merge([req("tagme"), req("stash"), req("library", None), req("library", {"/a"})])
    assert [(j.source, j.roots) for j in jobs] == [("library", None), ("stash", None)]
    [only] = merge([req("deliver", trigger="retry"), req("deliver", trigger="control")])
    assert (only.source, only.trigger) == ("deliver", "control+retry")


def test_retry_timer_queues_a_delivery_only_when_writes_are_due(tmp_path: Path) -> None:
    """The main loop's decision, on a real catalog (no thread runs: the queue is read)."""
    import threading

    from tagd.service.loop import RETRY_CHECK, Service
    from tagd.service.notify import Notifier
    from tagd.service.work import Generation, ScanWorker

    catalog = Catalog(tmp_path / "catalog.db")
    with catalog.transaction():
        cid = catalog.ensure_content("fp", "image")
        fid = catalog.add_file(str(tmp_path / "a.jpg"), "image", 1, 1, cid, None)
        catalog.enqueue([fid], "stash")
        catalog.outbox_failed(fid, "stash", "Stash down", 3600)

    def decide(settings: Settings, now_offset: float = 0.0) -> list[str]:
        service = Service(None, settings)
        worker = ScanWorker(
            tmp_path / "catalog.db", Generation(settings), Notifier(), threading.Event()
        )
        service.worker, service._meta = worker, catalog
        service._last_retry_check = time.monotonic() - RETRY_CHECK - 1 + now_offset
        service._retry_due()
        queued = []
        while not worker.requests.empty():
            r = worker.requests.get_nowait()
            queued.append(f"{r.source}:{r.trigger}" if r else "stop")
        return queued

    on = parse_settings({"stash": {"enabled": True}})
    assert decide(on) == []  # backing off for an hour
    catalog.con.execute("UPDATE outbox SET due = ?", (time.time() - 1,))
    assert decide(on) == ["deliver:retry"]
    assert decide(on, now_offset=RETRY_CHECK) == []  # looked too recently
    assert decide(parse_settings({"xmp": {"enabled": True}})) == []  # Stash off: not its sink
    catalog.close()


# ---------------------------------------------------------------- the daemon, end to end


def plugin_task(state: Path, mode: str) -> dict[str, str]:
    """The Stash plugin's task; a tagd it could run instead does not exist."""
    return run_task(state.parent, mode, "/nonexistent/tagd", state=state)


@pytest.mark.usefixtures("default_models")
def test_daemon_does_what_the_plugin_and_tagd_scan_ask(
    tmp_path: Path, coco_photos: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = StashServer().start()
    lib = tmp_path / "lib"
    marked, plain, later = coco_photos(3, dest=lib)
    later_copy = later.read_bytes()
    later.unlink()  # arrives after Stash went down
    st = server.state
    tagme = st.add_tag("tagd_TagMe")
    st.add_image(f"/data/{marked.name}", [tagme])
    st.add_image(f"/data/{plain.name}")
    st.add_image(f"/data/{later.name}")
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "config.toml",
        only_objects()
        + f'[library]\nroots = ["{lib}"]\n'
        + '[daemon]\nschedule = ""\nscan_on_start = false\nwatch = false\n'
        + f'[stash]\nenabled = true\nurl = "{server.url}"\ntimeout = 10.0\nretries = 0\n'
        + 'tagme_schedule = ""\n'  # only when asked, in this test
        + f'path_mappings = [{{ stash = "/data", local = "{lib}" }}]\n',
    )
    with running_daemon(tmp_path, state, config, NOTIFY_SOCKET="") as (proc, log, _):
        try:
            wait_until(lambda: "socket" in holder_notes(state), 60, "the control socket")
            sock = Path(holder_notes(state)["socket"])
            assert sock == state / "tagd.sock" and stat.S_IMODE(sock.stat().st_mode) == 0o660

            # The plugin's "Tag files marked TagMe": the daemon lists, scans, writes.
            answer = plugin_task(state, "tagme")
            assert "error" not in answer, answer
            assert "stash: 1 file to scan, 0 missing here" in answer["output"]
            assert "1 analysed (0 failed)" in answer["output"]
            tags = image_tags(server)
            assert "tagd_Tagged" in tags[f"/data/{marked.name}"]
            assert "tagd_TagMe" not in tags[f"/data/{marked.name}"]
            assert tags[f"/data/{plain.name}"] == []

            # `tagd scan --from-stash` while the daemon runs: asked, not refused.
            env = os.environ | {"TAGD_STATE_DIR": str(state), "XDG_CONFIG_HOME": str(tmp_path)}
            done = run_tagd("--config", config, "scan", "--from-stash", env=env)
            assert done.returncode == 0, done.stderr
            assert "tagd daemon: stash: 2 files to scan, 1 missing here" in done.stdout
            assert "tagd_Tagged" in image_tags(server)[f"/data/{plain.name}"]

            # Stash goes down; a library scan tags the new photo and keeps its write queued.
            server.stop()
            later.write_bytes(later_copy)
            reply = ask(sock, "scan", wait=True, timeout=300)
            assert reply["ok"] and "1 analysed" in reply["message"], reply
            assert "queued for a retry" in reply["message"]
            done = run_tagd("--config", config, "status", env=env)
            assert "(stash 1: 1 waiting for a retry, next at " in done.stdout, done.stdout
            assert f"stash {later}" in done.stdout and "cannot reach Stash" in done.stdout
            server.start()  # back, same port and state
            reply = ask(sock, "deliver", wait=True, timeout=60)
            assert reply["ok"] and "stash: 1 updated" in reply["message"], reply
            assert "tagd_Tagged" in image_tags(server)[f"/data/{later.name}"]
            assert ask(sock, "status")["state"] == "idle"
            done = run_tagd("--config", config, "doctor", env=env)
            assert f"control socket: {sock} (mode 660): answers, idle" in done.stdout, done.stdout
        finally:
            code, _ = stop(proc)
            server.stop()
    text = log.read_text()
    assert code == 0, text
    assert "control socket: tagme requested" in text
    assert not (state / "tagd.sock").exists()
    assert server.invalid == []


def test_plugin_explains_an_unreachable_daemon(tmp_path: Path) -> None:
    """A daemon holding the lock without a control socket: a clear error, no subprocess."""
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, time\n"
            "from tagd.service.lock import InstanceLock\n"
            f"lock = InstanceLock(pathlib.Path({str(state)!r}), 'tagd run')\n"
            "lock.acquire(); print('locked', flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        answer = plugin_task(state, "scan")
        assert f"(pid {holder.pid}) runs but its control socket" in answer["error"]
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: holder.poll() is not None, 5, "the lock holder to end")


@pytest.mark.usefixtures("default_models")
def test_daemon_picks_up_files_marked_tagme_in_stash(tmp_path: Path, coco_photos: Any) -> None:
    """[stash] tagme_schedule: mark a file in Stash, the daemon tags it unasked."""
    server = StashServer().start()
    lib = tmp_path / "lib"
    [photo] = coco_photos(1, dest=lib)
    st = server.state
    image = st.add_image(f"/data/{photo.name}")
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "config.toml",
        only_objects()
        + '[daemon]\nschedule = ""\nscan_on_start = false\nwatch = false\nlog_level = "debug"\n'
        + f'[stash]\nenabled = true\nurl = "{server.url}"\ntimeout = 10.0\nretries = 0\n'
        + 'tagme_schedule = "1s"\n'
        + f'path_mappings = [{{ stash = "/data", local = "{lib}" }}]\n',
    )
    with running_daemon(tmp_path, state, config, NOTIFY_SOCKET="") as (proc, log, _):
        try:
            wait_until(lambda: "nothing to scan" in log.read_text(), 30, "a TagMe look")
            assert st.images[image].tag_ids == []  # nothing marked: nothing done
            st.images[image].tag_ids.append(st.add_tag("tagd_TagMe"))

            def done() -> bool:  # Tagged is added, then TagMe removed: two requests
                tags = image_tags(server)[f"/data/{photo.name}"]
                return "tagd_Tagged" in tags and "tagd_TagMe" not in tags

            wait_until(done, 30, "TagMe swapped for Tagged")
        finally:
            code, _ = stop(proc)
            server.stop()
    assert code == 0, log.read_text()
    assert server.invalid == []


# ---------------------------------------------------------------- an asker that hangs up


def test_a_waiting_asker_that_hangs_up_is_noticed(tmp_path: Path) -> None:
    """Stash kills a cancelled task's process: its end of the socket closes, and the
    handler learns it while the work goes on (to stop the work it asked for)."""
    import threading

    seen: list[bool] = []
    noticed = threading.Event()

    def handler(command: str, wait: bool, gone: Any) -> dict[str, Any]:
        seen.append(gone())  # connected: not gone
        end = time.monotonic() + 10
        while time.monotonic() < end and not gone():
            time.sleep(0.05)
        noticed.set()
        return {"ok": True}

    path = tmp_path / "c.sock"
    control = ControlSocket(path, 0o600, handler)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            sock.sendall(b'{"command": "scan", "wait": true}\n')
            time.sleep(0.5)
            assert not noticed.is_set()
        assert noticed.wait(5) and seen == [False]
    finally:
        control.close()


@pytest.mark.usefixtures("default_models")
def test_the_daemon_stops_a_scan_whose_asker_hung_up(tmp_path: Path, coco_photos: Any) -> None:
    lib = tmp_path / "lib"
    photos = coco_photos(40, dest=lib)
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[runtime]\nbatch_size = 1\n'
        + '[daemon]\nschedule = ""\nscan_on_start = false\nwatch = false\n',
    )
    with running_daemon(tmp_path, state, config, NOTIFY_SOCKET="") as (proc, log, _):
        try:
            wait_until(lambda: "socket" in holder_notes(state), 60, "the control socket")
            sock_path = Path(holder_notes(state)["socket"])
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(sock_path))
                sock.sendall(b'{"command": "scan", "wait": true}\n')
                wait_until(lambda: analysed_paths(state), 120, "the scan to analyse a file")
            # Hung up: the daemon stops after the batch in flight.
            wait_until(lambda: "went away" in log.read_text(), 30, "the hang-up noticed")
            wait_until(lambda: "stopped early" in log.read_text(), 60, "the scan to stop")
            analysed = len(analysed_paths(state))
            assert 1 <= analysed < len(photos), analysed
            assert ask(sock_path, "status")["ok"]  # and it serves on
        finally:
            code, _ = stop(proc)
        assert code == 0
