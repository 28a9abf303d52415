"""`tagd dupes --quarantine / --restore / --purge` on real photos and their real
near-duplicates (smaller and re-compressed copies, with sidecars): a dry run
changes nothing, restore gives the tree back byte for byte, a SIGKILL in the
middle loses and duplicates nothing, and purge deletes only quarantined copies
older than the retention."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import urllib.request
from pathlib import Path

import cv2
import pytest
from conftest import SHARED, file_tree, tagd_process, write_config

from tagd import quarantine as q

MTIME_NS = 1_700_000_000 * 10**9
CONFIG = "".join(
    f"[{s}]\nenabled = false\n" for s in ("ocr", "faces", "concepts", "clip", "nsfw", "quality")
)


@pytest.fixture
def library(tmp_path: Path, state_dir: Path, cli) -> tuple[Path, Path]:
    """Three real photos, each with a half-size copy in `phone/` and a re-compressed
    copy in `backup/2019/`, scanned (objects and hashes), sidecars written."""
    coco = SHARED / "eval" / "objects-coco128-train" / "images"
    if not coco.is_dir():
        pytest.skip(f"{coco} is absent (real photos needed)")
    lib = tmp_path / "lib"
    for sub in ("", "phone", "backup/2019"):
        (lib / sub).mkdir(parents=True, exist_ok=True)
    for name in ("000000000009.jpg", "000000000025.jpg", "000000000030.jpg"):
        image = cv2.imread(str(coco / name))
        shutil.copyfile(coco / name, lib / name)
        small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
        cv2.imwrite(str(lib / "phone" / name), small)
        cv2.imwrite(str(lib / "backup/2019" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 50])
    for path in lib.rglob("*.jpg"):
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[daemon]\nschedule = ""\nwatch = false\n{CONFIG}',
    )
    code, _, err = cli("--config", config, "scan")
    assert code == 0, err
    assert len(list(lib.rglob("*.jpg.xmp"))) == 9
    return lib, config


def test_dry_run_quarantine_restore_and_the_tree_comes_back(library, cli) -> None:
    lib, config = library
    before = file_tree(lib)

    code, out, _ = cli("--config", config, "dupes", "--quarantine", "--dry-run")
    assert code == 0 and "would move" in out and "nothing was moved" in out
    assert file_tree(lib) == before

    code, out, _ = cli("--config", config, "dupes", "--quarantine")
    assert code == 0, out
    day = lib / q.FOLDER / dt.date.today().isoformat()
    moved = sorted(str(p.relative_to(day)) for p in day.rglob("*") if p.is_file())
    # The six copies and their sidecars, under their own relative paths; the
    # full-size originals stay.
    assert [m for m in moved if m != q.JOURNAL] == sorted(
        f"{folder}/{name}{ext}"
        for folder in ("backup/2019", "phone")
        for name in ("000000000009.jpg", "000000000025.jpg", "000000000030.jpg")
        for ext in ("", ".xmp")
    )
    assert sorted(p.name for p in lib.glob("*.jpg")) == [
        "000000000009.jpg", "000000000025.jpg", "000000000030.jpg"
    ]  # fmt: skip
    assert not list((lib / "phone").iterdir()) and not list((lib / "backup/2019").iterdir())
    code, out, _ = cli("--config", config, "dupes")
    assert out.startswith("0 groups"), out

    code, out, _ = cli("--config", config, "dupes", "--restore")
    assert code == 0, out
    assert file_tree(lib) == before
    assert not (lib / q.FOLDER).exists()


def test_a_kill_in_the_middle_loses_and_duplicates_nothing(library, tmp_path: Path) -> None:
    lib, config = library
    before = file_tree(lib)
    # Dies with the 5th file in both places.
    killed = tagd_process(config, "dupes", "--quarantine", kill_after_link=5)
    assert killed.returncode == -9, killed.stderr

    def contents() -> list[str]:
        """Every file's bytes hash, wherever it is, library and quarantine both."""
        return sorted(
            h for rel, (h, _) in file_tree(lib).items() if h != "folder" and q.JOURNAL not in rel
        )

    # Nothing lost: every file is somewhere (the half-moved one in both places).
    assert set(contents()) == {h for h, _ in before.values() if h != "folder"}

    # A rerun finishes the job: every copy once, in quarantine.
    rerun = tagd_process(config, "dupes", "--quarantine")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert contents() == sorted(h for h, _ in before.values() if h != "folder")
    assert len([p for p in (lib / "phone").iterdir()]) == 0

    # And restore puts it all back.
    back = tagd_process(config, "dupes", "--restore")
    assert back.returncode == 0, back.stdout + back.stderr
    assert file_tree(lib) == before


def test_a_kill_then_restore_gives_the_tree_back(library) -> None:
    lib, config = library
    before = file_tree(lib)
    assert tagd_process(config, "dupes", "--quarantine", kill_after_link=3).returncode == -9
    back = tagd_process(config, "dupes", "--restore")
    assert back.returncode == 0, back.stdout + back.stderr
    assert file_tree(lib) == before


def test_purge_deletes_only_quarantined_copies_past_the_retention(library, cli) -> None:
    lib, config = library
    assert cli("--config", config, "dupes", "--quarantine")[0] == 0
    today = dt.date.today()
    day = lib / q.FOLDER / today.isoformat()
    stranger = day / "not-from-tagd.jpg"  # put there by someone else
    stranger.write_bytes(b"mine")
    quarantined = sorted(
        p for p in day.rglob("*") if p.is_file() and p != stranger and p.name != q.JOURNAL
    )
    assert len(quarantined) == 12  # six copies, six sidecars

    # Today, with the default retention (7 days): nothing goes.
    code, out, _ = cli("--config", config, "dupes", "--purge")
    assert code == 0 and out.startswith("0 quarantined files"), out
    assert all(p.exists() for p in quarantined)

    roots = [str(lib)]
    report = q.Report()
    q.purge(roots, 7, today + dt.timedelta(days=7), report)  # exactly 7 days: kept
    assert not report.deleted
    q.purge(roots, 7, today + dt.timedelta(days=8), report)
    assert sorted(report.deleted) == sorted(str(p) for p in quarantined)
    assert not any(p.exists() for p in quarantined)
    assert stranger.read_bytes() == b"mine"  # only what tagd moved there
    # The originals in the library are untouched.
    assert len(list(lib.glob("*.jpg"))) == 3


def test_bad_restore_date_and_dry_run_alone_are_usage_errors(library, cli) -> None:
    _, config = library
    code, _, err = cli("--config", config, "dupes", "--restore", "last tuesday")
    assert code == 2 and "YYYY-MM-DD" in err
    code, _, err = cli("--config", config, "dupes", "--dry-run")
    assert code == 2 and "--quarantine" in err


def test_the_api_quarantines_lists_and_restores(library, state_dir: Path) -> None:
    from test_api import get, reply, serve

    from tagd.config import load_settings

    lib, config = library
    before = file_tree(lib)
    served = serve(load_settings(config), state_dir)

    def post(route: str, body: object) -> object:
        request = urllib.request.Request(
            served.base + "/api/v1" + route,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        return reply(request, None)

    try:
        planned = post("/dupes/quarantine", {"dry_run": True})
        assert planned.status == 200 and len(planned.body["moved"]) == 12
        assert file_tree(lib) == before
        done = post("/dupes/quarantine", {})
        assert done.status == 200 and len(done.body["moved"]) == 12, done.body
        listed = get(served.base, "/api/v1/dupes/quarantine")
        assert [d["files"] for d in listed.body["days"]] == [6]  # sidecars not counted
        assert listed.body["days"][0]["date"] == done.body["date"]
        for bad in ("../../etc", "yesterday", 7):
            refused = post("/dupes/restore", {"date": bad})
            assert refused.status == 422, refused.body
        back = post("/dupes/restore", {"date": done.body["date"]})
        assert back.status == 200 and len(back.body["restored"]) == 12
        assert file_tree(lib) == before
    finally:
        served.stop()
