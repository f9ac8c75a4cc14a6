-- Reference data, roster, events and rejections.

CREATE TABLE institutions (
    hec_id   TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    name_ur  TEXT NOT NULL,
    province TEXT NOT NULL,
    city     TEXT NOT NULL,
    sector   TEXT NOT NULL
);

CREATE TABLE disciplines (
    code    TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    name_ur TEXT NOT NULL,
    stem    BOOLEAN NOT NULL
);

CREATE TABLE track_plans (
    track            TEXT PRIMARY KEY,
    required_courses TEXT[] NOT NULL,
    target           INTEGER NOT NULL,
    stretch_target   INTEGER
);

CREATE TABLE cohorts (
    cohort_id TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    name_ur   TEXT NOT NULL,
    track     TEXT NOT NULL,
    starts_on DATE NOT NULL,
    ends_on   DATE NOT NULL,
    target    INTEGER NOT NULL
);

CREATE TABLE learners (
    learner_id  TEXT PRIMARY KEY,
    institution TEXT NOT NULL REFERENCES institutions (hec_id),
    discipline  TEXT NOT NULL REFERENCES disciplines (code),
    track       TEXT NOT NULL,
    cohort      TEXT NOT NULL REFERENCES cohorts (cohort_id),
    role        TEXT NOT NULL,
    gender      TEXT
);

-- How platforms name learners. Events carry the platform's name (`learner_ref`) and are joined to
-- the roster through this table, so an event that arrives before its learner is attributed the
-- moment the roster learns the identity, without rewriting the event.
CREATE TABLE learner_identities (
    learner_ref TEXT PRIMARY KEY,
    learner_id  TEXT NOT NULL REFERENCES learners (learner_id)
);
CREATE INDEX learner_identities_learner ON learner_identities (learner_id);

-- Append-only. `seq` follows commit order (writers hold an advisory lock while inserting), so a
-- reader that remembers the last `seq` it saw never misses an event.
CREATE TABLE events (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    learner_ref      TEXT NOT NULL,
    course_id        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    progress         DOUBLE PRECISION,
    score            DOUBLE PRECISION,
    duration_seconds BIGINT,
    occurred_at      TIMESTAMPTZ NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    content_hash     TEXT NOT NULL,
    raw              TEXT NOT NULL,
    UNIQUE (source, event_id)
);
CREATE INDEX events_learner_ref ON events (learner_ref);

CREATE TABLE rejections (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    source      TEXT,
    event_id    TEXT,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    raw         TEXT NOT NULL
);
