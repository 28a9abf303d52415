"""The catalog schema as an ordered list of migrations.

``PRAGMA user_version`` holds the number of migrations applied. A new schema
change is a new entry at the end; existing entries are never edited, so any
older catalog upgrades step by step inside one transaction each. The one kind
of table whose shape is known only at run time, an analyzer's embedding table,
is made by a numbered layout (VECTOR_LAYOUTS) and registered, never ad hoc.
"""

from __future__ import annotations

import sqlite3

from tagd.catalog.connect import CatalogError

MIGRATIONS: list[str] = [
    # 1: files, their content, and raw analyzer output.
    """
    CREATE TABLE contents (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('image', 'video')),
        width INTEGER,
        height INTEGER,
        duration REAL,
        error TEXT
    );
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('image', 'video')),
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_id INTEGER REFERENCES contents(id),
        error TEXT,
        added_at REAL NOT NULL
    );
    CREATE INDEX files_content ON files(content_id);
    CREATE TABLE analyses (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        analyzer TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        done_at REAL NOT NULL,
        PRIMARY KEY (content_id, analyzer)
    );
    CREATE TABLE detections (
        id INTEGER PRIMARY KEY,
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        analyzer TEXT NOT NULL,
        t REAL,
        label TEXT NOT NULL,
        score REAL NOT NULL,
        x0 REAL, y0 REAL, x1 REAL, y1 REAL
    );
    CREATE INDEX detections_content ON detections(content_id, analyzer);
    """,
    # 2: tags derived by the tag policy, and the outbox of writes to sinks.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tags (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        score REAL NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (content_id, name)
    );
    CREATE INDEX tags_name ON tags(name);
    CREATE TABLE outbox (
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        sink TEXT NOT NULL,
        due REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (file_id, sink)
    );
    """,
    # 3: what the other analyzers find: recognised text (full-text indexed),
    # landmarks and other extras, faces and the people they belong to,
    # perceptual hashes. Embeddings live in sqlite-vec tables made per analyzer.
    """
    ALTER TABLE detections ADD COLUMN text TEXT;
    ALTER TABLE detections ADD COLUMN data TEXT;
    CREATE VIRTUAL TABLE detections_fts USING fts5(
        text, content='detections', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER detections_fts_insert AFTER INSERT ON detections
    WHEN new.text IS NOT NULL BEGIN
        INSERT INTO detections_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER detections_fts_delete AFTER DELETE ON detections
    WHEN old.text IS NOT NULL BEGIN
        INSERT INTO detections_fts(detections_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TABLE people (
        id INTEGER PRIMARY KEY,
        name TEXT UNIQUE,
        created_at REAL NOT NULL
    );
    CREATE TABLE faces (
        detection_id INTEGER PRIMARY KEY REFERENCES detections(id) ON DELETE CASCADE,
        cluster_id INTEGER,
        person_id INTEGER REFERENCES people(id) ON DELETE SET NULL
    );
    CREATE INDEX faces_cluster ON faces(cluster_id);
    CREATE INDEX faces_person ON faces(person_id);
    CREATE TABLE hashes (
        content_id INTEGER PRIMARY KEY REFERENCES contents(id) ON DELETE CASCADE,
        phash INTEGER NOT NULL
    );
    """,
    # 4: video time ranges. The interval a video's frames were sampled at (the
    # policy needs it to turn per-frame hits into ranges, and it must be the one
    # used then, not today's config), and each derived tag's ranges as JSON
    # [[start, end, score], ...] (export `segments`, Stash scene markers).
    """
    ALTER TABLE contents ADD COLUMN frame_interval REAL;
    ALTER TABLE tags ADD COLUMN segments TEXT;
    """,
    # 5: near-duplicates. Besides the plain pHash, every stored hash of the photo
    # (its mirror, its 90 % crop windows; see tagd.media.phash) as packed
    # little-endian uint64, so a flipped or cropped copy still matches.
    """
    ALTER TABLE hashes ADD COLUMN variants BLOB;
    """,
    # 6: what tagd wrote into Stash, keyed by Stash's ids (stable across renames
    # on either side): the tags tagd added to a scene or image (only those are
    # ever removed again; tags people set stay), and the scene markers it made
    # (re-runs update them instead of adding duplicates).
    """
    CREATE TABLE stash_tags (
        object TEXT NOT NULL,
        tag_id TEXT NOT NULL,
        PRIMARY KEY (object, tag_id)
    ) WITHOUT ROWID;
    CREATE TABLE stash_markers (
        marker_id TEXT PRIMARY KEY,
        scene_id TEXT NOT NULL,
        tag_id TEXT NOT NULL,
        seconds REAL NOT NULL,
        end_seconds REAL
    );
    CREATE INDEX stash_markers_scene ON stash_markers(scene_id);
    """,
    # 7: more of what tagd wrote into Stash ([stash] performers / studio): the
    # performers it added to a scene or image (only those are removed again),
    # and the studio it set. Studios are rows too, not one column: while tagd
    # moves an object from one of its studios to another both are recorded, so a
    # lost answer never makes tagd's old studio look like one the user chose.
    """
    CREATE TABLE stash_performers (
        object TEXT NOT NULL,
        performer_id TEXT NOT NULL,
        PRIMARY KEY (object, performer_id)
    ) WITHOUT ROWID;
    CREATE TABLE stash_studios (
        object TEXT NOT NULL,
        studio_id TEXT NOT NULL,
        PRIMARY KEY (object, studio_id)
    ) WITHOUT ROWID;
    """,
    # 8: the seconds between the video frames an analyzer looked at, when it
    # looks at fewer than were sampled (OCR reads one every ocr.video_interval):
    # its time ranges need that spacing as it was then. NULL = every sampled
    # frame (contents.frame_interval).
    # Videos read by OCR before this was recorded were read every 10 s (the
    # default ocr.video_interval) or every sampled frame when those were further
    # apart.
    """
    ALTER TABLE analyses ADD COLUMN frame_interval REAL;
    UPDATE analyses SET frame_interval = (
        SELECT MAX(10.0, COALESCE(c.frame_interval, 0.0)) FROM contents c
        WHERE c.id = analyses.content_id
    )
    WHERE analyzer = 'ocr'
      AND content_id IN (SELECT id FROM contents WHERE kind = 'video');
    """,
    # 9: the register of embedding tables (see VECTOR_LAYOUTS below), filled in
    # from the ones earlier tagd made without it: the analyzer is the one their
    # clean-up trigger names, the width the one their vec0 column declares.
    """
    CREATE TABLE vector_tables (
        analyzer TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        dim INTEGER NOT NULL,
        layout INTEGER NOT NULL
    );
    INSERT INTO vector_tables(analyzer, name, dim, layout)
    SELECT substr(t.sql, instr(t.sql, 'old.analyzer = ''') + 16,
                  instr(t.sql, ''' BEGIN') - instr(t.sql, 'old.analyzer = ''') - 16),
           v.name,
           CAST(substr(v.sql, instr(v.sql, 'float[') + 6) AS INTEGER),
           1
    FROM sqlite_master v JOIN sqlite_master t ON t.type = 'trigger' AND t.name = v.name || '_gc'
    WHERE v.type = 'table' AND v.sql LIKE 'CREATE VIRTUAL TABLE % USING vec0(%';
    """,
    # 10: people decisions from the web pages. A cluster hidden as strangers (it
    # stays, so their new faces join it and not a new cluster), and the faces a
    # user said are not a person: clustering never puts them back there.
    """
    ALTER TABLE people ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE face_refusals (
        detection_id INTEGER NOT NULL REFERENCES detections(id) ON DELETE CASCADE,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        PRIMARY KEY (detection_id, person_id)
    );
    """,
    # 11: what users said of a tag on a file (the review page). An accepted tag
    # stays whatever its threshold becomes; a rejected one is never derived for
    # that file again. `score` is the evidence's score when it was decided.
    """
    CREATE TABLE tag_verdicts (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject')),
        score REAL NOT NULL,
        decided_at REAL NOT NULL,
        PRIMARY KEY (content_id, name)
    );
    """,
    # 12: what users said of near-duplicates (the duplicates page), by pair of
    # contents (a < b): "distinct" (not duplicates: never grouped again) or
    # "kept" (looked at, all kept: the page does not ask again).
    """
    CREATE TABLE dupe_verdicts (
        a INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        b INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        verdict TEXT NOT NULL CHECK (verdict IN ('distinct', 'kept')),
        decided_at REAL NOT NULL,
        PRIMARY KEY (a, b),
        CHECK (a < b)
    );
    """,
    # 13: the review queue reads tags least sure first, and counts a band's tags
    # from this index alone.
    """
    CREATE INDEX tags_score ON tags(score, content_id, name, source);
    """,
    # 14: near-duplicate pairs, found once (tagd.dupe_pairs) instead of at every
    # look: contents a < b whose hashes lie within `distance` bits, and which
    # hashes were compared since they were stored. Copies of one content are
    # counted from an index of the readable files.
    """
    ALTER TABLE hashes ADD COLUMN paired INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE dupe_pairs (
        a INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        b INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        distance INTEGER NOT NULL,
        PRIMARY KEY (a, b),
        CHECK (a < b)
    ) WITHOUT ROWID;
    CREATE INDEX dupe_pairs_b ON dupe_pairs(b);
    CREATE INDEX files_readable ON files(content_id) WHERE error IS NULL;
    """,
    # 15: an embedding table's element type: float (4 bytes) or int8 (1 byte a
    # value: the general image embedding every photo keeps, 1280 bytes).
    """
    ALTER TABLE vector_tables ADD COLUMN element TEXT NOT NULL DEFAULT 'float'
        CHECK (element IN ('float', 'int8'));
    """,
    # 16: tags people taught by example (tagd.teach): the contents marked as
    # examples and as counter-examples (JSON lists of content ids). The
    # classifier is fitted again from them whenever needed, never stored.
    """
    CREATE TABLE taught_tags (
        name TEXT PRIMARY KEY,
        examples TEXT NOT NULL,
        counter TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 17: the tags a file would get if their threshold were [tags.review] low
    # (below it now), derived with the tags: the review queue's candidates.
    """
    CREATE TABLE tag_candidates (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        score REAL NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (content_id, name)
    ) WITHOUT ROWID;
    CREATE INDEX tag_candidates_score ON tag_candidates(score, content_id, name, source);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# Embedding tables: one sqlite-vec table per analyzer whose detections carry a
# vector (rowid = detection id). A vec0 table declares its width, and that is
# the model's (128 for dlib faces, 512 or 768 for the CLIP variants), known only
# once the analyzer stores its first embedding, so no fixed migration can make
# it. Each one is made by the newest layout below instead, and registered in
# vector_tables (migration 9) with that layout's number: changing the layout is
# a new entry here plus a migration that rebuilds the tables registered with an
# older number, as user_version counts MIGRATIONS.
# Placeholders: {table}, {element} (float or int8), {dim}, {analyzer} (already
# quoted for a string literal).
VECTOR_LAYOUTS: list[str] = [
    # 1: exact L2 search over float32. A deleted detection takes its vector
    # along (contents deleted by a rescan cascade to detections, firing this).
    """
    CREATE VIRTUAL TABLE {table} USING vec0(embedding {element}[{dim}]);
    CREATE TRIGGER {table}_gc AFTER DELETE ON detections WHEN old.analyzer = '{analyzer}'
    BEGIN DELETE FROM {table} WHERE rowid = old.id; END;
    """,
]
VECTOR_LAYOUT = len(VECTOR_LAYOUTS)


def schema_version(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def migrate(con: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the number of migrations applied."""
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        # CatalogError (a RuntimeError): the CLI shows it as one line and exits 2.
        raise CatalogError(
            f"catalog schema {current} is newer than this tagd ({SCHEMA_VERSION}); upgrade tagd"
        )
    for number in range(current + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {number}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION - current


def vector_table_name(analyzer: str) -> str:
    """`analyzer`'s embedding table: its name made a plain SQL identifier."""
    return "vec_" + "".join(c if c.isalnum() else "_" for c in analyzer)


def create_vector_table(
    con: sqlite3.Connection, analyzer: str, dim: int, element: str = "float"
) -> str:
    """Make and register `analyzer`'s embedding table, `dim` values of `element`
    (float or int8) wide, by the newest layout (call inside a transaction);
    returns its name."""
    if element not in ("float", "int8"):
        raise ValueError(f"vector element {element!r}: float or int8")
    table = vector_table_name(analyzer)
    script = VECTOR_LAYOUTS[VECTOR_LAYOUT - 1].format(
        table=table, element=element, dim=int(dim), analyzer=analyzer.replace("'", "''")
    )
    for statement in _statements(script):
        con.execute(statement)
    con.execute(
        "INSERT INTO vector_tables(analyzer, name, dim, layout, element) VALUES (?, ?, ?, ?, ?)",
        (analyzer, table, int(dim), VECTOR_LAYOUT, element),
    )
    return table


def _statements(script: str) -> list[str]:
    """Split a script into statements (triggers hold ';' inside BEGIN ... END).

    executescript() would COMMIT on its own; running statement by statement keeps
    each migration one transaction.
    """
    statements, buffer = [], ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                statements.append(buffer.strip())
            buffer = ""
    return statements
