-- Vallum metadata schema for PostgreSQL, version 1. The same tables as the SQLite schema: keys
-- use the "C" collation (byte order), the order S3 lists keys in.
CREATE TABLE buckets (
    name        TEXT COLLATE "C" PRIMARY KEY,
    created_ms  BIGINT NOT NULL,
    location    TEXT NOT NULL
);
CREATE TABLE objects (
    bucket            TEXT COLLATE "C" NOT NULL,
    key               TEXT COLLATE "C" NOT NULL,
    size_bytes        BIGINT NOT NULL,
    etag              TEXT NOT NULL,
    last_modified_ms  BIGINT NOT NULL,
    attrs             TEXT NOT NULL,
    checksums         TEXT NOT NULL,
    parts_count       BIGINT,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE segments (
    blob_id     TEXT PRIMARY KEY,
    bucket      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    size_bytes  BIGINT NOT NULL
);
CREATE INDEX segments_by_object ON segments (bucket, key, seq);
CREATE TABLE uploads (
    upload_id           TEXT PRIMARY KEY,
    bucket              TEXT COLLATE "C" NOT NULL,
    key                 TEXT COLLATE "C" NOT NULL,
    initiated_ms        BIGINT NOT NULL,
    attrs               TEXT NOT NULL,
    checksum_algorithm  TEXT
);
CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated_ms, upload_id);
CREATE INDEX uploads_by_age ON uploads (initiated_ms);
CREATE TABLE parts (
    upload_id         TEXT NOT NULL,
    part_number       BIGINT NOT NULL,
    blob_id           TEXT NOT NULL UNIQUE,
    size_bytes        BIGINT NOT NULL,
    etag              TEXT NOT NULL,
    checksums         TEXT NOT NULL,
    last_modified_ms  BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE trash (
    blob_id     TEXT PRIMARY KEY,
    trashed_ms  BIGINT NOT NULL
);
CREATE INDEX trash_by_age ON trash (trashed_ms);
