-- Version 3: object versions and delete markers, object lock, tags, lifecycle, job state.
-- Every object becomes a version: objects written before are the `null` version of their key.
ALTER TABLE buckets ADD COLUMN versioning TEXT NOT NULL DEFAULT 'Unversioned';
ALTER TABLE buckets ADD COLUMN object_lock TEXT;
ALTER TABLE buckets ADD COLUMN lifecycle TEXT;
-- seq orders a key's versions (larger is newer), latest marks the newest one.
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
    lock_state        TEXT NOT NULL,
    PRIMARY KEY (bucket, key, seq DESC)
);
CREATE UNIQUE INDEX versions_by_id ON versions (bucket, key, version_id);
-- Object listings read only this covering partial index.
CREATE INDEX versions_current ON versions (bucket, key, size_bytes, etag, last_modified_ms)
    WHERE latest = TRUE AND delete_marker = FALSE;
INSERT INTO versions (bucket, key, seq, version_id, latest, delete_marker, size_bytes, etag,
    last_modified_ms, attrs, checksums, parts_count, tags, lock_state)
    SELECT bucket, key, last_modified_ms * 1000, 'null', TRUE, FALSE, size_bytes, etag,
        last_modified_ms, attrs, checksums, parts_count, '{}', '{}' FROM objects;
ALTER TABLE segments ADD COLUMN vseq INTEGER NOT NULL DEFAULT 0;
UPDATE segments SET vseq = (SELECT o.last_modified_ms * 1000 FROM objects o
    WHERE o.bucket = segments.bucket AND o.key = segments.key);
DROP INDEX segments_by_object;
CREATE INDEX segments_by_version ON segments (bucket, key, vseq, seq);
DROP TABLE objects;
ALTER TABLE uploads ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE uploads ADD COLUMN lock_state TEXT NOT NULL DEFAULT '{}';
CREATE TABLE jobs (
    name        TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);
