-- Version 7: boundary policies. The bucket row holds the latest version (JSON: version,
-- policy, set_by, set_ms) and boundary_history keeps every version, written in the same
-- transaction, until the bucket is deleted.
ALTER TABLE buckets ADD COLUMN boundary TEXT;
CREATE TABLE boundary_history (
    bucket   TEXT NOT NULL,
    version  BIGINT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (bucket, version)
);
