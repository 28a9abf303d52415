"""plugins/tagd: the Stash plugin task, run as Stash runs it (JSON in, JSON out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, require_models, write_config

PLUGIN = REPO / "plugins" / "tagd"


def fake_tagd(tmp_path: Path, code: int = 0) -> tuple[Path, Path]:
    """A stand-in `tagd` executable that records its arguments (one per line)."""
    record = tmp_path / "args.txt"
    script = tmp_path / "tagd"
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\necho "scanned from stash"\n'
        f'echo "boom" >&2\nexit {code}\n'
    )
    script.chmod(0o755)
    return script, record


def run_task(
    tmp_path: Path,
    mode: str,
    tagd: Path | str,
    state: Path | None = None,
    sock: Path | None = None,
) -> dict[str, str]:
    """The plugin as Stash runs it: JSON on stdin, JSON on stdout (`sock`: $TAGD_SOCKET)."""
    stdin = {
        "server_connection": {"Scheme": "http", "Port": 9999, "SessionCookie": None},
        "args": {"mode": mode},
    }
    env = {**os.environ, "TAGD_BIN": str(tagd), "TAGD_STATE_DIR": str(state or tmp_path / "state")}
    env.pop("TAGD_SOCKET", None)
    if sock is not None:
        env["TAGD_SOCKET"] = str(sock)
    done = subprocess.run(
        [sys.executable, str(PLUGIN / "tagd_task.py")],
        input=json.dumps(stdin),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout)


def test_manifest_declares_every_task() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((PLUGIN / "tagd.yml").read_text())
    assert manifest["interface"] == "raw" and manifest["exec"][0] == "python"
    assert manifest["exec"][1].endswith("tagd_task.py")
    modes = {t["name"]: t["defaultArgs"]["mode"] for t in manifest["tasks"]}
    assert modes == {
        "Scan now": "scan",
        "Tag files marked TagMe": "tagme",
        "Pause tagging": "pause",
        "Resume tagging": "resume",
    }


def test_pause_needs_a_running_daemon(tmp_path: Path) -> None:
    """Pause and resume act on the daemon's scans: without one, a clear error (no
    `tagd scan` is started for them)."""
    tagd, record = fake_tagd(tmp_path)
    for mode in ("pause", "resume"):
        result = run_task(tmp_path, mode, tagd)
        assert result["error"] == f"no tagd daemon runs: there is no scanning to {mode}"
    assert not record.exists()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("scan", ["scan", "--from-stash"]), ("tagme", ["scan", "--from-stash", "--tagme-only"])],
)
def test_task_runs_tagd_scan_from_stash(tmp_path: Path, mode: str, expected: list[str]) -> None:
    tagd, record = fake_tagd(tmp_path)
    assert run_task(tmp_path, mode, tagd) == {"output": "scanned from stash"}
    assert record.read_text().splitlines() == expected


def test_task_reports_a_failed_scan(tmp_path: Path) -> None:
    tagd, _ = fake_tagd(tmp_path, code=2)
    assert run_task(tmp_path, "tagme", tagd) == {"error": "tagd exited 2: boom"}
    assert "error" in run_task(tmp_path, "nonsense", tagd)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the plugin as another user")
def test_a_socket_stash_may_not_use_is_reported_not_bypassed(tmp_path: Path) -> None:
    """Stash runs as another user than the daemon: with the default socket mode
    (0o660) it gets in as a member of the daemon's group; otherwise the socket
    it may not connect to is explained (and no second tagd is started to
    compete for the state directory)."""
    import shutil
    import tempfile

    from tagd.config import Settings
    from tagd.service.control import ControlSocket

    python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if python is None:
        pytest.skip("no system python3 for an unprivileged user")
    # A folder the other user can traverse (pytest's tmp is root-only).
    shared = Path(tempfile.mkdtemp(prefix="tagd-plugin-"))
    try:
        shared.chmod(0o755)
        plugin = shared / "tagd_task.py"
        shutil.copyfile(PLUGIN / "tagd_task.py", plugin)
        plugin.chmod(0o644)
        sock = shared / "tagd.sock"
        mode = Settings().daemon.control_socket_mode
        answer = {"ok": True, "message": "stash: 0 files to scan"}
        control = ControlSocket(sock, mode, lambda c, w, g: answer)

        def as_stash(groups: list[int]) -> dict[str, str]:
            done = subprocess.run(
                [python, str(plugin)],
                input=json.dumps({"args": {"mode": "tagme"}}),
                capture_output=True,
                text=True,
                env={
                    "PATH": "/usr/bin:/bin",
                    "TAGD_SOCKET": str(sock),
                    "TAGD_STATE_DIR": str(shared / "state"),
                    "TAGD_BIN": "/nonexistent/tagd",
                    "HOME": str(shared),
                },
                user=65534,
                group=65534,
                extra_groups=groups,
                timeout=60,
                check=True,
            )
            return json.loads(done.stdout)

        try:
            error = as_stash([])["error"]
            in_group = as_stash([sock.stat().st_gid])
        finally:
            control.close()
        assert "Permission denied" in error and "daemon.control_socket_mode" in error, error
        assert "Group=" in error and "TAGD_SOCKET" in error
        assert in_group == {"output": "tagd daemon: stash: 0 files to scan"}
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_daemon_that_refuses_too_many_requests_is_reported(tmp_path: Path) -> None:
    """The control socket's rate limit: the task says so and when to try again,
    and runs no tagd of its own."""
    from tagd.service.control import BURST, ControlSocket, ask

    sock = tmp_path / "tagd.sock"
    control = ControlSocket(sock, 0o600, lambda c, w, g: {"ok": True, "message": "done"})
    try:
        for _ in range(BURST):
            assert ask(sock, "status")["ok"]
        tagd, record = fake_tagd(tmp_path)
        answer = run_task(tmp_path, "scan", tagd, sock=sock)
    finally:
        control.close()
    assert answer["error"].startswith("tagd daemon: too many requests, try again in "), answer
    assert not record.exists()


# ---------------------------------------------------------------- what Stash shows


def stash_log(stderr: str) -> list[tuple[str, str]]:
    """(level, text) of each stderr line in Stash's plugin log protocol
    (pkg/logger/plugin.go: \\x01 LEVEL \\x02 TEXT)."""
    out = []
    for line in stderr.splitlines():
        if len(line) >= 3 and line[0] == "\x01" and line[2] == "\x02":
            out.append((line[1], line[3:].strip()))
    return out


def test_the_outcome_shows_in_stashs_log(tmp_path: Path) -> None:
    """Stash logs a raw plugin's output at debug level only: the task also tells
    its summary (info) or its failure (error) in the plugin log protocol."""
    tagd, _ = fake_tagd(tmp_path)
    stdin = json.dumps({"args": {"mode": "scan"}})
    env = {**os.environ, "TAGD_BIN": str(tagd), "TAGD_STATE_DIR": str(tmp_path / "state")}
    env.pop("TAGD_SOCKET", None)
    run = [sys.executable, str(PLUGIN / "tagd_task.py")]
    done = subprocess.run(run, input=stdin, capture_output=True, text=True, env=env, check=True)
    lines = stash_log(done.stderr)
    assert ("i", "scanned from stash") in lines and ("i", "tagd: scanned from stash") in lines
    (tmp_path / "f").mkdir()
    failing, _ = fake_tagd(tmp_path / "f", code=2)
    env["TAGD_BIN"] = str(failing)
    done = subprocess.run(run, input=stdin, capture_output=True, text=True, env=env, check=True)
    assert ("e", "tagd: tagd exited 2: boom") in stash_log(done.stderr)
    assert json.loads(done.stdout) == {"error": "tagd exited 2: boom"}


def test_a_cancelled_task_takes_its_tagd_scan_along(tmp_path: Path) -> None:
    """Stash cancels a task by killing its process (SIGKILL): the `tagd scan` it
    started (here waiting on a Stash that takes minutes to answer) must not go
    on alone."""
    import signal

    import psutil
    from stash_server import StashServer
    from test_stash import only_objects

    tagd = Path(sys.executable).with_name("tagd")
    if not tagd.is_file():
        pytest.skip(f"no tagd executable next to {sys.executable}")
    require_models("yolox-nano")
    server = StashServer(slow_seconds=120).start()
    server.mode = "slow"
    config = write_config(
        tmp_path / "config.toml",
        only_objects()
        + f'[stash]\nenabled = true\nurl = "{server.url}"\ntimeout = 300.0\nretries = 0\n',
    )
    env = {
        **os.environ,
        "TAGD_BIN": str(tagd),
        "TAGD_CONFIG": str(config),
        "TAGD_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("TAGD_SOCKET", None)
    task = subprocess.Popen(
        [sys.executable, str(PLUGIN / "tagd_task.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert task.stdin is not None
        task.stdin.write(json.dumps({"args": {"mode": "scan"}}).encode())
        task.stdin.close()
        end = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < end:
            children = psutil.Process(task.pid).children()
            talking = [
                c
                for c in children
                for conn in c.net_connections("tcp")
                if conn.raddr and conn.raddr.port == server.port
            ]
            if talking:
                break  # tagd scan is now waiting on Stash's answer
            time.sleep(0.05)
        [child] = children
        assert "scan" in child.cmdline()
        task.send_signal(signal.SIGKILL)  # what Stash's Stop() does
        task.wait(10)
        _, alive = psutil.wait_procs([child], timeout=15)
        assert alive == [], "tagd scan kept running after its task was cancelled"
    finally:
        if task.poll() is None:
            task.kill()
        server.mode = "ok"
        server.stop()
