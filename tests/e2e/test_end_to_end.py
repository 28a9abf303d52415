"""`tagd scan` end to end: real photos, the real model, real sidecars read back by
exiftool, bad files, a killed scan, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    PERSON_PHOTO,
    VIDEOS,
    exiftool_keywords,
    run_tagd,
    write_config,
)
from PIL import Image

from tagd.catalog.connect import DatabaseError, connect

PERSON = "AI|Objects|person"

# Every test here runs tagd with its default analyzers.
pytestmark = pytest.mark.usefixtures("default_models")


def sidecar(photo: Path) -> Path:
    return photo.with_name(photo.name + ".xmp")


def db_rows(state: Path, sql: str, params: tuple = ()) -> list[tuple]:
    con = connect(state / "catalog.db")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def detections_by_path(state: Path) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for path, *row in db_rows(
        state,
        "SELECT f.path, d.analyzer, d.t, d.label, d.score, d.x0, d.y0, d.x1, d.y1 "
        "FROM files f JOIN detections d ON d.content_id = f.content_id",
    ):
        out.setdefault(path, []).append(tuple(row))
    return {p: sorted(rows, key=repr) for p, rows in out.items()}


def tags_by_path(state: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path, name in db_rows(
        state, "SELECT f.path, t.name FROM files f JOIN tags t ON t.content_id = f.content_id"
    ):
        out.setdefault(path, set()).add(name)
    return out


def analyses(state: Path) -> list[tuple]:
    return db_rows(state, "SELECT * FROM analyses ORDER BY content_id, analyzer")


def sidecar_state(photos: list[Path]) -> dict[str, tuple[bytes, int]]:
    return {
        str(sidecar(p)): (sidecar(p).read_bytes(), sidecar(p).stat().st_mtime_ns)
        for p in photos
        if sidecar(p).exists()
    }


def add_foreign_keywords(photo: Path) -> None:
    """A sidecar a person made with another tool, before tagd ever saw the photo."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed")
    subprocess.run(
        [
            exiftool,
            "-q",
            "-XMP-dc:Subject=Holiday",
            "-XMP-lr:HierarchicalSubject=Places|Rome",
            str(sidecar(photo)),
        ],
        check=True,
    )


def ai_entries(keywords: dict[str, list[str]]) -> set[str]:
    return {h for h in keywords["HierarchicalSubject"] if h.startswith("AI|")}


def assert_sidecars_match_catalog(state: Path, photos: list[Path]) -> None:
    """Every photo with tags has a sidecar with exactly those tags, three ways."""
    tags = tags_by_path(state)
    present = [sidecar(p) for p in photos if sidecar(p).exists()]
    read = exiftool_keywords(present)
    for photo in photos:
        wanted = tags.get(str(photo), set())
        if not wanted:
            if sidecar(photo).exists():
                assert ai_entries(read[str(sidecar(photo))]) == set(), photo
            continue
        assert sidecar(photo).exists(), f"no sidecar for {photo}"
        keywords = read[str(sidecar(photo))]
        assert ai_entries(keywords) == wanted, photo
        assert {n.rsplit("|", 1)[1] for n in wanted} <= set(keywords["Subject"])
        assert {n.replace("|", "/") for n in wanted} == {
            t for t in keywords["TagsList"] if t.startswith("AI/")
        }


# ---------------------------------------------------------------- (a) the happy path


def test_scan_tags_photos_and_a_rescan_does_nothing(state_dir: Path, coco_photos, cli) -> None:
    photos = coco_photos(6, first=PERSON_PHOTO)
    person = photos[0]
    add_foreign_keywords(person)
    folder = person.parent

    code, out, err = cli("scan", folder)
    assert code == 0, out + err
    assert "indexed 6 files: 6 new" in out
    assert "analysed 6 files" in out and "0 failed" in out

    keywords = exiftool_keywords([sidecar(person)])[str(sidecar(person))]
    assert PERSON in keywords["HierarchicalSubject"]
    assert "person" in keywords["Subject"]
    assert "AI/Objects/person" in keywords["TagsList"]
    # The person's own keywords are still there.
    assert "Holiday" in keywords["Subject"]
    assert "Places|Rome" in keywords["HierarchicalSubject"]
    assert_sidecars_match_catalog(state_dir, photos)
    assert sum(bool(t) for t in tags_by_path(state_dir).values()) >= 4  # most photos tagged

    # The read-only views agree.
    code, out, _ = cli("tags", person)
    assert code == 0 and PERSON in out
    code, out, _ = cli("search", "--tag", "person")
    assert code == 0 and str(person) in out
    code, out, _ = cli("status")
    assert code == 0 and "6 ok, 0 pending, 0 error" in out

    detections = db_rows(state_dir, "SELECT * FROM detections ORDER BY id")
    done = analyses(state_dir)
    files = sidecar_state(photos)
    assert len(files) >= 4

    code, out, err = cli("scan", folder)
    assert code == 0, out + err
    assert "indexed 6 files: 0 new, 0 changed, 0 moved, 0 deleted" in out
    assert "analysed 0 files" in out
    assert "sidecars written: 0" in out
    assert db_rows(state_dir, "SELECT * FROM detections ORDER BY id") == detections
    assert analyses(state_dir) == done
    assert sidecar_state(photos) == files  # not one byte, not even the mtime

    keywords = exiftool_keywords([sidecar(person)])[str(sidecar(person))]
    assert "Holiday" in keywords["Subject"] and "Places|Rome" in keywords["HierarchicalSubject"]


def test_dry_run_writes_no_sidecar(state_dir: Path, coco_photos, cli) -> None:
    photos = coco_photos(3, first=PERSON_PHOTO)
    folder = photos[0].parent

    code, out, err = cli("scan", "--dry-run", folder)
    assert code == 0, out + err
    assert not list(folder.glob("*.xmp"))
    assert f"would update {sidecar(photos[0])}" in out
    assert f"  + {PERSON}" in out
    tagged = [p for p, t in tags_by_path(state_dir).items() if t]
    assert f"sidecars would change: {len(tagged)}" in out

    # The writes stay queued: the real run makes them without running the model.
    code, out, err = cli("scan", folder)
    assert code == 0, out + err
    assert "analysed 0 files" in out
    assert f"sidecars written: {len(tagged)}" in out
    assert_sidecars_match_catalog(state_dir, photos)

    code, out, _ = cli("scan", "--dry-run", folder)
    assert code == 0 and "would update" not in out and "sidecars would change: 0" in out


def test_policy_change_rederives_tags_without_the_model(
    tmp_path: Path, state_dir: Path, coco_photos, cli
) -> None:
    photos = coco_photos(3, first=PERSON_PHOTO)
    person, folder = photos[0], photos[0].parent
    # Every sidecar keeps a keyword of its own (for a sidecar left with none, see
    # test_sidecar_loses_its_last_tag).
    for photo in photos:
        add_foreign_keywords(photo)
    code, out, err = cli("scan", folder)
    assert code == 0, out + err
    done = analyses(state_dir)
    detections = db_rows(state_dir, "SELECT * FROM detections ORDER BY id")
    assert PERSON in tags_by_path(state_dir)[str(person)]

    strict = write_config(tmp_path / "strict.toml", "[tags.objects]\nthreshold = 0.99\n")
    code, out, err = cli("--config", strict, "scan", folder)
    assert code == 0, out + err
    assert "analysed 0 files" in out
    assert analyses(state_dir) == done
    assert db_rows(state_dir, "SELECT * FROM detections ORDER BY id") == detections
    scores = [s for (s,) in db_rows(state_dir, "SELECT score FROM tags WHERE source = 'objects'")]
    assert all(s >= 0.99 for s in scores)
    assert PERSON not in tags_by_path(state_dir).get(str(person), set())
    keywords = exiftool_keywords([sidecar(person)])[str(sidecar(person))]
    assert PERSON not in keywords["HierarchicalSubject"]
    assert "person" not in keywords["Subject"]
    assert "Holiday" in keywords["Subject"] and "Places|Rome" in keywords["HierarchicalSubject"]
    assert_sidecars_match_catalog(state_dir, photos)

    alias = write_config(tmp_path / "alias.toml", '[tags.objects.labels.person]\nname = "people"\n')
    code, out, err = cli("--config", alias, "scan", folder)
    assert code == 0, out + err
    assert "analysed 0 files" in out
    assert analyses(state_dir) == done
    tags = tags_by_path(state_dir)[str(person)]
    assert "AI|Objects|people" in tags and PERSON not in tags
    keywords = exiftool_keywords([sidecar(person)])[str(sidecar(person))]
    assert "AI|Objects|people" in keywords["HierarchicalSubject"]
    assert "people" in keywords["Subject"] and "person" not in keywords["Subject"]
    assert "Holiday" in keywords["Subject"]
    assert_sidecars_match_catalog(state_dir, photos)

    # Back to the defaults: the original tags return, still no model run.
    code, out, err = cli("scan", folder)
    assert code == 0 and "analysed 0 files" in out
    assert PERSON in tags_by_path(state_dir)[str(person)]
    assert analyses(state_dir) == done
    assert_sidecars_match_catalog(state_dir, photos)


def test_sidecar_loses_its_last_tag(tmp_path: Path, state_dir: Path, coco_photos, cli) -> None:
    """A sidecar tagd made alone: when the policy drops every tag, so does the sidecar."""
    (person,) = coco_photos(1, first=PERSON_PHOTO)
    code, out, err = cli("scan", person.parent)
    assert code == 0, out + err
    assert PERSON in ai_entries(exiftool_keywords([sidecar(person)])[str(sidecar(person))])

    strict = write_config(tmp_path / "strict.toml", "[tags.objects]\nthreshold = 0.99\n")
    code, out, err = cli("--config", strict, "scan", person.parent)
    assert tags_by_path(state_dir).get(str(person), set()) == set()
    assert code == 0, out + err
    assert "failed: 0" in out
    assert_sidecars_match_catalog(state_dir, [person])
    keywords = exiftool_keywords([sidecar(person)])[str(sidecar(person))]
    assert "person" not in keywords["Subject"]


def test_exif_orientation_gives_the_upright_size(state_dir: Path, tmp_path: Path, make_jpeg, cli):
    lib = tmp_path / "lib"
    make_jpeg(lib / "plain.jpg", 96, 48, seed=1)
    make_jpeg(lib / "rotated.jpg", 96, 48, orientation=6, seed=2)
    code, out, err = cli("scan", lib)
    assert code == 0, out + err
    code, out, _ = cli("export")
    assert code == 0
    sizes = {
        Path(r["path"]).name: (r["width"], r["height"]) for r in map(json.loads, out.splitlines())
    }
    assert sizes == {"plain.jpg": (96, 48), "rotated.jpg": (48, 96)}


# ---------------------------------------------------------------- (b) bad files


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_bad_files_are_reported_not_fatal(
    tmp_path: Path, state_dir: Path, coco_photos, coco_dir: Path, cli
) -> None:
    bad = tmp_path / "bad"
    (good,) = coco_photos(1, dest=bad, first=PERSON_PHOTO)
    data = good.read_bytes()
    rng = np.random.default_rng(7)
    reasons: dict[str, list[str]] = {}  # file -> words its reason must hold

    (bad / "corrupt.jpg").write_bytes(data[:4] + rng.bytes(20_000))
    reasons["corrupt.jpg"] = ["corrupt"]
    (bad / "truncated.jpg").write_bytes(data[: int(len(data) * 0.4)])
    reasons["truncated.jpg"] = ["truncated"]
    (bad / "zero.jpg").write_bytes(b"")
    reasons["zero.jpg"] = ["zero-byte"]
    (bad / "notes.png").write_text("shopping list: milk, eggs\n")
    reasons["notes.png"] = ["not a supported image", "text"]
    (bad / "bomb.png").write_bytes(png_claiming(30_000, 30_000))
    reasons["bomb.png"] = ["30000x30000", "max_pixels", "decompression bomb"]
    # A real image that is simply larger than this config allows.
    Image.fromarray(rng.integers(0, 256, (2000, 2000, 3), dtype=np.uint8)).save(
        bad / "big.png", compress_level=0
    )
    reasons["big.png"] = ["2000x2000", "max_pixels"]
    # Unreadable even for root: open() of a UNIX socket fails with ENXIO.
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(bad / "socket.jpg"))
    sock.close()
    reasons["socket.jpg"] = ["cannot read"]
    # A named pipe: opening it would wait forever for a writer.
    os.mkfifo(bad / "pipe.jpg")
    reasons["pipe.jpg"] = ["not a regular file"]
    os.symlink(".", bad / "loop")  # a symlink loop
    os.symlink(bad / "nowhere.jpg", bad / "dangling.jpg")
    clip = VIDEOS / "chaplin.mp4"
    if clip.is_file():
        shutil.copyfile(clip, bad / "clip.jpg")  # a video named .jpg

    cfg = write_config(tmp_path / "cfg.toml", "[decode]\nmax_pixels = 1_000_000\n")
    code, out, err = cli("--config", cfg, "scan", bad)
    assert code == 1, out + err
    assert "Traceback" not in err
    for name in reasons:
        assert f"{bad / name}: " in err, f"{name} not listed in the scan summary"
    assert PERSON in tags_by_path(state_dir)[str(good)]
    assert_sidecars_match_catalog(state_dir, [good])

    # status: every bad file with its reason
    code, out, _ = cli("--config", cfg, "status")
    assert code == 1
    assert f"{len(reasons)} error" in out
    status_lines = {
        line.strip().split(": ", 1)[0]: line.strip().split(": ", 1)[1]
        for line in out.splitlines()
        if line.startswith("  /")
    }
    for name, words in reasons.items():
        reason = status_lines[str(bad / name)]
        for word in words:
            assert word in reason, f"{name}: {word!r} not in {reason!r}"

    # export: JSONL and CSV, the same rows
    code, out, _ = cli("--config", cfg, "export", "--format", "jsonl")
    assert code == 0
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert not any("/loop/" in r["path"] for r in records.values())
    expected = {good.name, *reasons} | ({"clip.jpg"} if clip.is_file() else set())
    assert set(records) == expected
    for name, words in reasons.items():
        assert records[name]["status"] == "error", name
        assert records[name]["error"], name
        for word in words:
            assert word in records[name]["error"]
    assert records[good.name]["status"] == "ok" and records[good.name]["error"] is None
    if clip.is_file():
        # Sniffed by its bytes: analysed as the video it is, or refused with a reason.
        rec = records["clip.jpg"]
        assert rec["status"] in ("ok", "error")
        assert rec["kind"] == "video" if rec["status"] == "ok" else rec["error"]

    code, out, _ = cli("--config", cfg, "export", "--format", "csv")
    assert code == 0
    import csv
    import io

    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["path"] for r in table] == [r["path"] for r in records.values()]
    for row in table:
        rec = records[Path(row["path"]).name]
        assert (row["kind"], row["status"], row["error"]) == (
            rec["kind"],
            rec["status"],
            rec["error"] or "",
        )

    # A second scan tries no bad file again and changes nothing.
    done = analyses(state_dir)
    code, out, err = cli("--config", cfg, "scan", bad)
    assert code == 1
    assert "analysed 0 files" in out and "0 failed" in out
    assert analyses(state_dir) == done


# ---------------------------------------------------------------- (c) SIGKILL


def test_killed_scan_resumes_without_duplicates(
    tmp_path: Path, state_dir: Path, coco_photos, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    photos = coco_photos(40, first=PERSON_PHOTO)
    folder = photos[0].parent
    slow = "[runtime]\nbatch_size = 2\nthreads = 1\n[decode]\nworkers = 1\n"

    # A clean scan of the same photos in another state dir, writing no sidecar.
    clean_state = tmp_path / "clean-state"
    clean_cfg = write_config(tmp_path / "clean.toml", slow + "[xmp]\nenabled = false\n")
    monkeypatch.setenv("TAGD_STATE_DIR", str(clean_state))
    code, out, err = cli("--config", clean_cfg, "scan", folder)
    assert code == 0, out + err
    assert not list(folder.glob("*.xmp"))
    clean = detections_by_path(clean_state)
    monkeypatch.setenv("TAGD_STATE_DIR", str(state_dir))

    cfg = write_config(tmp_path / "cfg.toml", slow)
    env = os.environ | {"TAGD_STATE_DIR": str(state_dir), "TAGD_CONFIG": str(cfg)}
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagd", "scan", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    db = state_dir / "catalog.db"
    con = None
    seen = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if con is None and db.exists():
                con = connect(db)
            if con is not None:
                try:
                    sql = "SELECT COUNT(DISTINCT content_id) FROM analyses"
                    seen = con.execute(sql).fetchone()[0]
                except DatabaseError:  # not migrated yet
                    seen = 0
                if 0 < seen < len(photos):
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.003)
    finally:
        if proc.poll() is None and not (0 < seen < len(photos)):
            proc.kill()
        proc.wait(timeout=30)
        log.close()
    if not 0 < seen < len(photos):
        pytest.fail(
            f"never saw a partly analysed catalog (saw {seen}, rc {proc.returncode}): "
            + (tmp_path / "killed.log").read_text()
        )
    assert proc.returncode == -signal.SIGKILL
    assert con is not None
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = con.execute("SELECT COUNT(DISTINCT content_id) FROM analyses").fetchone()[0]
    con.close()
    assert seen <= kept < len(photos)

    code, out, err = cli("--config", cfg, "scan", folder)
    assert code == 0, out + err
    assert "indexed 40 files: 0 new, 0 changed" in out
    assert f"analysed {len(photos) - kept} files" in out

    contents = db_rows(state_dir, "SELECT id FROM contents")
    assert len(contents) == len(photos)
    per = db_rows(
        state_dir,
        "SELECT c.id, a.analyzer, COUNT(a.content_id) FROM contents c "
        "LEFT JOIN analyses a ON a.content_id = c.id GROUP BY c.id, a.analyzer",
    )
    # Exactly one analysis per (content, analyzer), and every content got the same set.
    assert all(analyzer is not None and n == 1 for _, analyzer, n in per), per
    by_content: dict[int, set[str]] = {}
    for cid, analyzer, _ in per:
        by_content.setdefault(cid, set()).add(analyzer)
    assert "objects" in next(iter(by_content.values()))
    assert len({frozenset(v) for v in by_content.values()}) == 1, by_content
    assert detections_by_path(state_dir) == clean
    assert db_rows(state_dir, "SELECT COUNT(*) FROM outbox") == [(0,)]
    assert_sidecars_match_catalog(state_dir, photos)
    leftovers = [p.name for p in folder.iterdir() if not p.name.endswith((".jpg", ".jpg.xmp"))]
    assert leftovers == []


# ---------------------------------------------------------------- (d) exit codes


def test_usage_error_exits_2(state_dir: Path, cli) -> None:
    code, _, err = cli("scan")
    assert code == 2
    assert "nothing to scan" in err and "library.roots" in err
    code, _, err = cli("scan", "--no-such-option")
    assert code == 2
    code, _, err = cli()
    assert code == 2


def test_bad_config_exits_2_naming_the_key(tmp_path: Path, state_dir: Path, make_jpeg, cli):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    bad = write_config(tmp_path / "bad.toml", '[runtime]\nbackend = "tpu"\n')
    code, _, err = cli("--config", bad, "scan", lib)
    assert code == 2
    assert "runtime.backend" in err and "'tpu'" in err and "'cpu'" in err
    assert not (state_dir / "catalog.db").exists()
    assert not sidecar(lib / "a.jpg").exists()

    # The same as a real process: one line, no traceback.
    done = run_tagd("--config", bad, "scan", lib)
    assert done.returncode == 2
    assert "runtime.backend" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_model_exits_2_with_the_fix(tmp_path: Path, state_dir: Path, make_jpeg, cli):
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    models = tmp_path / "models"
    models.mkdir()
    cfg = write_config(tmp_path / "cfg.toml", f'[runtime]\nmodels_dir = "{models}"\n')

    code, out, err = cli("--config", cfg, "scan", lib)
    assert code == 2
    assert "tagd models fetch" in err
    assert "picodet" in err
    assert not (state_dir / "catalog.db").exists()  # failed before touching anything

    # Indexing needs no model.
    code, out, err = cli("--config", cfg, "scan", "--index-only", lib)
    assert code == 0, err
    assert "indexed 1 file: 1 new" in out
