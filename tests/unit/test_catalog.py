"""The catalog database: migrations keep data, a newer catalog is refused, sqlite-vec
is loaded and the journal is WAL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagd.catalog.catalog import Catalog
from tagd.catalog.connect import CatalogError, connect
from tagd.catalog.migrations import MIGRATIONS, SCHEMA_VERSION, _statements, schema_version
from tagd.records import Detection, Tag


def tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def make_v1_catalog(path: Path) -> None:
    """A catalog as the first tagd release left it: migration 1 only, with data."""
    con = connect(path)
    try:
        con.execute("BEGIN")
        for statement in _statements(MIGRATIONS[0]):
            con.execute(statement)
        con.execute("PRAGMA user_version = 1")
        con.execute(
            "INSERT INTO contents(id, fingerprint, kind, width, height) "
            "VALUES (7, 'b2s3:abc', 'image', 640, 480)"
        )
        con.execute(
            "INSERT INTO files(id, path, kind, size, mtime_ns, content_id, error, added_at) "
            "VALUES (3, '/photos/a.jpg', 'image', 1234, 99, 7, NULL, 1.5)"
        )
        con.execute(
            "INSERT INTO analyses(content_id, analyzer, model_sha256, done_at) "
            "VALUES (7, 'objects', 'sha', 2.5)"
        )
        con.execute(
            "INSERT INTO detections(content_id, analyzer, t, label, score, x0, y0, x1, y1) "
            "VALUES (7, 'objects', NULL, 'dog', 0.875, 1, 2, 30, 40)"
        )
        con.execute("COMMIT")
    finally:
        con.close()


def test_schema_version_counts_migrations() -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2


def test_v1_catalog_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    make_v1_catalog(path)
    con = connect(path)
    assert schema_version(con) == 1
    assert "tags" not in tables(con) and "outbox" not in tables(con)
    con.close()

    with Catalog(path) as catalog:
        assert schema_version(catalog.con) == SCHEMA_VERSION
        assert {"contents", "files", "analyses", "detections", "meta", "tags", "outbox"} <= (
            tables(catalog.con)
        )
        found = catalog.file_by_path("/photos/a.jpg")
        assert found is not None
        assert (found.id, found.size, found.mtime_ns, found.content_id) == (3, 1234, 99, 7)
        assert catalog.detections(7) == [Detection("dog", 0.875, (1.0, 2.0, 30.0, 40.0))]
        assert catalog.analysed_contents("objects") == [7]
        # The new tables work.
        with catalog.transaction():
            assert catalog.replace_tags(7, "objects", [Tag("AI|Objects|dog", 0.875, "objects")])
            catalog.enqueue([3], "xmp")
            catalog.set_meta("k", "v")
        assert catalog.tags(7) == [Tag("AI|Objects|dog", 0.875, "objects")]
        assert catalog.due("xmp", now=1e12) == [(3, "/photos/a.jpg", 7)]
        assert catalog.get_meta("k") == "v"

    # Opening again applies nothing and changes nothing.
    with Catalog(path) as catalog:
        assert schema_version(catalog.con) == SCHEMA_VERSION
        assert catalog.counts() == {
            "files": 1,
            "contents": 1,
            "detections": 1,
            "tags": 1,
            "outbox": 1,
        }


def test_v7_catalog_learns_the_interval_ocr_read_its_videos_at(tmp_path: Path) -> None:
    """Migration 8: videos read by OCR before the interval was recorded get the
    one used then (10 s, or the sampling interval when that was longer)."""
    path = tmp_path / "catalog.db"
    con = connect(path)
    con.execute("BEGIN")
    for script in MIGRATIONS[:7]:
        for statement in _statements(script):
            con.execute(statement)
    con.execute("PRAGMA user_version = 7")
    con.executemany(
        "INSERT INTO contents(id, fingerprint, kind, frame_interval) VALUES (?, ?, ?, ?)",
        [(1, "a", "video", 2.0), (2, "b", "video", 30.0), (3, "c", "image", None)],
    )
    con.executemany(
        "INSERT INTO analyses(content_id, analyzer, model_sha256, done_at) VALUES (?, ?, 's', 0)",
        [(1, "ocr"), (1, "objects"), (2, "ocr"), (3, "ocr")],
    )
    con.execute("COMMIT")
    con.close()
    with Catalog(path) as catalog:
        rows = catalog.con.execute(
            "SELECT content_id, analyzer, frame_interval FROM analyses ORDER BY 1, 2"
        ).fetchall()
        assert rows == [(1, "objects", None), (1, "ocr", 10.0), (2, "ocr", 30.0), (3, "ocr", None)]
        video = catalog.media(1)
        assert catalog.media_for(video, 1, "ocr").interval == 10.0
        assert catalog.media_for(video, 1, "objects").interval == 2.0


def test_new_catalog_is_current(tmp_path: Path) -> None:
    with Catalog(tmp_path / "sub" / "catalog.db") as catalog:
        assert schema_version(catalog.con) == SCHEMA_VERSION
        assert catalog.counts()["files"] == 0


def test_catalog_newer_than_the_code_is_refused(tmp_path: Path, state_dir: Path, cli) -> None:
    path = state_dir / "catalog.db"
    with Catalog(path) as catalog:
        catalog.set_meta("keep", "me")
        catalog.con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(RuntimeError, match="newer than this tagd"):
        Catalog(path)
    # Refused without touching it.
    con = connect(path)
    assert schema_version(con) == SCHEMA_VERSION + 1
    assert con.execute("SELECT value FROM meta WHERE key = 'keep'").fetchone() == ("me",)
    con.close()

    # The command line says so in one line and exits 2, no traceback.
    code, _, err = cli("status")
    assert code == 2
    assert "newer than this tagd" in err and "upgrade tagd" in err
    assert "Traceback" not in err


def test_not_a_database_is_a_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(b"this is not an SQLite file at all " * 100)
    with pytest.raises(CatalogError, match="catalog"):
        Catalog(path)


def test_sqlite_vec_loaded_and_wal_on(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.db") as catalog:
        version = catalog.con.execute("SELECT vec_version()").fetchone()[0]
        assert version.startswith("v")
        # A real vector query, not just the version function.
        distance = catalog.con.execute(
            "SELECT vec_distance_l2(vec_f32('[0, 0]'), vec_f32('[3, 4]'))"
        ).fetchone()[0]
        assert distance == pytest.approx(5.0)
        assert catalog.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert catalog.con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (tmp_path / "catalog.db").is_file()


def test_deleting_a_file_cascades_to_its_results(tmp_path: Path) -> None:
    """drop_orphan_contents takes analyses, detections and tags with it (foreign keys on)."""
    with Catalog(tmp_path / "catalog.db") as catalog:
        with catalog.transaction():
            cid = catalog.ensure_content("b2s3:x", "image")
            fid = catalog.add_file("/p/x.jpg", "image", 10, 1, cid, None)
            catalog.save_analysis(cid, "objects", "sha", [Detection("cat", 0.9, (0, 0, 1, 1))])
            catalog.replace_tags(cid, "objects", [Tag("AI|Objects|cat", 0.9, "objects")])
            catalog.enqueue([fid], "xmp")
        with catalog.transaction():
            catalog.delete_files([fid])
            assert catalog.drop_orphan_contents() == 1
        assert catalog.counts() == {
            "files": 0,
            "contents": 0,
            "detections": 0,
            "tags": 0,
            "outbox": 0,
        }
        assert catalog.con.execute("SELECT COUNT(*) FROM analyses").fetchone()[0] == 0
