-- A counter bumped by every change to the roster or its reference data, so that readers (the
-- analytics snapshot of each replica) know when to reload it.
CREATE TABLE roster_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO roster_version (id, version) VALUES (1, 0);
