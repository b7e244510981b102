-- user_version = 11
CREATE INDEX segments_by_version ON segments (bucket, key, vseq, seq);
CREATE INDEX trash_by_age ON trash (trashed_ms);
CREATE INDEX uploads_by_age ON uploads (initiated_ms);
CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated_ms, upload_id);
CREATE UNIQUE INDEX versions_by_id ON versions (bucket, key, version_id);
CREATE INDEX versions_current ON versions (bucket, key, size_bytes, etag, last_modified_ms)
    WHERE latest = TRUE AND delete_marker = FALSE;
CREATE TABLE boundary_history (
    bucket   TEXT NOT NULL,
    version  BIGINT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (bucket, version)
);
CREATE TABLE buckets (
    name        TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    location    TEXT NOT NULL
, versioning TEXT NOT NULL DEFAULT 'Unversioned', object_lock TEXT, lifecycle TEXT, encryption TEXT, boundary TEXT);
CREATE TABLE commit_counter (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE TABLE ledger_entries (
    idx    INTEGER PRIMARY KEY,
    entry  BLOB NOT NULL
);
CREATE TABLE parts (
    upload_id         TEXT NOT NULL,
    part_number       INTEGER NOT NULL,
    blob_id           TEXT NOT NULL UNIQUE,
    size_bytes        INTEGER NOT NULL,
    etag              TEXT NOT NULL,
    checksums         TEXT NOT NULL,
    last_modified_ms  INTEGER NOT NULL, sites TEXT NOT NULL DEFAULT '', crc32c BIGINT,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE "records" (
    kind  TEXT NOT NULL,
    id    TEXT NOT NULL,
    body  TEXT NOT NULL,
    rev   BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE segments (
    blob_id     TEXT PRIMARY KEY,
    bucket      TEXT NOT NULL,
    key         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL
, vseq INTEGER NOT NULL DEFAULT 0, sites TEXT NOT NULL DEFAULT '', crc32c BIGINT);
CREATE TABLE trash (
    blob_id     TEXT PRIMARY KEY,
    trashed_ms  INTEGER NOT NULL
, sites TEXT NOT NULL DEFAULT '');
CREATE TABLE uploads (
    upload_id           TEXT PRIMARY KEY,
    bucket              TEXT NOT NULL,
    key                 TEXT NOT NULL,
    initiated_ms        INTEGER NOT NULL,
    attrs               TEXT NOT NULL,
    checksum_algorithm  TEXT
, tags TEXT NOT NULL DEFAULT '{}', lock_state TEXT NOT NULL DEFAULT '{}', encryption TEXT);
CREATE TABLE versions (
    bucket            TEXT NOT NULL,
    key               TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    version_id        TEXT NOT NULL,
    latest            INTEGER NOT NULL,
    delete_marker     INTEGER NOT NULL,
    size_bytes        INTEGER NOT NULL,
    etag              TEXT NOT NULL,
    last_modified_ms  INTEGER NOT NULL,
    attrs             TEXT NOT NULL,
    checksums         TEXT NOT NULL,
    parts_count       INTEGER,
    tags              TEXT NOT NULL,
    lock_state        TEXT NOT NULL, encryption TEXT,
    PRIMARY KEY (bucket, key, seq DESC)
);
CREATE TRIGGER count_buckets_delete AFTER DELETE ON buckets BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_buckets_insert AFTER INSERT ON buckets BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_buckets_update AFTER UPDATE ON buckets BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_parts_insert AFTER INSERT ON parts BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_parts_update AFTER UPDATE ON parts BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_records_delete AFTER DELETE ON records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_records_insert AFTER INSERT ON records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_records_update AFTER UPDATE ON records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_uploads_delete AFTER DELETE ON uploads BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_uploads_insert AFTER INSERT ON uploads BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_versions_delete AFTER DELETE ON versions BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_versions_insert AFTER INSERT ON versions BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_versions_update AFTER UPDATE ON versions BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
