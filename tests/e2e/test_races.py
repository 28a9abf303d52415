"""The library changing under tagd: a photo still being copied while a scan reads
it, a photo deleted between its analysis and its sidecar (or while the sidecar is
written), and a folder made writable again between two scans. Real COCO JPEGs,
the real objects model, a real catalog, `tagd scan` and `tagd run` as they run."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import PERSON_PHOTO, TESTS, write_config
from test_end_to_end import db_rows
from test_service import running_daemon, stop, wait_until

from tagd.catalog.catalog import Catalog
from tagd.catalog.connect import CatalogError, DatabaseError
from tagd.config import Settings, parse_settings
from tagd.paths import models_dir
from tagd.pipeline import Pipeline, build_analyzers
from tagd.scan.index import index_roots, make_walker
from tagd.service.control import ask
from tagd.service.lock import holder_notes
from tagd.sinks.xmp.deliver import deliver_xmp
from tagd.sinks.xmp.sidecar import XmpChange, sidecar_path

PERSON = "AI|Objects|person"
DIGIKAM_SIDECAR = TESTS / "data" / "xmp" / "digikam.xmp"


def only_objects() -> dict[str, dict[str, bool]]:
    """Every analyzer off but objects (fast, and it finds the person); sinks untouched."""
    defaults = Settings()
    return {
        f.name: {"enabled": False}
        for f in dataclasses.fields(defaults)
        if f.name not in ("objects", "xmp", "stash")
        and hasattr(getattr(defaults, f.name), "enabled")
    }


def config_text(lib: Path, extra: str = "") -> str:
    sections = "".join(f"[{name}]\nenabled = false\n" for name in only_objects())
    return sections + f'[library]\nroots = ["{lib}"]\n' + extra


def recorded(state: Path, photo: Path) -> tuple[int | None, bool, set[str]]:
    """(size the catalog knows, analysed, tags) of one photo."""
    rows = db_rows(
        state,
        "SELECT f.size, EXISTS (SELECT 1 FROM analyses a WHERE a.content_id = f.content_id) "
        "FROM files f WHERE f.path = ?",
        (str(photo),),
    )
    if not rows:
        return None, False, set()
    tags = db_rows(
        state,
        "SELECT t.name FROM tags t JOIN files f ON f.content_id = t.content_id WHERE f.path = ?",
        (str(photo),),
    )
    return rows[0][0], bool(rows[0][1]), {t for (t,) in tags}


class SlowCopy(threading.Thread):
    """A copy over a slow link: a third of the photo at once, the rest in chunks."""

    def __init__(self, data: bytes, dest: Path, chunks: int = 12, pause: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.data, self.dest, self.chunks, self.pause = data, dest, chunks, pause
        self.begun = threading.Event()

    def run(self) -> None:
        head = len(self.data) // 3
        step = -(-(len(self.data) - head) // self.chunks)
        with self.dest.open("wb") as fh:
            fh.write(self.data[:head])
            fh.flush()
            self.begun.set()
            for start in range(head, len(self.data), step):
                time.sleep(self.pause)
                fh.write(self.data[start : start + step])
                fh.flush()


def copied_an_hour_ago(*paths: Path) -> None:
    """These photos have been in the library for a while: no scan waits for them."""
    then = time.time() - 3600
    for path in paths:
        os.utime(path, (then, then))


# ---------------------------------------------------------------- a copy in progress


@pytest.mark.usefixtures("default_models")
def test_a_photo_still_being_copied_is_left_pending_then_tagged(
    tmp_path: Path, state_dir: Path, coco_dir: Path, cli
) -> None:
    data = (coco_dir / PERSON_PHOTO).read_bytes()
    lib = tmp_path / "lib"
    lib.mkdir()
    config = write_config(tmp_path / "config.toml", config_text(lib))
    photo = lib / PERSON_PHOTO
    copy = SlowCopy(data, photo)
    copy.start()
    copy.begun.wait(5)
    code, out, err = cli("--config", config, "scan")
    assert code == 0, out + err
    # Read while it grew: not recorded, neither "ok" (with the tags of a third of a
    # photo, or none) nor an error.
    size, analysed, tags = recorded(state_dir, photo)
    assert not analysed and not tags, (size, tags)
    assert "1 file changed while tagd read them (still being copied?)" in out
    assert f"  {photo}" in out
    assert not sidecar_path(photo).exists()

    copy.join(10)
    code, out, err = cli("--config", config, "scan")
    assert code == 0, out + err
    size, analysed, tags = recorded(state_dir, photo)
    assert size == len(data) and analysed and PERSON in tags, (size, analysed, tags)
    assert "analysed 1 file (" in out and "changed while" not in out
    assert PERSON.rsplit("|", 1)[1] in sidecar_path(photo).read_text()


@pytest.mark.usefixtures("default_models")
def test_the_daemon_looks_again_at_a_photo_that_was_being_copied(
    tmp_path: Path, state_dir: Path, coco_dir: Path
) -> None:
    """No watcher (a share written from another machine), no schedule: one scan
    while the copy runs, and the daemon tags the whole photo on its own."""
    data = (coco_dir / PERSON_PHOTO).read_bytes()
    lib = tmp_path / "lib"
    lib.mkdir()
    config = write_config(
        tmp_path / "config.toml",
        config_text(lib, '[daemon]\nschedule = ""\nwatch = false\nscan_on_start = false\n'),
    )
    with running_daemon(tmp_path, state_dir, config, NOTIFY_SOCKET="") as (proc, log, _):
        photo = lib / PERSON_PHOTO
        try:
            wait_until(lambda: "socket" in holder_notes(state_dir), 60, "the control socket")
            copy = SlowCopy(data, photo)
            copy.start()
            copy.begun.wait(5)
            reply = ask(Path(holder_notes(state_dir)["socket"]), "scan", wait=True, timeout=60)
            assert reply["ok"], reply
            copy.join(10)

            def whole_and_tagged() -> bool:
                size, analysed, tags = recorded(state_dir, photo)
                return size == len(data) and analysed and PERSON in tags

            wait_until(whole_and_tagged, 30, "the daemon to analyse the finished copy")
            wait_until(lambda: sidecar_path(photo).exists(), 10, "its sidecar")
        finally:
            code, _ = stop(proc)
    text = log.read_text()
    assert code == 0, text
    assert "changed while analysed (still being copied?)" in text and "looking again in" in text
    assert "scan (settle)" in text
    assert "Traceback" not in text


# ---------------------------------------------------------------- a photo deleted


def analysed_library(
    tmp_path: Path, names: list[str], coco_dir: Path, **sections: dict[str, object]
) -> tuple[Catalog, Settings]:
    """Photos indexed and analysed by the real pipeline, their XMP writes queued."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in names:
        (lib / name).write_bytes((coco_dir / name).read_bytes())
    copied_an_hour_ago(*(lib / n for n in names))
    settings = parse_settings({**only_objects(), "library": {"roots": [str(lib)]}, **sections})
    catalog = Catalog(tmp_path / "catalog.db")
    index_roots(catalog, make_walker(settings), [str(lib)], ["xmp"])
    analyzers = build_analyzers(settings, models_dir(settings))
    report = Pipeline(catalog, settings, analyzers, prefixes=[str(lib)]).run()
    assert report.done == len(names), report
    return catalog, settings


@pytest.mark.usefixtures("default_models")
def test_no_sidecar_for_a_photo_deleted_before_its_write(tmp_path: Path, coco_dir: Path) -> None:
    kept_name = sorted(p.name for p in coco_dir.glob("*.jpg") if p.name != PERSON_PHOTO)[0]
    catalog, settings = analysed_library(tmp_path, [PERSON_PHOTO, kept_name], coco_dir)
    gone, kept = tmp_path / "lib" / PERSON_PHOTO, tmp_path / "lib" / kept_name
    gone.unlink()  # after its analysis, before its sidecar
    report = deliver_xmp(catalog, settings)
    assert report.vanished == 1 and report.failed == 0, report
    assert not sidecar_path(gone).exists()
    assert sidecar_path(kept).exists() and report.written == 1
    assert catalog.due("xmp", float("inf")) == []  # dropped, not retried for ever
    catalog.close()


@pytest.mark.usefixtures("default_models")
def test_a_sidecar_created_for_a_photo_deleted_meanwhile_is_removed_again(
    tmp_path: Path, coco_dir: Path
) -> None:
    """The photos go while their sidecars are written (right after each write, as a
    person deleting a burst would): the sidecar tagd created goes too; the one a
    person had written before stays, with their keyword."""
    other = sorted(p.name for p in coco_dir.glob("*.jpg") if p.name != PERSON_PHOTO)[0]
    catalog, settings = analysed_library(tmp_path, [PERSON_PHOTO, other], coco_dir)
    fresh, theirs = tmp_path / "lib" / PERSON_PHOTO, tmp_path / "lib" / other
    before = DIGIKAM_SIDECAR.read_bytes()  # a person's sidecar, there already
    sidecar_path(theirs).write_bytes(before)

    def delete_photo(change: XmpChange) -> None:
        Path(str(change.sidecar).removesuffix(".xmp")).unlink()

    report = deliver_xmp(catalog, settings, on_change=delete_photo)
    assert len(report.changes) == 2, report
    assert not sidecar_path(fresh).exists()
    assert sidecar_path(theirs).exists() and sidecar_path(theirs).read_bytes() != before
    assert "Trips|Lisbon 2020" in sidecar_path(theirs).read_text()
    assert report.vanished == 1 and report.written == 1, report
    assert catalog.due("xmp", float("inf")) == []
    catalog.close()


# ---------------------------------------------------------------- a folder fixed


def read_only_album(tmp_path: Path, coco_dir: Path) -> tuple[Path, Path]:
    lib = tmp_path / "lib"
    album = lib / "album"
    album.mkdir(parents=True)
    photo = album / PERSON_PHOTO
    photo.write_bytes((coco_dir / PERSON_PHOTO).read_bytes())
    copied_an_hour_ago(photo)
    album.chmod(0o555)  # tagd honours it even as root
    return lib, photo


def outbox(state: Path) -> list[tuple[int, bool]]:
    """(attempts, backing off) of every queued write."""
    try:
        rows = db_rows(state, "SELECT attempts, due FROM outbox")
    except (CatalogError, DatabaseError):  # the daemon has not made it yet
        return []
    return [(attempts, due > time.time()) for attempts, due in rows]


@pytest.mark.usefixtures("default_models")
def test_tagd_scan_retries_at_once_a_write_whose_folder_was_fixed(
    tmp_path: Path, state_dir: Path, coco_dir: Path, cli
) -> None:
    lib, photo = read_only_album(tmp_path, coco_dir)
    config = write_config(tmp_path / "config.toml", config_text(lib))
    code, out, err = cli("--config", config, "scan")
    assert code == 1 and "sidecars written: 0; failed: 1" in out, out + err
    assert "read-only" in err and "stay queued: retried by the next `tagd scan`" in err
    assert outbox(state_dir) == [(1, True)]  # backing off for 30 s or more

    photo.parent.chmod(0o755)
    code, out, err = cli("--config", config, "scan")
    assert code == 0, out + err
    assert "sidecars written: 1; failed: 0" in out
    assert PERSON.rsplit("|", 1)[1] in sidecar_path(photo).read_text()
    assert outbox(state_dir) == []


@pytest.mark.usefixtures("default_models")
def test_tagd_scan_through_the_daemon_retries_at_once_and_exits_1_while_it_fails(
    tmp_path: Path, state_dir: Path, coco_dir: Path
) -> None:
    from conftest import run_tagd

    lib, photo = read_only_album(tmp_path, coco_dir)
    config = write_config(
        tmp_path / "config.toml",
        config_text(lib, '[daemon]\nschedule = ""\nwatch = false\n'),
    )
    with running_daemon(tmp_path, state_dir, config, NOTIFY_SOCKET="") as (proc, log, _):
        env = os.environ | {"TAGD_STATE_DIR": str(state_dir), "XDG_CONFIG_HOME": str(tmp_path)}
        try:
            wait_until(lambda: outbox(state_dir) == [(1, True)], 60, "the first write to fail")
            # Still read-only: asked again at once (backoff or not), and the exit code says so.
            done = run_tagd("--config", config, "scan", env=env)
            assert done.returncode == 1, done.stdout + done.stderr
            assert "xmp: 0 written, 1 failed" in done.stdout
            assert outbox(state_dir) == [(2, True)]

            photo.parent.chmod(0o755)
            done = run_tagd("--config", config, "scan", env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "xmp: 1 written, 0 failed" in done.stdout
            assert sidecar_path(photo).exists() and outbox(state_dir) == []
        finally:
            photo.parent.chmod(0o755)
            code, _ = stop(proc)
    assert code == 0, log.read_text()
