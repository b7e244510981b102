-- Schema v9: identity and access control (tenants, users, access keys, operators, charters,
-- lockbox requests, bucket policies) as JSON documents with a revision for compare-and-set
CREATE TABLE iam_records (
    kind  TEXT NOT NULL,
    id    TEXT NOT NULL,
    body  TEXT NOT NULL,
    rev   BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
