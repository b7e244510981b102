-- user_version = 2
CREATE INDEX segments_by_object ON segments (bucket, key, seq);
CREATE INDEX trash_by_age ON trash (trashed_ms);
CREATE INDEX uploads_by_age ON uploads (initiated_ms);
CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated_ms, upload_id);
CREATE TABLE buckets (
    name        TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    location    TEXT NOT NULL
);
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE TABLE objects (
    bucket            TEXT NOT NULL,
    key               TEXT NOT NULL,
    size_bytes        INTEGER NOT NULL,
    etag              TEXT NOT NULL,
    last_modified_ms  INTEGER NOT NULL,
    attrs             TEXT NOT NULL,
    checksums         TEXT NOT NULL,
    parts_count       INTEGER,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE parts (
    upload_id         TEXT NOT NULL,
    part_number       INTEGER NOT NULL,
    blob_id           TEXT NOT NULL UNIQUE,
    size_bytes        INTEGER NOT NULL,
    etag              TEXT NOT NULL,
    checksums         TEXT NOT NULL,
    last_modified_ms  INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE segments (
    blob_id     TEXT PRIMARY KEY,
    bucket      TEXT NOT NULL,
    key         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL
);
CREATE TABLE trash (
    blob_id     TEXT PRIMARY KEY,
    trashed_ms  INTEGER NOT NULL
);
CREATE TABLE uploads (
    upload_id           TEXT PRIMARY KEY,
    bucket              TEXT NOT NULL,
    key                 TEXT NOT NULL,
    initiated_ms        INTEGER NOT NULL,
    attrs               TEXT NOT NULL,
    checksum_algorithm  TEXT
);
