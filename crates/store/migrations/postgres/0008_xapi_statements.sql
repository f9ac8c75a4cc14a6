-- What the standard feeds keep: xAPI statements, as a learning record store keeps them, the
-- mapping the adapters resolve platforms' course ids through, and the pull connectors' state.

-- Every statement received, voided ones included (they stay auditable). `statement` is the
-- statement as stored, without `stored` (the column holds it). `seq` follows commit order
-- (statements are written under the events' advisory lock).
CREATE TABLE xapi_statements (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    statement_id TEXT NOT NULL UNIQUE,
    source       TEXT NOT NULL,
    stored       TIMESTAMPTZ NOT NULL,
    verb_id      TEXT NOT NULL,
    registration TEXT,
    voids        TEXT,
    voided_by    TEXT,
    content_hash TEXT NOT NULL,
    statement    TEXT NOT NULL
);
CREATE INDEX xapi_statements_voids ON xapi_statements (voids) WHERE voids IS NOT NULL;
CREATE INDEX xapi_statements_verb ON xapi_statements (verb_id, seq);
CREATE INDEX xapi_statements_registration ON xapi_statements (registration, seq)
    WHERE registration IS NOT NULL;

-- The agents (`agent:<identifier>`) and activities (`activity:<IRI>`) a statement names, for the
-- `agent` and `activity` filters: `direct` for the actor and the object, false for those only
-- the `related_agents` / `related_activities` filters reach. `seq` is a statement's, written in
-- the statement's own transaction (no foreign key: its check per row would cost more than the
-- insert itself).
CREATE TABLE xapi_statement_refs (
    ref    TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    direct BOOLEAN NOT NULL,
    PRIMARY KEY (ref, seq, direct)
);

-- When a voiding statement retracted the event, it no longer reaches the figures (the change
-- feed leaves it out); the event itself is kept.
ALTER TABLE events ADD COLUMN voided_at TIMESTAMPTZ;

CREATE TABLE course_map (
    source             TEXT NOT NULL,
    platform_course_id TEXT NOT NULL,
    course_id          TEXT NOT NULL,
    PRIMARY KEY (source, platform_course_id)
);

-- Each pull connector's place in its pass (a JSON cursor it alone reads) and its health.
CREATE TABLE connector_state (
    name            TEXT PRIMARY KEY,
    cursor          TEXT NOT NULL,
    last_run_at     TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    rows_total      BIGINT NOT NULL,
    last_error      TEXT
);
CREATE INDEX xapi_statements_stored ON xapi_statements (stored);
