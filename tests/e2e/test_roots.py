"""Library roots that cannot be scanned (an unmounted share, a typo, a file):
reported by name, skipped without forgetting anything, `tagd scan` exits 2 and
the daemon keeps running and shows them in `tagd status`."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import run_tagd, write_config
from test_service import running_daemon, stop, wait_until

from tagd.catalog.catalog import Catalog
from tagd.scan.roots import root_problem

# No analyzer: these tests are about roots, and loading no model keeps them fast.
NO_MODELS = (
    "".join(
        f"[{name}]\nenabled = false\n"
        for name in ("objects", "ocr", "faces", "concepts", "clip", "duplicates", "quality")
    )
    + "[xmp]\nenabled = false\n"
)


def test_root_problems_name_the_root_and_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    photo = folder / "a.jpg"
    photo.write_bytes(b"\xff\xd8")
    assert root_problem(str(folder)) is None
    missing = tmp_path / "nope"
    assert root_problem(str(missing)) == f"{missing}: does not exist (not mounted?)"
    assert "not a folder" in (root_problem(str(photo)) or "")
    assert root_problem(str(photo), folder=False) is None  # a PATH may be one file
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert root_problem(str(fifo), folder=False) is None  # checked without blocking


def test_scan_skips_missing_roots_exits_2_and_forgets_nothing(
    tmp_path: Path, state_dir: Path, make_jpeg, cli
) -> None:
    nas = tmp_path / "nas"
    make_jpeg(nas / "a.jpg")
    local = tmp_path / "local"
    make_jpeg(local / "b.jpg", seed=1)
    config = write_config(
        tmp_path / "config.toml", NO_MODELS + f'[library]\nroots = ["{nas}", "{local}"]\n'
    )
    code, out, err = cli("--config", config, "scan")
    assert code == 0, err
    assert "indexed 2 files: 2 new" in out

    # The share goes away (unmounted) and a root names a file by mistake.
    nas.rename(tmp_path / "elsewhere")
    photo = make_jpeg(tmp_path / "c.jpg", seed=2)
    config = write_config(
        tmp_path / "config.toml",
        NO_MODELS + f'[library]\nroots = ["{nas}", "{local}", "{photo}"]\n',
    )
    code, out, err = cli("--config", config, "scan")
    assert code == 2, (out, err)
    assert f"tagd: {nas}: does not exist (not mounted?); skipped" in err
    assert f"tagd: {photo}: not a folder" in err
    assert "Traceback" not in err
    assert "indexed 1 file: 0 new, 0 changed, 0 moved, 0 deleted" in out  # local still scanned
    with Catalog(state_dir / "catalog.db") as catalog:
        assert str(nas / "a.jpg") in catalog.files_under(str(nas))  # not forgotten

    # Only bad roots: nothing to do, still exit 2 (and no model is loaded).
    code, _, err = cli("scan", tmp_path / "missing")
    assert code == 2 and "does not exist" in err


def test_daemon_keeps_running_and_status_shows_a_missing_root(tmp_path: Path, make_jpeg) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    nas = tmp_path / "nas"  # not there when the daemon starts
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "config.toml",
        NO_MODELS
        + f'[library]\nroots = ["{lib}", "{nas}"]\n'
        + '[daemon]\nschedule = "1s"\nwatch = false\n',
    )
    with running_daemon(tmp_path, state, config) as (proc, log, _):
        env = os.environ | {"TAGD_STATE_DIR": str(state), "XDG_CONFIG_HOME": str(tmp_path)}
        try:
            wait_until(lambda: "does not exist" in log.read_text(), 60, "the missing root logged")
            done = run_tagd("--config", config, "status", env=env)
            assert f"library root {nas}: does not exist (not mounted?)" in done.stdout, done.stdout
            assert proc.poll() is None, log.read_text()
            # The share is mounted: the next scheduled scan takes it in, status is clear.
            make_jpeg(nas / "b.jpg", seed=1)

            def scanned() -> bool:
                with Catalog(state / "catalog.db") as catalog:
                    return bool(catalog.files_under(str(nas)))

            wait_until(scanned, 60, "the share scanned once it is back")
            wait_until(
                lambda: (
                    "library root" not in run_tagd("--config", config, "status", env=env).stdout
                ),
                30,
                "status without the root problem",
            )
        finally:
            code, _ = stop(proc)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
