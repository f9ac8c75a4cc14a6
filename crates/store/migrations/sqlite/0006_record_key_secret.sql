-- The secret each learner's record key is derived from (disclosure control: the cell key
-- method). Drawn once, when the database is made, and never exported: a learner's key is
-- SHA-256 of this secret and the learner id, so it is permanent, unchanged by re-ingest and the
-- same on every replica.
CREATE TABLE record_key_secret (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    secret TEXT NOT NULL
);
INSERT INTO record_key_secret (id, secret) VALUES (1, lower(hex(randomblob(32))));
