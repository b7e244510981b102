-- A counter every committed change to the metadata advances, kept by triggers in the same
-- transaction as the change. Its high-water mark is also written to a file beside the database
-- (meta.db.commits): a database whose counter is behind that file lost committed state (its
-- write-ahead file was deleted, say) and is refused at start.
CREATE TABLE commit_counter (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
INSERT INTO commit_counter (id, n) VALUES (0, 0);
CREATE TRIGGER count_buckets_insert AFTER INSERT ON buckets BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_buckets_update AFTER UPDATE ON buckets BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_buckets_delete AFTER DELETE ON buckets BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_versions_insert AFTER INSERT ON versions BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_versions_update AFTER UPDATE ON versions BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_versions_delete AFTER DELETE ON versions BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_uploads_insert AFTER INSERT ON uploads BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_uploads_delete AFTER DELETE ON uploads BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_parts_insert AFTER INSERT ON parts BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_parts_update AFTER UPDATE ON parts BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_iam_insert AFTER INSERT ON iam_records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_iam_update AFTER UPDATE ON iam_records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_iam_delete AFTER DELETE ON iam_records BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_sites_insert AFTER INSERT ON sites BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_sites_update AFTER UPDATE ON sites BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER count_sites_delete AFTER DELETE ON sites BEGIN UPDATE commit_counter SET n = n + 1 WHERE id = 0; END;
