//! Stored rows back into domain values, the same way on both backends.
//!
//! A backend reads a row's columns into one of the `…Row` structs below — that part is its own:
//! SQLite keeps times as microseconds, dates as text and lists as JSON text, PostgreSQL as
//! `timestamptz`, `date` and arrays — and the struct's `decode` does the rest (names into enums,
//! texts into learner references, integers into their ranges), so the two cannot disagree on
//! what a stored value means.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use nigrani_domain::{
    Cohort, Institution, Learner, LearnerRef, LearningEvent, Rejection, TrackPlan,
};

use crate::{ApiKeyRecord, AuditEntry, FeedEvent, StoreError, StoredEvent, StoredRejection};

/// A stored value that does not read back as what it should be: a bug or a corrupted database.
#[derive(Debug)]
pub(crate) struct DecodeError(String);

impl DecodeError {
    pub(crate) fn new(e: impl Display) -> Self {
        Self(format!("stored value cannot be read back: {e}"))
    }

    /// What went wrong, in words.
    pub(crate) fn into_message(self) -> String {
        self.0
    }
}

impl From<DecodeError> for StoreError {
    fn from(e: DecodeError) -> Self {
        StoreError::internal(e.0)
    }
}

/// A value from its stored text (an enum's name, a date).
pub(crate) fn parse<T>(text: &str) -> Result<T, DecodeError>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse().map_err(DecodeError::new)
}

/// A list of texts stored as a JSON array (SQLite's lists).
pub(crate) fn json_list(text: &str) -> Result<Vec<String>, DecodeError> {
    serde_json::from_str(text).map_err(DecodeError::new)
}

/// A whole number stored wider than its type.
fn narrow<T: TryFrom<i64>>(value: i64) -> Result<T, DecodeError>
where
    T::Error: Display,
{
    T::try_from(value).map_err(DecodeError::new)
}

/// The columns of an institution.
pub(crate) struct InstitutionRow {
    pub(crate) hec_id: String,
    pub(crate) name: String,
    pub(crate) name_ur: String,
    pub(crate) province: String,
    pub(crate) city: String,
    pub(crate) sector: String,
}

impl InstitutionRow {
    pub(crate) fn decode(self) -> Result<Institution, DecodeError> {
        Ok(Institution {
            province: parse(&self.province)?,
            sector: parse(&self.sector)?,
            hec_id: self.hec_id,
            name: self.name,
            name_ur: self.name_ur,
            city: self.city,
        })
    }
}

/// The columns of a track plan.
pub(crate) struct TrackPlanRow {
    pub(crate) track: String,
    pub(crate) required_courses: Vec<String>,
    pub(crate) target: i64,
    pub(crate) stretch_target: Option<i64>,
}

impl TrackPlanRow {
    pub(crate) fn decode(self) -> Result<TrackPlan, DecodeError> {
        Ok(TrackPlan {
            track: parse(&self.track)?,
            required_courses: self.required_courses,
            target: narrow(self.target)?,
            stretch_target: self.stretch_target.map(narrow).transpose()?,
        })
    }
}

/// The columns of a cohort.
pub(crate) struct CohortRow {
    pub(crate) cohort_id: String,
    pub(crate) name: String,
    pub(crate) name_ur: String,
    pub(crate) track: String,
    pub(crate) starts_on: NaiveDate,
    pub(crate) ends_on: NaiveDate,
    pub(crate) target: i64,
}

impl CohortRow {
    pub(crate) fn decode(self) -> Result<Cohort, DecodeError> {
        Ok(Cohort {
            track: parse(&self.track)?,
            target: narrow(self.target)?,
            cohort_id: self.cohort_id,
            name: self.name,
            name_ur: self.name_ur,
            starts_on: self.starts_on,
            ends_on: self.ends_on,
        })
    }
}

/// The columns of a learner, and their identities (empty where they were not read).
pub(crate) struct LearnerRow {
    pub(crate) learner_id: String,
    pub(crate) institution: String,
    pub(crate) discipline: String,
    pub(crate) track: String,
    pub(crate) cohort: String,
    pub(crate) role: String,
    pub(crate) gender: Option<String>,
    pub(crate) identities: Vec<String>,
}

impl LearnerRow {
    pub(crate) fn decode(self) -> Result<Learner, DecodeError> {
        Ok(Learner {
            identities: self
                .identities
                .iter()
                .map(|r| LearnerRef::parse(r).map_err(DecodeError::new))
                .collect::<Result<_, _>>()?,
            track: parse(&self.track)?,
            role: parse(&self.role)?,
            gender: self.gender.as_deref().map(parse).transpose()?,
            learner_id: self.learner_id,
            institution: self.institution,
            discipline: self.discipline,
            cohort: self.cohort,
        })
    }
}

/// The columns of a stored event, with the learner the roster attributes it to.
pub(crate) struct EventRow {
    pub(crate) seq: i64,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) learner_id: Option<String>,
    pub(crate) source: String,
    pub(crate) event_id: String,
    pub(crate) learner_ref: String,
    pub(crate) course_id: String,
    pub(crate) kind: String,
    pub(crate) progress: Option<f64>,
    pub(crate) score: Option<f64>,
    pub(crate) duration_seconds: Option<i64>,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) content_hash: String,
    pub(crate) raw: String,
}

impl EventRow {
    pub(crate) fn decode(self) -> Result<StoredEvent, DecodeError> {
        let event = LearningEvent {
            learner: LearnerRef::parse(&self.learner_ref).map_err(DecodeError::new)?,
            kind: parse(&self.kind)?,
            source: self.source,
            event_id: self.event_id,
            course_id: self.course_id,
            progress: self.progress,
            score: self.score,
            duration_seconds: self.duration_seconds,
            occurred_at: self.occurred_at,
            content_hash: self.content_hash,
            earlier_content_hash: None,
            raw: self.raw,
        };
        Ok(StoredEvent {
            seq: self.seq,
            received_at: self.received_at,
            learner_id: self.learner_id,
            event,
        })
    }
}

/// A change-feed row: seq, learner id, course, kind, progress, score, occurred_at.
pub(crate) struct FeedRow {
    pub(crate) seq: i64,
    pub(crate) learner_id: Option<String>,
    pub(crate) course_id: String,
    pub(crate) kind: String,
    pub(crate) progress: Option<f64>,
    pub(crate) score: Option<f64>,
    pub(crate) occurred_at: DateTime<Utc>,
}

impl FeedRow {
    pub(crate) fn decode(self) -> Result<FeedEvent, DecodeError> {
        Ok(FeedEvent {
            kind: parse(&self.kind)?,
            seq: self.seq,
            learner_id: self.learner_id,
            course_id: self.course_id,
            progress: self.progress,
            score: self.score,
            occurred_at: self.occurred_at,
        })
    }
}

/// The columns of a rejection. `raw` is at most [`crate::MAX_KEPT_PAYLOAD_BYTES`] characters
/// of what is stored; rows from before the payload cap have no size or hash (`raw_bytes` is
/// then the stored text's size).
pub(crate) struct RejectionRow {
    pub(crate) id: i64,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) source: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) raw: String,
    pub(crate) raw_bytes: Option<i64>,
    pub(crate) raw_sha256: Option<String>,
}

impl RejectionRow {
    /// The rejection; a payload stored before the cap, larger than it, is cut to the cap.
    pub(crate) fn decode(self) -> Result<StoredRejection, DecodeError> {
        let mut rejection = Rejection {
            reason: parse(&self.reason)?,
            message: self.message,
            source: self.source,
            event_id: self.event_id,
            raw: self.raw,
        };
        let cut = crate::kept_len(&rejection.raw);
        rejection.raw.truncate(cut);
        let kept = rejection.raw.len() as u64;
        let raw_bytes = self
            .raw_bytes
            .map_or(kept, |b| u64::try_from(b).unwrap_or(0));
        Ok(StoredRejection {
            id: self.id,
            received_at: self.received_at,
            rejection,
            raw_truncated: raw_bytes > kept,
            raw_bytes,
            raw_sha256: self.raw_sha256,
        })
    }
}

/// The columns of an API key.
pub(crate) struct ApiKeyRow {
    pub(crate) key_id: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) source: Option<String>,
    pub(crate) key_hash: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    pub(crate) fn decode(self) -> Result<ApiKeyRecord, DecodeError> {
        Ok(ApiKeyRecord {
            role: parse(&self.role)?,
            key_id: self.key_id,
            name: self.name,
            source: self.source,
            key_hash: self.key_hash,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// The columns of an audit entry.
pub(crate) struct AuditRow {
    pub(crate) id: i64,
    pub(crate) at: DateTime<Utc>,
    pub(crate) key_id: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) status: i64,
}

impl AuditRow {
    pub(crate) fn decode(self) -> Result<AuditEntry, DecodeError> {
        Ok(AuditEntry {
            status: narrow(self.status)?,
            id: self.id,
            at: self.at,
            key_id: self.key_id,
            method: self.method,
            path: self.path,
            query: self.query,
        })
    }
}
