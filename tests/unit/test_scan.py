"""Walker and indexer on real folder trees, and the sampled fingerprint."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tagd.catalog.catalog import Catalog
from tagd.config import LibrarySettings
from tagd.records import Detection
from tagd.scan.fingerprint import BLOCK, fingerprint
from tagd.scan.index import index_root, index_roots
from tagd.scan.walk import Walker

DEFAULTS = LibrarySettings()


def walker(**kw) -> Walker:
    return Walker(
        kw.pop("image_exts", DEFAULTS.image_extensions),
        kw.pop("video_exts", DEFAULTS.video_extensions),
        kw.pop("exclude", DEFAULTS.exclude),
        **kw,
    )


def rel_paths(w: Walker, root: Path) -> list[str]:
    paths = [os.path.relpath(f.path, root) for f in w.walk(str(root))]
    assert len(paths) == len(set(paths)), f"visited twice: {paths}"
    return sorted(paths)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- walker


def test_extensions_are_case_insensitive(tmp_path: Path) -> None:
    for name in (
        "a.JPG",
        "b.Jpeg",
        "c.png",
        "d.HEIC",
        "e.MP4",
        "f.mkv",
        "g.txt",
        "h.xmp",
        "jpg",
        "i.jpg.bak",
        "j.tar.gz",
    ):
        touch(tmp_path / name)
    w = walker()
    found = {os.path.basename(f.path): f.kind for f in w.walk(str(tmp_path))}
    assert found == {
        "a.JPG": "image",
        "b.Jpeg": "image",
        "c.png": "image",
        "d.HEIC": "image",
        "e.MP4": "video",
        "f.mkv": "video",
    }


def test_default_excludes_and_hidden(tmp_path: Path) -> None:
    for rel in (
        "keep.jpg",
        "sub/keep2.jpg",
        "@eaDir/thumb.jpg",
        "sub/@eaDir/keep2.jpg/SYNOPHOTO_THUMB_XL.jpg",
        ".thumbnails/t.png",
        "deep/er/.thumbnails/t.png",
        "#recycle/old.jpg",
        ".hidden/secret.jpg",
        "sub/.hidden.jpg",
    ):
        touch(tmp_path / rel)
    assert rel_paths(walker(), tmp_path) == ["keep.jpg", "sub/keep2.jpg"]
    # Hidden files and folders can be included; the exclude globs still apply.
    assert rel_paths(walker(include_hidden=True), tmp_path) == [
        ".hidden/secret.jpg",
        "keep.jpg",
        "sub/.hidden.jpg",
        "sub/keep2.jpg",
    ]


def test_custom_globs(tmp_path: Path) -> None:
    for rel in (
        "a.jpg",
        "b.png",
        "raw/c.jpg",
        "x/raw/d.jpg",
        "tmp/e.jpg",
        "tmp/sub/f.jpg",
        "x/g.png",
        "h1.jpg",
        "h22.jpg",
    ):
        touch(tmp_path / rel)
    w = walker(exclude=["**/raw/**", "*.png", "tmp/*.jpg", "h?.jpg"])
    assert rel_paths(w, tmp_path) == ["a.jpg", "h22.jpg", "tmp/sub/f.jpg", "x/g.png"]
    w = walker(exclude=["**/*.png"])
    assert "x/g.png" not in rel_paths(w, tmp_path)
    assert "b.png" not in rel_paths(w, tmp_path)


def test_symlink_loop_visits_nothing_twice(tmp_path: Path) -> None:
    touch(tmp_path / "top.jpg")
    touch(tmp_path / "a" / "x.jpg")
    touch(tmp_path / "a" / "b" / "y.jpg")
    os.symlink("..", tmp_path / "a" / "b" / "up")  # b/up -> a: a loop
    os.symlink(str(tmp_path), tmp_path / "a" / "root")  # a/root -> the root itself
    w = walker()
    start = time.monotonic()
    found = list(w.walk(str(tmp_path)))
    assert time.monotonic() - start < 5
    inodes = [(os.stat(f.path).st_dev, os.stat(f.path).st_ino) for f in found]
    assert len(inodes) == len(set(inodes)) == 3
    assert w.problems.messages == []
    # Not following links: the links are skipped, the real tree is still walked.
    assert rel_paths(walker(follow_symlinks=False), tmp_path) == [
        "a/b/y.jpg",
        "a/x.jpg",
        "top.jpg",
    ]


def test_broken_link_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    touch(tmp_path / "ok.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    w = walker()
    assert rel_paths(w, tmp_path) == ["ok.jpg"]
    assert any("dangling.jpg" in m for m in w.problems.messages)


def test_single_file_root(tmp_path: Path) -> None:
    photo = touch(tmp_path / "one.JPG")
    assert [f.path for f in walker().walk(str(photo))] == [str(photo)]
    assert list(walker().walk(str(touch(tmp_path / "notes.txt")))) == []


# ---------------------------------------------------------------- indexer


@pytest.fixture
def catalog(tmp_path: Path):
    with Catalog(tmp_path / "state" / "catalog.db") as cat:
        yield cat


def rows(catalog: Catalog) -> list[tuple]:
    return catalog.con.execute(
        "SELECT f.id, f.path, f.size, f.mtime_ns, f.content_id, f.error, c.fingerprint "
        "FROM files f LEFT JOIN contents c ON c.id = f.content_id ORDER BY f.id"
    ).fetchall()


def test_new_changed_moved_deleted(tmp_path: Path, catalog: Catalog, make_jpeg) -> None:
    lib = tmp_path / "lib"
    a = make_jpeg(lib / "a.jpg", seed=1)
    b = make_jpeg(lib / "b.jpg", seed=2)
    c = make_jpeg(lib / "sub" / "c.jpg", seed=3)
    d = make_jpeg(lib / "d.jpg", seed=4)
    w = walker()

    report = index_root(catalog, w, str(lib), ["xmp"])
    assert (report.seen, report.new, report.changed, report.moved, report.deleted) == (
        4,
        4,
        0,
        0,
        0,
    )
    assert len(catalog.due("xmp", now=1e12)) == 4
    before = {r[1]: r for r in rows(catalog)}
    c_row = before[str(c)]
    with catalog.transaction():
        catalog.save_analysis(c_row[4], "objects", "sha", [Detection("cat", 0.9, (1, 2, 3, 4))])
        for fid, *_ in catalog.due("xmp", now=1e12):
            catalog.outbox_done(fid, "xmp")

    # b: other bytes (size changes); a: same bytes, new mtime; c: moved; d: deleted.
    make_jpeg(b, width=80, seed=22)
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    c_new = lib / "elsewhere" / "c-renamed.jpg"
    c_new.parent.mkdir()
    c.rename(c_new)
    d.unlink()

    report = index_root(catalog, w, str(lib), ["xmp"])
    assert (report.seen, report.new, report.changed, report.moved, report.deleted) == (
        3,
        0,
        2,
        1,
        1,
    )
    after = {r[1]: r for r in rows(catalog)}
    assert set(after) == {str(a), str(b), str(c_new)}
    # a: same content, new mtime recorded
    assert after[str(a)][4] == before[str(a)][4]
    assert after[str(a)][3] == st.st_mtime_ns + 1
    # b: same file row, new content
    assert after[str(b)][0] == before[str(b)][0]
    assert after[str(b)][6] != before[str(b)][6]
    # c: the file row and its content (with its results) followed the move
    assert after[str(c_new)][0] == c_row[0]
    assert after[str(c_new)][4] == c_row[4]
    assert catalog.detections(c_row[4]) == [Detection("cat", 0.9, (1.0, 2.0, 3.0, 4.0))]
    # d: gone, with its orphaned content; the old content of b too
    fingerprints = {r[0] for r in catalog.con.execute("SELECT fingerprint FROM contents")}
    assert fingerprints == {r[6] for r in after.values()}
    # The moved and changed files need their sidecars again.
    assert sorted(p for _, p, _ in catalog.due("xmp", now=1e12)) == sorted(
        [str(a), str(b), str(c_new)]
    )


def test_copy_shares_content(tmp_path: Path, catalog: Catalog, make_jpeg) -> None:
    lib = tmp_path / "lib"
    a = make_jpeg(lib / "a.jpg")
    shutil.copyfile(a, lib / "copy.jpg")
    report = index_root(catalog, walker(), str(lib))
    assert report.new == 2 and report.moved == 0
    assert len({r[4] for r in rows(catalog)}) == 1


def test_unchanged_rescan_writes_nothing(tmp_path: Path, catalog: Catalog, make_jpeg) -> None:
    lib = tmp_path / "lib"
    for i in range(12):  # more than the threaded-fingerprint threshold
        make_jpeg(lib / f"d{i % 3}" / f"p{i}.jpg", seed=i)
    touch(lib / "empty.jpg", b"")
    w = walker()
    index_roots(catalog, w, [str(lib)], ["xmp"])
    snapshot = rows(catalog)
    outbox = catalog.con.execute("SELECT * FROM outbox ORDER BY file_id").fetchall()
    changes = catalog.con.total_changes

    report = index_roots(catalog, w, [str(lib)], ["xmp"])
    assert (report.seen, report.new, report.changed, report.moved, report.deleted) == (
        13,
        0,
        0,
        0,
        0,
    )
    assert catalog.con.total_changes == changes
    assert rows(catalog) == snapshot
    assert catalog.con.execute("SELECT * FROM outbox ORDER BY file_id").fetchall() == outbox


def test_missing_root_deletes_nothing(tmp_path: Path, catalog: Catalog, make_jpeg) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    make_jpeg(lib / "b" / "b.jpg", seed=1)
    w = walker()
    index_root(catalog, w, str(lib))
    snapshot = rows(catalog)

    moved_away = tmp_path / "unmounted"
    lib.rename(moved_away)
    report = index_root(catalog, w, str(lib))
    assert report.deleted == 0
    assert any("does not exist" in p and "nothing removed" in p for p in report.problems)
    assert rows(catalog) == snapshot

    # Back again: nothing new, nothing lost.
    moved_away.rename(lib)
    report = index_root(catalog, w, str(lib))
    assert (report.new, report.changed, report.deleted) == (0, 0, 0)
    assert rows(catalog) == snapshot


def test_sibling_root_with_common_prefix_is_left_alone(
    tmp_path: Path, catalog: Catalog, make_jpeg
) -> None:
    """Scanning /x/lib must not treat /x/lib-2 or /x/lib.old as below it."""
    for i, name in enumerate(("lib", "lib-2", "lib.old", "lib0")):
        make_jpeg(tmp_path / name / "a.jpg", seed=i)
    make_jpeg(tmp_path / "lib" / "b.jpg", seed=9)
    w = walker()
    for name in ("lib", "lib-2", "lib.old", "lib0"):
        index_root(catalog, w, str(tmp_path / name))
    (tmp_path / "lib" / "a.jpg").unlink()
    report = index_root(catalog, w, str(tmp_path / "lib"))
    assert report.deleted == 1
    assert sorted(r[1] for r in rows(catalog)) == sorted(
        [
            str(tmp_path / "lib" / "b.jpg"),
            *(str(tmp_path / n / "a.jpg") for n in ("lib-2", "lib.old", "lib0")),
        ]
    )


def test_an_emptied_root_is_taken_for_an_unmounted_share(
    tmp_path: Path, catalog: Catalog, make_jpeg
) -> None:
    """A mount point left empty must not make tagd forget the library."""
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg", seed=1)
    w = walker()
    index_root(catalog, w, str(lib))
    snapshot = rows(catalog)
    (lib / "a.jpg").unlink()
    report = index_root(catalog, w, str(lib))
    assert report.deleted == 0
    assert any("is empty" in p and "nothing removed" in p for p in report.problems)
    assert rows(catalog) == snapshot


def test_unreadable_file_is_recorded_and_retried(tmp_path: Path, catalog: Catalog) -> None:
    """A UNIX socket named .jpg cannot be opened even by root (ENXIO). Once it is a
    readable file again, the next scan picks it up even though size and mtime are
    what they were (as after a chmod, which changes neither)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    path = lib / "s.jpg"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
    except OSError as exc:
        pytest.skip(f"cannot make a UNIX socket here: {exc}")
    sock.close()
    st = path.stat()
    w = walker()
    report = index_root(catalog, w, str(lib))
    assert report.unreadable == 1
    (row,) = rows(catalog)
    assert row[5] is not None and row[5].startswith("cannot read")
    assert row[4] is None

    # Still unreadable: the rescan records nothing new.
    changes = catalog.con.total_changes
    report = index_root(catalog, w, str(lib))
    assert catalog.con.total_changes == changes
    assert rows(catalog) == [row]

    path.unlink()
    path.write_bytes(b"")  # same size (0) ...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and same mtime
    report = index_root(catalog, w, str(lib))
    (fixed,) = rows(catalog)
    assert fixed[0] == row[0]
    assert fixed[5] is None, fixed
    assert fixed[4] is not None


def test_fifo_does_not_hang_the_scan(tmp_path: Path, catalog: Catalog) -> None:
    """Opening a FIFO for reading blocks until a writer comes: a named pipe in the
    library (pipe.jpg) must be an error, not a scan that never ends."""
    lib = tmp_path / "lib"
    lib.mkdir()
    os.mkfifo(lib / "pipe.jpg")
    (lib / "ok.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    result: dict[str, object] = {}

    def scan() -> None:
        try:
            with Catalog(catalog.path) as cat:
                result["report"] = index_root(cat, walker(), str(lib))
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():
        # Unblock the stuck open() so the thread can end, then fail.
        fd = os.open(lib / "pipe.jpg", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(timeout=10)
        pytest.fail("indexing a folder holding a FIFO hung")
    assert "error" not in result, result
    by_path = {r[1]: r for r in rows(catalog)}
    assert by_path[str(lib / "ok.jpg")][5] is None
    assert "not a regular file" in by_path[str(lib / "pipe.jpg")][5]


# ---------------------------------------------------------------- fingerprint


def read_bytes_so_far() -> int:
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_fingerprint_of_a_sparse_2gb_file(tmp_path: Path) -> None:
    if not Path("/proc/self/io").exists():
        pytest.skip("/proc/self/io is needed to count bytes read")
    big = tmp_path / "big.mp4"
    size = 2 * 1024**3
    with open(big, "wb") as fh:
        fh.truncate(size)
        fh.seek(0)
        fh.write(b"\x00\x00\x00\x18ftypmp42head")
        fh.seek(size - 16)
        fh.write(b"tail-index-bytes")

    probe = read_bytes_so_far()
    overhead = read_bytes_so_far() - probe  # reading /proc/self/io itself
    start_bytes = read_bytes_so_far()
    start = time.perf_counter()
    first, got_size = fingerprint(big)
    elapsed = time.perf_counter() - start
    read = read_bytes_so_far() - start_bytes - overhead
    assert got_size == size
    assert read <= 3 * BLOCK, f"read {read} bytes"
    assert elapsed < 1.0
    assert fingerprint(big) == (first, size)  # stable

    # A rename does not change it.
    renamed = big.rename(tmp_path / "renamed.mp4")
    assert fingerprint(renamed)[0] == first

    def patched(offset: int, data: bytes) -> str:
        with open(renamed, "r+b") as fh:
            fh.seek(offset)
            old = fh.read(len(data))
            fh.seek(offset)
            fh.write(data)
        value = fingerprint(renamed)[0]
        with open(renamed, "r+b") as fh:
            fh.seek(offset)
            fh.write(old)
        assert fingerprint(renamed)[0] == first
        return value

    assert patched(5, b"XX") != first  # head
    assert patched(size - 3, b"XX") != first  # tail
    assert patched((size - BLOCK) // 2 + 100, b"XX") != first  # middle block
    # Bytes outside the three blocks are not read: the recipe's known blind spot.
    assert patched(size // 4, b"XX") == first


def test_small_files_are_hashed_whole(tmp_path: Path) -> None:
    path = tmp_path / "small.jpg"
    data = bytearray(os.urandom(3 * BLOCK))
    path.write_bytes(bytes(data))
    first = fingerprint(path)[0]
    data[BLOCK + 5] ^= 0xFF  # anywhere in a file of up to three blocks counts
    path.write_bytes(bytes(data))
    assert fingerprint(path)[0] != first
    # Same bytes, other size: the size is part of it.
    path.write_bytes(bytes(data) + b"\0")
    assert fingerprint(path)[1] == 3 * BLOCK + 1
