-- Version 5: encryption. JSON of the wrapped data key and segment size, or NULL for data
-- written before encryption existed (read in clear).
ALTER TABLE versions ADD COLUMN encryption TEXT;
ALTER TABLE uploads ADD COLUMN encryption TEXT;
