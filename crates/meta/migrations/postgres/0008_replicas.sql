-- Version 8: replicas. Every segment and part lists the sites holding a durable copy of its
-- blob (site ids joined by commas, best first, empty: written before version 8, on the
-- primary site) and the CRC32C of the bytes stored (the ciphertext), which the scrubber
-- checks every copy against (NULL before version 8). The trash keeps the list, so the collector deletes every copy. Run-time
-- site records: a site's state (active, draining, removed) and, for a site added through the
-- admin API, its definition (JSON, with the names of the environment variables holding its
-- secrets, never the secrets).
ALTER TABLE segments ADD COLUMN sites TEXT NOT NULL DEFAULT '';
ALTER TABLE parts ADD COLUMN sites TEXT NOT NULL DEFAULT '';
ALTER TABLE trash ADD COLUMN sites TEXT NOT NULL DEFAULT '';
ALTER TABLE segments ADD COLUMN crc32c BIGINT;
ALTER TABLE parts ADD COLUMN crc32c BIGINT;
CREATE TABLE sites (
    id          TEXT PRIMARY KEY,
    definition  TEXT,
    state       TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    changed_ms  BIGINT NOT NULL
);
