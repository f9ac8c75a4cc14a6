-- Reference data, roster, events and rejections. Times are microseconds since the Unix epoch (UTC).

CREATE TABLE institutions (
    hec_id   TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    name_ur  TEXT NOT NULL,
    province TEXT NOT NULL,
    city     TEXT NOT NULL,
    sector   TEXT NOT NULL
) STRICT;

CREATE TABLE disciplines (
    code    TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    name_ur TEXT NOT NULL,
    stem    INTEGER NOT NULL
) STRICT;

CREATE TABLE track_plans (
    track            TEXT PRIMARY KEY,
    required_courses TEXT NOT NULL, -- JSON array of course ids
    target           INTEGER NOT NULL,
    stretch_target   INTEGER
) STRICT;

CREATE TABLE cohorts (
    cohort_id TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    name_ur   TEXT NOT NULL,
    track     TEXT NOT NULL,
    starts_on TEXT NOT NULL, -- YYYY-MM-DD
    ends_on   TEXT NOT NULL,
    target    INTEGER NOT NULL
) STRICT;

CREATE TABLE learners (
    learner_id  TEXT PRIMARY KEY,
    institution TEXT NOT NULL REFERENCES institutions (hec_id),
    discipline  TEXT NOT NULL REFERENCES disciplines (code),
    track       TEXT NOT NULL,
    cohort      TEXT NOT NULL REFERENCES cohorts (cohort_id),
    role        TEXT NOT NULL,
    gender      TEXT
) STRICT;

-- How platforms name learners; events join the roster through it (see the PostgreSQL schema).
CREATE TABLE learner_identities (
    learner_ref TEXT PRIMARY KEY,
    learner_id  TEXT NOT NULL REFERENCES learners (learner_id)
) STRICT;
CREATE INDEX learner_identities_learner ON learner_identities (learner_id);

-- Append-only; SQLite has one writer at a time, so `seq` follows commit order.
CREATE TABLE events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    source           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    learner_ref      TEXT NOT NULL,
    course_id        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    progress         REAL,
    score            REAL,
    duration_seconds INTEGER,
    occurred_at      INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    content_hash     TEXT NOT NULL,
    raw              TEXT NOT NULL,
    UNIQUE (source, event_id)
) STRICT;
CREATE INDEX events_learner_ref ON events (learner_ref);

CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    source      TEXT,
    event_id    TEXT,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    raw         TEXT NOT NULL
) STRICT;
