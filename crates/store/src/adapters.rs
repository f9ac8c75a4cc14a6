//! What the standard feeds keep — xAPI statements, the course mapping the adapters read, the pull
//! connectors' state: the types both backends share, and the one statement filter they run.
//!
//! A statement is written with the normalised event it maps to (if any) in one transaction, so
//! an acknowledged statement's effect on the figures is as durable as the statement. A voiding
//! statement marks the event of the statement it names as retracted (`events.voided_at`): the
//! change feed leaves such events out, and the learner's state is read again through the roster
//! log, as after a roster change.

use chrono::{DateTime, Utc};
use serde::Serialize;

use nigrani_domain::LearningEvent;

use crate::EventWrite;

/// A statement to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRecord {
    /// The statement id (a lower-case UUID).
    pub statement_id: String,
    /// The source of the key that sent it.
    pub source: String,
    /// The verb's IRI.
    pub verb_id: String,
    /// `context.registration`, when given.
    pub registration: Option<String>,
    /// For a voiding statement: the id of the statement it voids.
    pub voids: Option<String>,
    /// The agents (`agent:<identifier>`) and activities (`activity:<IRI>`) it names, and whether
    /// each is its actor or object (`true`) or only related to it.
    pub refs: Vec<(String, bool)>,
    /// Hash of what identifies the statement's content (see the ingest crate's xAPI module):
    /// the same id sent again with the same hash changes nothing; with another, it conflicts.
    pub content_hash: String,
    /// The statement as it is returned, without `stored`.
    pub statement: String,
}

/// What writing a batch of statements came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementsWrite {
    /// Every statement is stored: `true` for those stored now, `false` for those stored before
    /// with the same content. `events` answers for the events of the
    /// statements stored now, in order (those of statements stored before are not written again).
    Written {
        statements: Vec<bool>,
        events: Vec<EventWrite>,
    },
    /// A statement of the batch was stored before with other content; nothing was written.
    Conflict { statement_id: String },
}

/// A batch of statements and the events they map to.
#[derive(Debug, Clone, Copy)]
pub struct StatementBatch<'a> {
    pub statements: &'a [StatementRecord],
    /// The normalised events of the statements that have a program meaning; their `event_id`
    /// is the statement id.
    pub events: &'a [LearningEvent],
}

/// A statement as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredStatement {
    /// Position in commit order, for paging.
    pub seq: i64,
    /// When nigrani stored it.
    pub stored: DateTime<Utc>,
    /// Whether a voiding statement voided it.
    pub voided: bool,
    /// The statement as stored, without `stored`.
    pub statement: String,
}

/// The filters of `GET /xapi/statements`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementFilter {
    /// `agent:<identifier>`.
    pub agent: Option<String>,
    /// Match the agent anywhere in the statement, not only as actor or object.
    pub related_agents: bool,
    pub verb: Option<String>,
    /// `activity:<IRI>`.
    pub activity: Option<String>,
    /// Match the activity anywhere in the statement, not only as object.
    pub related_activities: bool,
    pub registration: Option<String>,
    /// Stored after this moment.
    pub since: Option<DateTime<Utc>>,
    /// Stored at or before this moment.
    pub until: Option<DateTime<Utc>>,
    /// Oldest first (else newest first).
    pub ascending: bool,
    /// Continue after this `seq` (in the order asked).
    pub after_seq: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// A value bound to the filter's statement; each backend binds it as its own type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bound {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// The query of a filter (`$1`, `$2`, … in order of appearance, as [`crate::sql`] requires),
/// and the values to bind.
pub(crate) fn filter_query(filter: &StatementFilter) -> (String, Vec<Bound>) {
    let mut sql = String::from(
        "SELECT s.seq, s.stored, s.voided_by IS NOT NULL, s.statement FROM xapi_statements s
         WHERE s.voided_by IS NULL",
    );
    let mut values: Vec<Bound> = Vec::new();
    let bind = |value: Bound, values: &mut Vec<Bound>| {
        values.push(value);
        format!("${}", values.len())
    };
    for (reference, related) in [
        (&filter.agent, filter.related_agents),
        (&filter.activity, filter.related_activities),
    ] {
        if let Some(reference) = reference {
            let placeholder = bind(Bound::Text(reference.clone()), &mut values);
            let direct = if related { "" } else { " AND r.direct" };
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM xapi_statement_refs r
                     WHERE r.ref = {placeholder} AND r.seq = s.seq{direct})"
            ));
        }
    }
    if let Some(verb) = &filter.verb {
        let placeholder = bind(Bound::Text(verb.clone()), &mut values);
        sql.push_str(&format!(" AND s.verb_id = {placeholder}"));
    }
    if let Some(registration) = &filter.registration {
        let placeholder = bind(Bound::Text(registration.clone()), &mut values);
        sql.push_str(&format!(" AND s.registration = {placeholder}"));
    }
    if let Some(since) = filter.since {
        let placeholder = bind(Bound::Time(since), &mut values);
        sql.push_str(&format!(" AND s.stored > {placeholder}"));
    }
    if let Some(until) = filter.until {
        let placeholder = bind(Bound::Time(until), &mut values);
        sql.push_str(&format!(" AND s.stored <= {placeholder}"));
    }
    let (past, order) = if filter.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(after) = filter.after_seq {
        let placeholder = bind(Bound::Int(after), &mut values);
        sql.push_str(&format!(" AND s.seq {past} {placeholder}"));
    }
    let limit = bind(
        Bound::Int(i64::try_from(filter.limit).unwrap_or(i64::MAX)),
        &mut values,
    );
    sql.push_str(&format!(" ORDER BY s.seq {order} LIMIT {limit}"));
    (sql, values)
}

/// The `stored` time of a statement written now (PostgreSQL, under the events lock): the
/// database's clock, but always after the latest `stored`, so that every write is stored after
/// any consistent-through moment handed out before it.
pub(crate) const NEXT_STORED_POSTGRES: &str = "SELECT GREATEST(clock_timestamp(),
        COALESCE((SELECT max(stored) FROM xapi_statements) + interval '1 microsecond',
            '-infinity'::timestamptz))";

/// The consistent-through moment (PostgreSQL): the latest `stored` committed (a write in flight
/// took the lock after the writes before it committed, so it is stored after this), or the
/// clock while nothing is stored.
pub(crate) const CONSISTENT_THROUGH_POSTGRES: &str =
    "SELECT COALESCE((SELECT max(stored) FROM xapi_statements), clock_timestamp())";

/// One statement by id: `$1` the id.
pub(crate) const STATEMENT_BY_ID: &str =
    "SELECT seq, stored, voided_by IS NOT NULL, statement FROM xapi_statements
    WHERE statement_id = $1";

/// One row of the course mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CourseMapping {
    /// The platform (the source of its key), e.g. `moodle`.
    pub source: String,
    /// The platform's id of the course: an activity IRI, a content id.
    pub platform_course_id: String,
    /// The program's course id, as the track plans name it.
    pub course_id: String,
}

/// The whole course mapping, by source and platform id.
pub(crate) const COURSE_MAP: &str = "SELECT source, platform_course_id, course_id FROM course_map
    ORDER BY source, platform_course_id";

/// Sets one mapping: `$1` source, `$2` platform id, `$3` course.
pub(crate) const UPSERT_COURSE_MAPPING: &str =
    "INSERT INTO course_map (source, platform_course_id, course_id) VALUES ($1, $2, $3)
    ON CONFLICT (source, platform_course_id) DO UPDATE SET course_id = excluded.course_id";

/// Events stored before their course was mapped (under the platform's own id) move to the
/// course a new mapping names; returns the roster learner of each (to be read again). SQLite,
/// one mapping: `?1` source, `?2` platform id, `?3` course.
pub(crate) const REMAP_UNMAPPED_EVENTS_SQLITE: &str = "UPDATE events SET course_id = ?3
    WHERE source = ?1 AND course_id = ?2
    RETURNING (SELECT learner_id FROM learner_identities i WHERE i.learner_ref = events.learner_ref)";

/// The same on PostgreSQL, for all mappings at once: `$1` sources, `$2` platform ids, `$3`
/// courses.
pub(crate) const REMAP_UNMAPPED_EVENTS_POSTGRES: &str = "UPDATE events e SET course_id = m.course
    FROM unnest($1::text[], $2::text[], $3::text[]) AS m(source, platform, course)
    WHERE e.source = m.source AND e.course_id = m.platform
    RETURNING (SELECT i.learner_id FROM learner_identities i WHERE i.learner_ref = e.learner_ref)";

/// Removes one mapping: `$1` source, `$2` platform id.
pub(crate) const DELETE_COURSE_MAPPING: &str =
    "DELETE FROM course_map WHERE source = $1 AND platform_course_id = $2";

/// A pull connector's state (one per configured program): where its pass is, and its health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorState {
    /// The connector and its program, e.g. `coursera/<program id>`.
    pub name: String,
    /// Where the pass stands, as the connector writes it (JSON).
    pub cursor: String,
    /// When the connector last ran, whatever came of it.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When a pass last reached the end of the report.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Rows read over the connector's life.
    pub rows_total: i64,
    /// Why the last run stopped early, if it did.
    pub last_error: Option<String>,
}

/// Every connector's state, by name.
pub(crate) const CONNECTOR_STATES: &str =
    "SELECT name, cursor, last_run_at, last_success_at, rows_total, last_error
    FROM connector_state ORDER BY name";

/// Writes one connector's state: `$1` name … `$6` last error.
pub(crate) const SAVE_CONNECTOR_STATE: &str =
    "INSERT INTO connector_state (name, cursor, last_run_at, last_success_at, rows_total,
        last_error)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor,
        last_run_at = excluded.last_run_at, last_success_at = excluded.last_success_at,
        rows_total = excluded.rows_total, last_error = excluded.last_error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_their_order_of_appearance() {
        let filter = StatementFilter {
            agent: Some("agent:mbox_sha1sum:ab".into()),
            activity: Some("activity:https://x.example/a".into()),
            related_activities: true,
            verb: Some("http://adlnet.gov/expapi/verbs/completed".into()),
            registration: Some("r".into()),
            since: Some(Utc::now()),
            until: Some(Utc::now()),
            after_seq: Some(7),
            limit: 10,
            ..StatementFilter::default()
        };
        let (sql, values) = filter_query(&filter);
        let mut last = 0;
        for (at, _) in sql.match_indices('$') {
            let number: usize = sql[at + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap();
            assert_eq!(number, last + 1, "{sql}");
            last = number;
        }
        assert_eq!(last, values.len());
        assert!(sql.contains("r.direct"), "the agent filter is direct");
        assert_eq!(sql.matches("r.direct").count(), 1, "activities are related");
    }
}
