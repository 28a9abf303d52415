"""plugins/tagd: the Stash plugin task, run as Stash runs it (JSON in, JSON out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

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


def test_manifest_declares_both_tasks() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((PLUGIN / "tagd.yml").read_text())
    assert manifest["interface"] == "raw" and manifest["exec"][0] == "python"
    assert manifest["exec"][1].endswith("tagd_task.py")
    modes = {t["name"]: t["defaultArgs"]["mode"] for t in manifest["tasks"]}
    assert modes == {"Scan now": "scan", "Tag files marked TagMe": "tagme"}


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
        control = ControlSocket(sock, mode, lambda c, w: answer)

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
    control = ControlSocket(sock, 0o600, lambda c, w: {"ok": True, "message": "done"})
    try:
        for _ in range(BURST):
            assert ask(sock, "status")["ok"]
        tagd, record = fake_tagd(tmp_path)
        answer = run_task(tmp_path, "scan", tagd, sock=sock)
    finally:
        control.close()
    assert answer["error"].startswith("tagd daemon: too many requests, try again in "), answer
    assert not record.exists()
