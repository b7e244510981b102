-- Version 4: the transparency log's sequence when the metadata database sequences it
-- (several gateways over one database). Entries are immutable once written.
CREATE TABLE ledger_entries (
    idx    BIGINT PRIMARY KEY,
    entry  BYTEA NOT NULL
);
