-- Schema v11: one record store. Identity records, run-time site records and saved job states
-- are all typed JSON documents keyed by kind and id with a revision for compare-and-set (the
-- table iam_records, renamed). The rows of the old sites and jobs tables move into it as kinds
-- `site` and `job`, and their tables go. The commit-counter triggers move to the new name.
ALTER TABLE iam_records RENAME TO records;
INSERT INTO records (kind, id, body, rev)
    SELECT 'site', id, json_object('id', id, 'definition', definition, 'state', state,
                                   'changed_by', changed_by, 'changed_ms', changed_ms), 1
    FROM sites;
INSERT INTO records (kind, id, body, rev) SELECT 'job', name, state, 1 FROM jobs;
DROP TABLE sites;
DROP TABLE jobs;
DROP TRIGGER count_iam_insert;
DROP TRIGGER count_iam_update;
DROP TRIGGER count_iam_delete;
CREATE TRIGGER count_records_insert AFTER INSERT ON records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_records_update AFTER UPDATE ON records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_records_delete AFTER DELETE ON records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
