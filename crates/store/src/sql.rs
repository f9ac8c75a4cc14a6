//! The statements both backends run with the same text.
//!
//! Placeholders are PostgreSQL's `$1`, `$2`, …; SQLite reads them as named parameters and numbers
//! them in the order they first appear, so a backend that binds positionally (rusqlite's
//! `params![]`) binds `$1` first only when `$1` is the first to appear. Every statement here
//! names its placeholders in increasing order, which a test below checks.
//!
//! Time columns are `timestamptz` in PostgreSQL and microseconds since the epoch in SQLite: the
//! text is the same, each backend binds and reads its own kind of value. Statements whose text
//! cannot be the same — bulk writes (`unnest` arrays against `json_each` over one JSON
//! parameter), lists read back as arrays against JSON text, casts — stay in their backend.

/// Checks that the database answers.
pub(crate) const PING: &str = "SELECT 1";

/// All institutions, by `hec_id`.
pub(crate) const INSTITUTIONS: &str = "SELECT hec_id, name, name_ur, province, city, sector
    FROM institutions ORDER BY hec_id";

/// All disciplines, by `code`.
pub(crate) const DISCIPLINES: &str =
    "SELECT code, name, name_ur, stem FROM disciplines ORDER BY code";

/// All track plans.
pub(crate) const TRACK_PLANS: &str = "SELECT track, required_courses, target, stretch_target
    FROM track_plans ORDER BY track DESC";

/// All cohorts, by `cohort_id`.
pub(crate) const COHORTS: &str =
    "SELECT cohort_id, name, name_ur, track, starts_on, ends_on, target
    FROM cohorts ORDER BY cohort_id";

/// A page of learners without their identities: `$1` the last `learner_id` of the previous
/// page (`''` for the first), `$2` the page size.
pub(crate) const LEARNER_DIMENSIONS: &str =
    "SELECT learner_id, institution, discipline, track, cohort, role, gender
    FROM learners WHERE learner_id > $1 ORDER BY learner_id LIMIT $2";

/// The change feed with payloads: events after `$1`, at most `$2`, in `seq` order.
pub(crate) const EVENTS_AFTER: &str =
    "SELECT e.seq, e.received_at, i.learner_id, e.source, e.event_id, e.learner_ref,
        e.course_id, e.kind, e.progress, e.score, e.duration_seconds,
        e.occurred_at, e.content_hash, e.raw
    FROM events e LEFT JOIN learner_identities i ON i.learner_ref = e.learner_ref
    WHERE e.seq > $1 ORDER BY e.seq LIMIT $2";

/// The change feed as analytics reads it: events after `$1`, at most `$2`, in `seq` order —
/// without those a voiding statement retracted, which no figure counts.
pub(crate) const FEED_AFTER: &str =
    "SELECT e.seq, i.learner_id, e.course_id, e.kind, e.progress, e.score, e.occurred_at
    FROM events e LEFT JOIN learner_identities i ON i.learner_ref = e.learner_ref
    WHERE e.seq > $1 AND e.voided_at IS NULL ORDER BY e.seq LIMIT $2";

/// Deletes the rejections received before `$1`.
pub(crate) const PURGE_REJECTIONS: &str = "DELETE FROM rejections WHERE received_at < $1";

/// Counts for [`crate::Store::stats`].
pub(crate) const STATS: &str = "SELECT
    (SELECT count(*) FROM events),
    (SELECT count(*) FROM events e WHERE NOT EXISTS
        (SELECT 1 FROM learner_identities i WHERE i.learner_ref = e.learner_ref)),
    (SELECT count(*) FROM learners),
    (SELECT count(*) FROM rejections),
    (SELECT coalesce(max(seq), 0) FROM events)";

/// Unmatched events and their distinct learner references, per source.
pub(crate) const UNMATCHED_BY_SOURCE: &str = "SELECT e.source, count(DISTINCT e.learner_ref),
        count(*)
    FROM events e WHERE NOT EXISTS
        (SELECT 1 FROM learner_identities i WHERE i.learner_ref = e.learner_ref)
    GROUP BY e.source ORDER BY e.source";

/// The roster version.
pub(crate) const ROSTER_VERSION: &str = "SELECT version FROM roster_version WHERE id = 1";
pub(crate) const RECORD_KEY_SECRET: &str = "SELECT secret FROM record_key_secret WHERE id = 1";

/// The roster log after version `$1`, oldest first.
pub(crate) const ROSTER_LOG_AFTER: &str =
    "SELECT version, part, learner_ids, restated_ids FROM roster_log
    WHERE version > $1 ORDER BY version";

/// Records a roster change, in the change's transaction: bumps the version, logs what changed
/// at the new version, and drops log rows older than the kept ones. The version row's lock
/// orders concurrent changes, so versions follow commit order without gaps. Parameters of the
/// second statement: `$1` the [`crate::RosterPart`], `$2` the learners changed and `$3` those
/// restated, each as a JSON array (or NULL).
pub(crate) const RECORD_ROSTER_CHANGE: [&str; 3] = [
    "UPDATE roster_version SET version = version + 1 WHERE id = 1",
    "INSERT INTO roster_log (version, part, learner_ids, restated_ids)
     SELECT version, $1, $2, $3 FROM roster_version WHERE id = 1",
    "DELETE FROM roster_log
     WHERE version <= (SELECT version FROM roster_version WHERE id = 1) - 1000",
];
const _: () = assert!(
    crate::ROSTER_LOG_KEPT == 1_000,
    "RECORD_ROSTER_CHANGE spells the number out"
);

/// Stores an API key: `$1` key id, `$2` name, `$3` role, `$4` source, `$5` key hash, `$6`
/// created at.
pub(crate) const CREATE_API_KEY: &str =
    "INSERT INTO api_keys (key_id, name, role, source, key_hash, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)";

/// Every API key, oldest first.
pub(crate) const API_KEYS: &str =
    "SELECT key_id, name, role, source, key_hash, created_at, revoked_at
    FROM api_keys ORDER BY created_at, key_id";

/// Revokes key `$2` at `$1`, unless it was revoked before.
pub(crate) const REVOKE_API_KEY: &str =
    "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL";

/// Appends to the audit log: `$1` at, `$2` key id, `$3` method, `$4` path, `$5` query, `$6`
/// status.
pub(crate) const APPEND_AUDIT: &str =
    "INSERT INTO audit_log (at, key_id, method, path, query, status)
    VALUES ($1, $2, $3, $4, $5, $6)";

/// A page of the audit log: entries after id `$1`, at most `$2`, oldest first.
pub(crate) const AUDIT: &str = "SELECT id, at, key_id, method, path, query, status FROM audit_log
    WHERE id > $1 ORDER BY id LIMIT $2";

/// The table that records applied migrations (same shape on both backends).
pub(crate) const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// The versions of the migrations applied, in order.
pub(crate) const APPLIED_MIGRATIONS: &str =
    "SELECT version FROM schema_migrations ORDER BY version";

/// Records an applied migration: `$1` version, `$2` name, `$3` when (RFC 3339).
pub(crate) const RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)";

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &[
        PING,
        INSTITUTIONS,
        DISCIPLINES,
        TRACK_PLANS,
        COHORTS,
        LEARNER_DIMENSIONS,
        EVENTS_AFTER,
        FEED_AFTER,
        PURGE_REJECTIONS,
        STATS,
        UNMATCHED_BY_SOURCE,
        ROSTER_VERSION,
        ROSTER_LOG_AFTER,
        RECORD_ROSTER_CHANGE[0],
        RECORD_ROSTER_CHANGE[1],
        RECORD_ROSTER_CHANGE[2],
        CREATE_API_KEY,
        API_KEYS,
        REVOKE_API_KEY,
        APPEND_AUDIT,
        AUDIT,
        CREATE_SCHEMA_MIGRATIONS,
        APPLIED_MIGRATIONS,
        RECORD_MIGRATION,
    ];

    /// The numbers of a statement's `$n` placeholders, in the order they appear.
    fn placeholders(sql: &str) -> Vec<usize> {
        let mut found = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                found.push(rest[..digits].parse().expect("digits"));
            }
        }
        found
    }

    #[test]
    fn placeholders_first_appear_in_increasing_order() {
        for sql in ALL {
            let mut seen = Vec::new();
            for n in placeholders(sql) {
                if !seen.contains(&n) {
                    seen.push(n);
                }
            }
            let expected: Vec<usize> = (1..=seen.len()).collect();
            assert_eq!(
                seen, expected,
                "SQLite would bind these out of order:\n{sql}"
            );
        }
    }

    #[test]
    fn the_check_sees_placeholders_out_of_order() {
        assert_eq!(
            placeholders("UPDATE t SET a = $2 WHERE b = $1 AND c = $10"),
            [2, 1, 10]
        );
    }
}
