"""`tagd organize` on real photos (COCO, with their sidecars) and a real RAW + JPEG
pair: the dry run prints the plan and changes nothing (the tree hashed), apply
moves by the first matching rule with sidecars and partner, the catalog
follows without analysing again, undo returns the tree byte for byte, and a
SIGKILL in the middle of an apply, followed by --undo or by a rerun, loses and
doubles nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import rawpy
from conftest import SHARED, file_tree, tagd_process, write_config
from PIL import Image

MTIME_NS = 1_700_000_000 * 10**9  # 2023-11-14: COCO photos have no EXIF date
PHOTOS = ("000000000009.jpg", "000000000025.jpg", "000000000030.jpg", "000000000036.jpg")
ONLY_OBJECTS = "".join(
    f"[{s}]\nenabled = false\n"
    for s in ("ocr", "faces", "concepts", "clip", "nsfw", "quality", "duplicates")
)
RULES = """
[[organize.rules]]
match = { tag = "person" }
target = "People/{year}"
[[organize.rules]]
match = { camera = "eos" }
target = "Cameras/{camera}/{year}-{month:02}"
[[organize.rules]]
match = { kind = "image", before = "2023-01-01" }
target = "Old/{year}"
"""


@pytest.fixture
def library(tmp_path: Path, state_dir: Path, cli, raw_files: Path) -> tuple[Path, Path]:
    coco = SHARED / "eval" / "objects-coco128-train" / "images"
    if not coco.is_dir():
        pytest.skip(f"{coco} is absent (real photos needed)")
    lib = tmp_path / "lib"
    (lib / "inbox").mkdir(parents=True)
    for name in PHOTOS:
        shutil.copyfile(coco / name, lib / "inbox" / name)
    # A RAW + JPEG pair from a Canon EOS 30D (2009-07-21), the JPEG with the RAW's EXIF.
    raw = Path(shutil.copyfile(raw_files / "IMG_5952.CR2", lib / "inbox" / "IMG_5952.CR2"))
    with rawpy.imread(str(raw)) as r:
        rgb = r.postprocess(use_camera_wb=True, half_size=True)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 30D"
    exif.get_ifd(0x8769)[0x9003] = "2009:07:21 13:03:20"
    Image.fromarray(rgb).save(lib / "inbox" / "IMG_5952.JPG", quality=90, exif=exif.tobytes())
    for path in (lib / "inbox").iterdir():
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n[daemon]\nschedule = ""\nwatch = false\n'
        f"{ONLY_OBJECTS}{RULES}",
    )
    code, _, err = cli("--config", config, "scan")
    assert code == 0, err
    return lib, config


def _export(cli, config: Path) -> dict[str, list[str]]:
    code, out, err = cli("--config", config, "export", "--format", "jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["path"]: sorted(t["name"] for t in r["tags"]) for r in rows}


def test_dry_run_apply_and_undo(library, cli) -> None:
    lib, config = library
    before = file_tree(lib)
    tags_before = _export(cli, config)
    people = [p for p, tags in tags_before.items() if "AI|Objects|person" in tags]
    assert people, "the dev photos chosen show people"

    code, out, _ = cli("--config", config, "organize")
    assert code == 0 and "nothing was moved" in out, out
    assert "People/2023" in out and "Cameras/Canon EOS 30D/2009-07" in out
    assert file_tree(lib) == before

    code, out, _ = cli("--config", config, "organize", "--apply")
    assert code == 0, out
    after = _export(cli, config)
    # Same files, same tags, at their new places: People first, then the camera.
    assert sorted(map(sorted, [after.values()])) == sorted(map(sorted, [tags_before.values()]))
    for path in people:
        moved = str(lib / "People" / "2023" / Path(path).name)
        assert after[moved] == tags_before[path]
        assert Path(moved + ".xmp").is_file()  # its sidecar came along
    camera = lib / "Cameras" / "Canon EOS 30D" / "2009-07"
    if not any("IMG_5952" in p for p in people):
        # The RAW has no EXIF-bearing partner rule of its own: it follows its JPEG.
        assert sorted(p.name for p in camera.iterdir() if p.suffix != ".xmp") == [
            "IMG_5952.CR2",
            "IMG_5952.JPG",
        ]
    # No analysis again: the next scan finds every file where the catalog has it.
    code, out, err = cli("--config", config, "scan")
    assert code == 0 and "0 new, 0 changed, 0 moved, 0 deleted" in out + err, out + err

    code, out, _ = cli("--config", config, "organize", "--undo")
    assert code == 0, out
    assert file_tree(lib) == before
    assert _export(cli, config) == tags_before
    code, out, _ = cli("--config", config, "organize", "--undo")
    assert "nothing to undo" in out


def _all_contents(lib: Path) -> Counter[str]:
    return Counter(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in lib.rglob("*") if p.is_file()
    )


def test_a_kill_during_apply_then_undo_or_rerun(library) -> None:
    lib, config = library
    before = file_tree(lib)
    files = _all_contents(lib)

    killed = tagd_process(config, "organize", "--apply", kill_after_link=3)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    # One file is in both places (one inode): everything else is in one place.
    assert set(_all_contents(lib)) == set(files)

    undone = tagd_process(config, "organize", "--undo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert file_tree(lib) == before

    killed = tagd_process(config, "organize", "--apply", kill_after_link=4)
    assert killed.returncode == -9
    rerun = tagd_process(config, "organize", "--apply")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _all_contents(lib) == files  # every file once: none lost, none doubled
    plan = tagd_process(config, "organize")
    assert "0 files would move" in plan.stdout, plan.stdout  # the rerun did it all
    # Two applies on record: two undos give the library back.
    assert tagd_process(config, "organize", "--undo").returncode == 0
    assert tagd_process(config, "organize", "--undo").returncode == 0
    assert file_tree(lib) == before


def test_rules_are_checked_when_the_config_loads(tmp_path: Path, cli) -> None:
    bad = write_config(
        tmp_path / "bad.toml",
        '[[organize.rules]]\nmatch = { tag = "dog" }\ntarget = "../Dogs/{yr}"\n',
    )
    code, _, err = cli("--config", bad, "organize")
    assert code == 2 and "organize.rules[0].target" in err and "{year}" in err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    good = write_config(
        tmp_path / "good.toml",
        f'[library]\nroots = ["{tmp_path / "lib"}"]\n[[organize.rules]]\ntarget = "{{year}}"\n',
    )
    code, _, err = cli("--config", good, "organize", elsewhere)
    assert code == 2 and "not inside a library root" in err, err
    code, _, err = cli("--config", good, "organize", tmp_path / "missing")
    assert code == 2 and "not a folder" in err, err
    none = write_config(tmp_path / "none.toml", "")
    code, _, err = cli("--config", none, "organize")
    assert code == 2 and "[[organize.rules]]" in err


@pytest.mark.usefixtures("default_models")
def test_the_daemon_files_what_lands_in_the_import_folder(tmp_path: Path, state_dir: Path) -> None:
    from test_service import running_daemon, wait_until

    coco = SHARED / "eval" / "objects-coco128-train" / "images"
    if not coco.is_dir():
        pytest.skip(f"{coco} is absent (real photos needed)")
    lib = tmp_path / "lib"
    (lib / "Import").mkdir(parents=True)
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\nsettle_seconds = 0.0\n'
        '[daemon]\nschedule = ""\nwatch = true\nwatch_debounce = 0.3\n'
        f'{ONLY_OBJECTS}[organize]\nimport = "{lib / "Import"}"\n{RULES}',
    )
    with running_daemon(tmp_path, state_dir, config) as (proc, _, notify):
        notify.wait_for("READY=1", 60, proc)
        # A photo of people arrives (written under a temporary name, then renamed).
        part = lib / "Import" / ".upload.part"
        shutil.copyfile(coco / "000000000036.jpg", part)
        part.rename(lib / "Import" / "000000000036.jpg")
        filed = lib / "People" / str(dt.date.today().year) / "000000000036.jpg"
        wait_until(filed.is_file, 30, "the new photo filed by the rules")
        assert not (lib / "Import" / "000000000036.jpg").exists()
        wait_until(lambda: Path(str(filed) + ".xmp").is_file(), 15, "its sidecar, beside it")
