-- Version 6: bucket default encryption (JSON: algorithm and key id), or NULL for the
-- deployment default.
ALTER TABLE buckets ADD COLUMN encryption TEXT;
