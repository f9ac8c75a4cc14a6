-- API keys (stored hashed; the key itself is shown once) and the audit log of partner requests.
CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY, -- the public part of the key, e.g. nk_3f9a1c2b
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,    -- admin, ingest, manager, partner
    source     TEXT,             -- ingest keys: the one source they may send
    key_hash   TEXT NOT NULL,    -- SHA-256 (hex) of the whole key
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    method TEXT NOT NULL,
    path   TEXT NOT NULL,
    query  TEXT NOT NULL,
    status INTEGER NOT NULL
) STRICT;
