"""Every catalog table comes from a migration or from the registered embedding-table
layout; catalogs from before the register learn their embedding tables; the
doctor's health read sees what is there without writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagd.catalog.catalog import Catalog
from tagd.catalog.connect import DRIVER, connect
from tagd.catalog.health import health
from tagd.catalog.migrations import MIGRATIONS, VECTOR_LAYOUT, _statements, schema_version
from tagd.records import Detection


def table_names(con) -> set[str]:
    return {
        r[0]
        for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith("sqlite_")
    }


def unit(dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def face(vector: np.ndarray) -> Detection:
    return Detection("face", 0.9, (0.0, 0.0, 10.0, 10.0), vector=vector)


def test_embedding_tables_are_registered_with_their_layout(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.db") as catalog:
        fresh = table_names(catalog.con)
        assert catalog.vector_table("faces") is None and not catalog.has_vectors("faces")
        assert catalog.nearest("faces", unit(128, 0)) == []
        with catalog.transaction():
            cid = catalog.ensure_content("b2s3:a", "image")
            ids = catalog.save_analysis(cid, "faces", "sha", [face(unit(128, 1))])
            catalog.save_analysis(cid, "clip", "sha", [face(unit(512, 2))])
        rows = catalog.con.execute(
            "SELECT analyzer, name, dim, layout FROM vector_tables ORDER BY analyzer"
        ).fetchall()
        assert rows == [
            ("clip", "vec_clip", 512, VECTOR_LAYOUT),
            ("faces", "vec_faces", 128, VECTOR_LAYOUT),
        ]
        # Nothing but the registered tables (and sqlite-vec's own tables behind
        # them) appeared besides what the migrations made.
        added = table_names(catalog.con) - fresh
        assert {"vec_faces", "vec_clip"} <= added
        assert all(name.startswith(("vec_faces", "vec_clip")) for name in added)
        assert catalog.nearest("faces", unit(128, 1), k=1)[0][0] == ids[0]
        # A re-analysis replaces the vector: the trigger took the old one along.
        with catalog.transaction():
            new = catalog.save_analysis(cid, "faces", "sha", [face(unit(128, 3))])
        assert set(catalog.vectors("faces", [ids[0], new[0]])) == {new[0]}


def make_v8_catalog_with_embeddings(path: Path) -> None:
    """A catalog as tagd left it before the register: embedding tables made on demand."""
    con = connect(path)
    con.execute("BEGIN")
    for script in MIGRATIONS[:8]:
        for statement in _statements(script):
            con.execute(statement)
    con.execute("PRAGMA user_version = 8")
    con.execute("INSERT INTO contents(id, fingerprint, kind) VALUES (1, 'a', 'image')")
    con.execute(
        "INSERT INTO detections(id, content_id, analyzer, label, score) "
        "VALUES (5, 1, 'faces', 'face', 0.9)"
    )
    for table, analyzer, dim in (("vec_faces", "faces", 128), ("vec_clip", "clip", 768)):
        con.execute(f"CREATE VIRTUAL TABLE {table} USING vec0(embedding float[{dim}])")
        con.execute(
            f"CREATE TRIGGER {table}_gc AFTER DELETE ON detections WHEN old.analyzer = "
            f"'{analyzer}' BEGIN DELETE FROM {table} WHERE rowid = old.id; END"
        )
    con.execute("INSERT INTO vec_faces(rowid, embedding) VALUES (5, ?)", (unit(128, 4).tobytes(),))
    con.execute("COMMIT")
    con.close()


def test_v8_catalog_registers_the_embedding_tables_it_has(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    make_v8_catalog_with_embeddings(path)
    with Catalog(path) as catalog:
        assert schema_version(catalog.con) == len(MIGRATIONS)
        rows = catalog.con.execute(
            "SELECT analyzer, name, dim, layout FROM vector_tables ORDER BY analyzer"
        ).fetchall()
        assert rows == [("clip", "vec_clip", 768, 1), ("faces", "vec_faces", 128, 1)]
        assert catalog.nearest("faces", unit(128, 4), k=1)[0][0] == 5
        # Stored next to the old ones, not in a second table.
        with catalog.transaction():
            (did,) = catalog.save_analysis(1, "clip", "sha", [face(unit(768, 6))])
        assert catalog.nearest("clip", unit(768, 6), k=1)[0][0] == did


def test_health_reads_a_catalog_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    with Catalog(path) as catalog, catalog.transaction():
        cid = catalog.ensure_content("b2s3:a", "image")
        ok = catalog.add_file("/p/a.jpg", "image", 1, 1, cid, None)
        catalog.add_file("/p/b.jpg", "image", 1, 1, None, "unreadable file")
        catalog.enqueue([ok], "xmp")
    con = DRIVER.connect(f"file:{path}?mode=ro", uri=True)
    try:
        state = health(con)
    finally:
        con.close()
    assert (state.schema, state.quick_check, state.journal) == (len(MIGRATIONS), "ok", "wal")
    assert (state.files, state.errors, state.queued) == (2, 1, 1)
