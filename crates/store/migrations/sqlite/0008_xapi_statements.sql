-- What the standard feeds keep: xAPI statements, as a learning record store keeps them, the
-- mapping the adapters resolve platforms' course ids through, and the pull connectors' state. Times are microseconds since the Unix epoch (UTC).

-- Every statement received, voided ones included (they stay auditable). `statement` is the
-- statement as stored, without `stored` (the column holds it). `seq` follows commit order.
CREATE TABLE xapi_statements (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    statement_id TEXT NOT NULL UNIQUE,
    source       TEXT NOT NULL,
    stored       INTEGER NOT NULL,
    verb_id      TEXT NOT NULL,
    registration TEXT,
    voids        TEXT,
    voided_by    TEXT,
    content_hash TEXT NOT NULL,
    statement    TEXT NOT NULL
) STRICT;
CREATE INDEX xapi_statements_voids ON xapi_statements (voids) WHERE voids IS NOT NULL;
CREATE INDEX xapi_statements_verb ON xapi_statements (verb_id, seq);
CREATE INDEX xapi_statements_registration ON xapi_statements (registration, seq)
    WHERE registration IS NOT NULL;

-- The agents (`agent:<identifier>`) and activities (`activity:<IRI>`) a statement names, for the
-- `agent` and `activity` filters: `direct` for the actor and the object, 0 for those only the
-- `related_agents` / `related_activities` filters reach.
CREATE TABLE xapi_statement_refs (
    ref    TEXT NOT NULL,
    seq    INTEGER NOT NULL REFERENCES xapi_statements (seq),
    direct INTEGER NOT NULL,
    PRIMARY KEY (ref, seq, direct)
) STRICT, WITHOUT ROWID;

-- When a voiding statement retracted the event, it no longer reaches the figures (the change
-- feed leaves it out); the event itself is kept.
ALTER TABLE events ADD COLUMN voided_at INTEGER;

CREATE TABLE course_map (
    source             TEXT NOT NULL,
    platform_course_id TEXT NOT NULL,
    course_id          TEXT NOT NULL,
    PRIMARY KEY (source, platform_course_id)
) STRICT;

-- Each pull connector's place in its pass (a JSON cursor it alone reads) and its health.
CREATE TABLE connector_state (
    name            TEXT PRIMARY KEY,
    cursor          TEXT NOT NULL,
    last_run_at     INTEGER,
    last_success_at INTEGER,
    rows_total      INTEGER NOT NULL,
    last_error      TEXT
) STRICT;
CREATE INDEX xapi_statements_stored ON xapi_statements (stored);
