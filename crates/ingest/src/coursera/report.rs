//! One row of Coursera's enrollment report, read from the API's JSON or from the CSV export of
//! the same report, and the normalised events the row stands for.
//!
//! A row is a snapshot: "as of `updatedAt`, this learner of this program is enrolled in this
//! content, is this far through it, completed it (or not), earned this certificate, and is (or
//! is no longer) a member". Coursera re-sends every row on every pull, so [`row_events`] turns a
//! snapshot into facts that can be sent again and again:
//!
//! - An event's `raw` holds exactly what defines it — the fields of the row it was built from
//!   (with the e-mail address replaced by its `email:<sha256>` reference) and the fields derived
//!   from them — and its `event_id` is the kind and the SHA-256 of that text. The same row gives
//!   the same events, byte for byte (a duplicate on ingest, never a conflict); a row that says
//!   something new gives a new event beside the old ones, never an overwrite.
//! - Fields that change without changing a fact (`updatedAt` for every event but `withdrawn`,
//!   names, the membership state for every event but `withdrawn`) are left out of `raw`, so that
//!   a re-pulled row whose `updatedAt` moved gives the very same events.
//! - The analytics combine events forward only (the greatest progress, the first completion,
//!   the best score, the first withdrawal), so an older report imported after a newer one moves
//!   nothing back.
//!
//! Facts about Coursera's report this module relies on (see also `mod.rs`): timestamps are epoch
//! milliseconds; `overallProgress` runs 0-100; when a learner was invited without an external
//! id, Coursera reports the e-mail address *as* the `externalId` (business.coursera.help, "Update
//! to APIs", Feb 2019), so an `externalId` holding `@` is treated as an e-mail address and hashed.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use chrono::{DateTime, NaiveDateTime, Utc};
use nigrani_domain::event::{canonical_json, content_hash_of_canonical};
use nigrani_domain::roster::{is_valid_key, sha256_hex};
use nigrani_domain::{EventKind, LearnerRef, LearningEvent, RejectReason, Rejection};
use serde_json::{Map, Value};

use crate::CourseMap;
use crate::native::json_type;

/// Where a row was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowAt {
    /// The CSV line the row starts on, from 1 (the header is line 1).
    Line(u64),
    /// The row's place in the API's report, from 0 (the page's `start` plus its index there).
    Element(u64),
    /// Built by a program, not read.
    Unknown,
}

impl fmt::Display for RowAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowAt::Line(line) => write!(f, "line {line}"),
            RowAt::Element(index) => write!(f, "report row {index}"),
            RowAt::Unknown => f.write_str("a report row"),
        }
    }
}

/// One row of the enrollment report: one learner of one program in one content item (a course
/// or a specialization). Field names in the comments are the API's.
#[derive(Clone, PartialEq)]
pub struct ReportRow {
    /// Where the row was read; not part of its content.
    pub at: RowAt,
    /// `programId`: the Coursera program (for this program, e.g. "AI Soft Skills").
    pub program_id: String,
    /// `programName`.
    pub program_name: Option<String>,
    /// `externalId`: the id the program invited the learner with. Coursera puts the e-mail
    /// address here when there is none.
    pub external_id: Option<String>,
    /// `email`, in clear as received. Never stored: events carry its `email:<sha256>` reference.
    pub email: Option<String>,
    /// `contentId`: Coursera's id of the course or specialization.
    pub content_id: String,
    /// `contentType`, e.g. `COURSE` or `SPECIALIZATION`.
    pub content_type: Option<String>,
    /// `contentName`.
    pub content_name: Option<String>,
    /// `isCompleted` (absent reads as `false`).
    pub is_completed: bool,
    /// `completedAt`, epoch milliseconds.
    pub completed_at: Option<i64>,
    /// `overallProgress`, 0-100.
    pub overall_progress: Option<f64>,
    /// `grade`, on a 0-1 scale (see [`grade_on_unit_scale`] for how a 0-100 grade is read).
    pub grade: Option<f64>,
    /// `enrolledAt`, epoch milliseconds.
    pub enrolled_at: Option<i64>,
    /// `lastActivityAt`, epoch milliseconds.
    pub last_activity_at: Option<i64>,
    /// `updatedAt`, epoch milliseconds: when Coursera last changed the row.
    pub updated_at: Option<i64>,
    /// `membershipState`, e.g. `MEMBER` or `DELETED_MEMBER`.
    pub membership_state: Option<String>,
    /// The CSV export's "Removed From Program" column (the API says this with
    /// `membershipState`); read from JSON as `removedFromProgram` when present.
    pub removed_from_program: Option<bool>,
    /// `certificateUrl`: the course certificate, once earned.
    pub certificate_url: Option<String>,
}

impl fmt::Debug for ReportRow {
    /// Like a derived `Debug`, with the e-mail address (and an `externalId` that is one) left
    /// out, so that a logged row never carries it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |value: &Option<String>| {
            value.as_ref().map(|v| {
                if v.contains('@') {
                    LearnerRef::from_email(v).to_string()
                } else {
                    v.clone()
                }
            })
        };
        f.debug_struct("ReportRow")
            .field("at", &self.at)
            .field("program_id", &self.program_id)
            .field("program_name", &self.program_name)
            .field("external_id", &redact(&self.external_id))
            .field("email", &redact(&self.email))
            .field("content_id", &self.content_id)
            .field("content_type", &self.content_type)
            .field("content_name", &self.content_name)
            .field("is_completed", &self.is_completed)
            .field("completed_at", &self.completed_at)
            .field("overall_progress", &self.overall_progress)
            .field("grade", &self.grade)
            .field("enrolled_at", &self.enrolled_at)
            .field("last_activity_at", &self.last_activity_at)
            .field("updated_at", &self.updated_at)
            .field("membership_state", &self.membership_state)
            .field("removed_from_program", &self.removed_from_program)
            .field("certificate_url", &self.certificate_url)
            .finish()
    }
}

/// Why a row could not be read, or could not become events. The caller keeps it as a rejection
/// ([`RowError::into_rejection`]): nothing received is dropped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct RowError {
    /// Where the row was.
    pub at: RowAt,
    /// The API's name of the field at fault, when one is.
    pub field: Option<&'static str>,
    /// Which kind of fault, as rejections name them.
    pub reason: RejectReason,
    /// A sentence for people.
    pub message: String,
    /// The row as received, as JSON under the API's field names, with the e-mail address
    /// replaced by its `email:<sha256>` reference (columns nigrani does not read, such as the
    /// learner's name, are left out).
    pub raw: String,
}

impl RowError {
    /// Whether this is the header's error (a required column missing, or no CSV at all): it
    /// ends the file, and no row of it was read.
    pub fn is_header_error(&self) -> bool {
        self.at == RowAt::Line(1)
    }

    /// The error as a rejection of `source`, to store.
    pub fn into_rejection(self, source: &str) -> Rejection {
        Rejection {
            reason: self.reason,
            message: self.to_string(),
            source: Some(source.to_owned()),
            event_id: None,
            raw: self.raw,
        }
        .storable()
    }
}

/// The report's columns, by their API names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    ProgramId,
    ProgramName,
    ExternalId,
    Email,
    ContentId,
    ContentType,
    ContentName,
    IsCompleted,
    CompletedAt,
    OverallProgress,
    Grade,
    EnrolledAt,
    LastActivityAt,
    UpdatedAt,
    MembershipState,
    RemovedFromProgram,
    CertificateUrl,
}

impl Column {
    const ALL: [Column; 17] = [
        Column::ProgramId,
        Column::ProgramName,
        Column::ExternalId,
        Column::Email,
        Column::ContentId,
        Column::ContentType,
        Column::ContentName,
        Column::IsCompleted,
        Column::CompletedAt,
        Column::OverallProgress,
        Column::Grade,
        Column::EnrolledAt,
        Column::LastActivityAt,
        Column::UpdatedAt,
        Column::MembershipState,
        Column::RemovedFromProgram,
        Column::CertificateUrl,
    ];

    fn api_name(self) -> &'static str {
        match self {
            Column::ProgramId => "programId",
            Column::ProgramName => "programName",
            Column::ExternalId => "externalId",
            Column::Email => "email",
            Column::ContentId => "contentId",
            Column::ContentType => "contentType",
            Column::ContentName => "contentName",
            Column::IsCompleted => "isCompleted",
            Column::CompletedAt => "completedAt",
            Column::OverallProgress => "overallProgress",
            Column::Grade => "grade",
            Column::EnrolledAt => "enrolledAt",
            Column::LastActivityAt => "lastActivityAt",
            Column::UpdatedAt => "updatedAt",
            Column::MembershipState => "membershipState",
            Column::RemovedFromProgram => "removedFromProgram",
            Column::CertificateUrl => "certificateUrl",
        }
    }

    /// The names a header (or a JSON key) may give the column, normalised by [`normalise`], in
    /// order of preference: the API's name first, then the spellings of Coursera's CSV exports
    /// ("External Id", "Course ID", "Enrollment Time", "Last Course Activity Time", "Overall
    /// Progress", "Completed", "Completion Time", "Course Grade", "Removed From Program",
    /// "Course Certificate URL", "Program Slug", "Course Slug", …). A slug stands in for an id
    /// only when the file has no id column.
    fn spellings(self) -> &'static [&'static str] {
        match self {
            Column::ProgramId => &["programid", "programslug"],
            Column::ProgramName => &["programname", "program"],
            Column::ExternalId => &["externalid", "externaluserid", "userexternalid"],
            Column::Email => &["email", "emailaddress", "learneremail", "useremail"],
            Column::ContentId => &[
                "contentid",
                "courseid",
                "specializationid",
                "contentslug",
                "courseslug",
            ],
            Column::ContentType => &["contenttype", "coursetype"],
            Column::ContentName => &["contentname", "coursename", "course"],
            Column::IsCompleted => &["iscompleted", "completed", "coursecompleted"],
            Column::CompletedAt => &[
                "completedat",
                "completiontime",
                "completiondate",
                "completedon",
                "coursecompletiontime",
            ],
            Column::OverallProgress => &["overallprogress", "progress", "courseprogress"],
            Column::Grade => &["grade", "coursegrade", "finalgrade"],
            Column::EnrolledAt => &[
                "enrolledat",
                "enrollmenttime",
                "enrollmentdate",
                "enrolledon",
                "enrolmenttime",
            ],
            Column::LastActivityAt => &[
                "lastactivityat",
                "lastcourseactivitytime",
                "lastactivitytime",
                "lastactivity",
                "lastactivitydate",
            ],
            Column::UpdatedAt => &["updatedat", "lastupdated", "updatedtime", "lastupdatedtime"],
            Column::MembershipState => &[
                "membershipstate",
                "membershipstatus",
                "programmembershipstate",
            ],
            Column::RemovedFromProgram => &["removedfromprogram", "removed"],
            Column::CertificateUrl => {
                &["certificateurl", "coursecertificateurl", "certificatelink"]
            }
        }
    }
}

/// A header or key reduced to lower-case letters and digits: `Last Course Activity Time`,
/// `last_course_activity_time` and `lastCourseActivityTime` are one name.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// For each column, the position (a CSV field's index, a JSON key) it is read from.
fn resolve<T: Clone>(names: impl IntoIterator<Item = (String, T)>) -> HashMap<Column, T> {
    let by_name: HashMap<String, T> = names
        .into_iter()
        .map(|(name, at)| (normalise(&name), at))
        .collect();
    let mut columns = HashMap::new();
    for column in Column::ALL {
        if let Some(at) = column
            .spellings()
            .iter()
            .find_map(|spelling| by_name.get(*spelling))
        {
            columns.insert(column, at.clone());
        }
    }
    columns
}

/// One field as received.
#[derive(Clone, Copy)]
enum Input<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl<'a> Input<'a> {
    /// The field, or `None` when it is empty (an empty CSV field, JSON `null` or `""`).
    fn present(self) -> Option<Self> {
        match self {
            Input::Text(text) if text.trim().is_empty() => None,
            Input::Json(Value::Null) => None,
            Input::Json(Value::String(text)) if text.trim().is_empty() => None,
            other => Some(other),
        }
    }

    fn as_text(self) -> Option<&'a str> {
        match self {
            Input::Text(text) => Some(text),
            Input::Json(Value::String(text)) => Some(text.as_str()),
            Input::Json(_) => None,
        }
    }

    fn to_json(self) -> Value {
        match self {
            Input::Text(text) => Value::String(text.to_owned()),
            Input::Json(value) => value.clone(),
        }
    }
}

/// A row's fields, before they are read.
struct Fields<'a> {
    at: RowAt,
    get: &'a dyn Fn(Column) -> Option<Input<'a>>,
}

impl Fields<'_> {
    fn input(&self, column: Column) -> Option<Input<'_>> {
        (self.get)(column).and_then(Input::present)
    }

    /// The row as received, cleaned of the e-mail address, for a rejection.
    fn cleaned(&self) -> String {
        let mut map = Map::new();
        for column in Column::ALL {
            if let Some(input) = (self.get)(column) {
                let mut value = input.to_json();
                if matches!(column, Column::Email | Column::ExternalId)
                    && let Value::String(text) = &value
                    && text.contains('@')
                {
                    value = Value::String(LearnerRef::from_email(text).to_string());
                }
                map.insert(column.api_name().to_owned(), value);
            }
        }
        canonical_json(&Value::Object(map))
    }

    fn error(&self, column: Column, reason: RejectReason, message: String) -> RowError {
        RowError {
            at: self.at,
            field: Some(column.api_name()),
            reason,
            message,
            raw: self.cleaned(),
        }
    }

    fn invalid(&self, column: Column, message: String) -> RowError {
        self.error(column, RejectReason::InvalidField, message)
    }

    fn text(&self, column: Column) -> Result<Option<String>, RowError> {
        match self.input(column) {
            None => Ok(None),
            Some(Input::Text(text)) => Ok(Some(text.trim().to_owned())),
            Some(Input::Json(Value::String(text))) => Ok(Some(text.trim().to_owned())),
            Some(Input::Json(Value::Number(number))) => Ok(Some(number.to_string())),
            Some(Input::Json(other)) => Err(self.invalid(
                column,
                format!(
                    "`{}` must be text, not {}",
                    column.api_name(),
                    json_type(other)
                ),
            )),
        }
    }

    fn required_text(&self, column: Column) -> Result<String, RowError> {
        self.text(column)?.ok_or_else(|| {
            self.invalid(
                column,
                format!("`{}` is required and was empty", column.api_name()),
            )
        })
    }

    fn boolean(&self, column: Column) -> Result<Option<bool>, RowError> {
        let text = match self.input(column) {
            None => return Ok(None),
            Some(Input::Json(Value::Bool(value))) => return Ok(Some(*value)),
            Some(Input::Text(text)) => text.trim(),
            Some(Input::Json(Value::String(text))) => text.trim(),
            Some(Input::Json(other)) => {
                return Err(self.invalid(
                    column,
                    format!(
                        "`{}` must be true or false, not {}",
                        column.api_name(),
                        json_type(other)
                    ),
                ));
            }
        };
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(Some(true)),
            "false" | "no" | "n" | "0" => Ok(Some(false)),
            _ => Err(self.invalid(
                column,
                format!(
                    "`{}` must be true or false (or yes/no), got `{text}`",
                    column.api_name()
                ),
            )),
        }
    }

    /// A number, and whether it was written as a percentage (`45%`).
    fn number(&self, column: Column) -> Result<Option<(f64, bool)>, RowError> {
        let text = match self.input(column) {
            None => return Ok(None),
            Some(Input::Json(Value::Number(number))) => {
                return number
                    .as_f64()
                    .map(|value| Some((value, false)))
                    .ok_or_else(|| {
                        self.invalid(column, format!("`{}` is not finite", column.api_name()))
                    });
            }
            Some(Input::Text(text)) => text.trim(),
            Some(Input::Json(Value::String(text))) => text.trim(),
            Some(Input::Json(other)) => {
                return Err(self.invalid(
                    column,
                    format!(
                        "`{}` must be a number, not {}",
                        column.api_name(),
                        json_type(other)
                    ),
                ));
            }
        };
        let (digits, percent) = match text.strip_suffix('%') {
            Some(digits) => (digits.trim(), true),
            None => (text, false),
        };
        match digits.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Some((value, percent))),
            _ => Err(self.invalid(
                column,
                format!("`{}` must be a number, got `{text}`", column.api_name()),
            )),
        }
    }

    /// A timestamp as epoch milliseconds: a number (or digits) of milliseconds, or an ISO 8601
    /// text with a zone (`2026-03-01T10:00:00Z`, `2026-03-01 10:00:00 UTC`, `…+05:00`).
    fn timestamp(&self, column: Column) -> Result<Option<i64>, RowError> {
        let name = column.api_name();
        let millis = match self.input(column) {
            None => return Ok(None),
            Some(Input::Json(Value::Number(number))) => match number.as_i64() {
                Some(millis) => millis,
                None => match number.as_f64() {
                    Some(value) if value.fract() == 0.0 && value.abs() < 1e15 => value as i64,
                    _ => {
                        return Err(self.error(
                            column,
                            RejectReason::InvalidTimestamp,
                            format!("`{name}` must be whole epoch milliseconds, got {number}"),
                        ));
                    }
                },
            },
            Some(input @ (Input::Text(_) | Input::Json(Value::String(_)))) => {
                let text = input.as_text().unwrap_or_default().trim();
                if text.bytes().all(|b| b.is_ascii_digit()) {
                    text.parse::<i64>().map_err(|_| {
                        self.error(
                            column,
                            RejectReason::InvalidTimestamp,
                            format!("`{name}` `{text}` is too large for epoch milliseconds"),
                        )
                    })?
                } else {
                    parse_iso(text).map_err(|(reason, why)| {
                        self.error(column, reason, format!("`{name}` `{text}` {why}"))
                    })?
                }
            }
            Some(Input::Json(other)) => {
                return Err(self.error(
                    column,
                    RejectReason::InvalidTimestamp,
                    format!(
                        "`{name}` must be epoch milliseconds or an ISO 8601 text, not {}",
                        json_type(other)
                    ),
                ));
            }
        };
        if !(EARLIEST_MILLIS..=LATEST_MILLIS).contains(&millis) {
            return Err(self.error(
                column,
                RejectReason::InvalidTimestamp,
                format!(
                    "`{name}` {millis} is not a plausible epoch-milliseconds time (1973-2100); \
                     seconds instead of milliseconds?"
                ),
            ));
        }
        Ok(Some(millis))
    }
}

/// 1973-03-03: anything smaller is seconds, not milliseconds, or garbage.
const EARLIEST_MILLIS: i64 = 100_000_000_000;
/// 2100-01-01.
const LATEST_MILLIS: i64 = 4_102_444_800_000;

fn parse_iso(text: &str) -> Result<i64, (RejectReason, &'static str)> {
    let mut candidate = text.replacen(' ', "T", 1);
    for zone in [" UTC", " GMT", "TUTC", "TGMT"] {
        if let Some(stripped) = candidate.strip_suffix(zone) {
            candidate = format!("{stripped}Z");
        }
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(&candidate) {
        return Ok(at.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(at) = DateTime::parse_from_str(&candidate, format) {
            return Ok(at.timestamp_millis());
        }
    }
    let without_zone = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .any(|format| NaiveDateTime::parse_from_str(&candidate, format).is_ok())
        || chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok();
    if without_zone {
        Err((
            RejectReason::TimestampWithoutZone,
            "has no time zone; write it with `Z`, `UTC` or an offset, or as epoch milliseconds",
        ))
    } else {
        Err((
            RejectReason::InvalidTimestamp,
            "is neither epoch milliseconds nor an ISO 8601 timestamp",
        ))
    }
}

/// Coursera's `grade` on a 0-1 scale. The report's `grade` is a fraction (0.92) and some
/// exports write it as a percentage (92, or `92%`, which the CSV reader divides by 100). Rule: a
/// value in 0-1 is a fraction; a value above 1 and up to 100 is a percentage and is divided by
/// 100. A percentage grade of 1% or less is therefore misread as a fraction: Coursera's passing
/// grades lie far above it, so the rule costs nothing in practice.
pub fn grade_on_unit_scale(grade: f64) -> Option<f64> {
    if (0.0..=1.0).contains(&grade) {
        Some(grade)
    } else if grade > 1.0 && grade <= 100.0 {
        Some(grade / 100.0)
    } else {
        None
    }
}

fn read_row(fields: &Fields<'_>) -> Result<ReportRow, RowError> {
    let program_id = fields.required_text(Column::ProgramId)?;
    let content_id = fields.required_text(Column::ContentId)?;
    let overall_progress = match fields.number(Column::OverallProgress)? {
        None => None,
        Some((value, _)) if (0.0..=100.0).contains(&value) => Some(value),
        Some((value, _)) => {
            return Err(fields.error(
                Column::OverallProgress,
                RejectReason::OutOfRange,
                format!("`overallProgress` must lie between 0 and 100, got {value}"),
            ));
        }
    };
    let grade = match fields.number(Column::Grade)? {
        None => None,
        Some((value, percent)) => {
            let value = if percent { value / 100.0 } else { value };
            Some(grade_on_unit_scale(value).ok_or_else(|| {
                fields.error(
                    Column::Grade,
                    RejectReason::OutOfRange,
                    format!("`grade` must lie between 0 and 1 (or 0 and 100%), got {value}"),
                )
            })?)
        }
    };
    let row = ReportRow {
        at: fields.at,
        program_id,
        program_name: fields.text(Column::ProgramName)?,
        external_id: fields.text(Column::ExternalId)?,
        email: fields.text(Column::Email)?,
        content_id,
        content_type: fields.text(Column::ContentType)?,
        content_name: fields.text(Column::ContentName)?,
        is_completed: fields.boolean(Column::IsCompleted)?.unwrap_or(false),
        completed_at: fields.timestamp(Column::CompletedAt)?,
        overall_progress,
        grade,
        enrolled_at: fields.timestamp(Column::EnrolledAt)?,
        last_activity_at: fields.timestamp(Column::LastActivityAt)?,
        updated_at: fields.timestamp(Column::UpdatedAt)?,
        membership_state: fields.text(Column::MembershipState)?,
        removed_from_program: fields.boolean(Column::RemovedFromProgram)?,
        certificate_url: fields.text(Column::CertificateUrl)?,
    };
    if row.external_id.is_none() && row.email.is_none() {
        return Err(fields.error(
            Column::ExternalId,
            RejectReason::InvalidLearner,
            "the row names no learner: `externalId` and `email` are both empty".into(),
        ));
    }
    Ok(row)
}

impl ReportRow {
    /// Reads one element of the API's `elements` array. Keys are matched the way CSV headers
    /// are (case and separators aside), so `contentId` and `content_id` are one field; other
    /// keys are ignored.
    pub fn from_json(value: &Value, at: RowAt) -> Result<ReportRow, RowError> {
        let Value::Object(object) = value else {
            let raw = match value {
                Value::String(_) => "\"<a string>\"".to_owned(),
                other => canonical_json(other),
            };
            return Err(RowError {
                at,
                field: None,
                reason: RejectReason::InvalidField,
                message: format!(
                    "a report row must be a JSON object, not {}",
                    json_type(value)
                ),
                raw,
            });
        };
        let columns = resolve(object.iter().map(|(key, value)| (key.clone(), value)));
        let get = move |column: Column| columns.get(&column).map(|value| Input::Json(value));
        read_row(&Fields { at, get: &get })
    }

    /// The learner, as events name them: `coursera:<externalId>` (with `source` for
    /// `coursera`), or the hashed e-mail address when there is no external id or Coursera put
    /// the address in its place. Also the field that named them and its value as `raw` keeps it.
    fn learner(&self, source: &str) -> Result<(LearnerRef, &'static str, String), String> {
        match (&self.external_id, &self.email) {
            (Some(id), _) if id.contains('@') => {
                let learner = LearnerRef::from_email(id);
                let text = learner.to_string();
                Ok((learner, "externalId", text))
            }
            (Some(id), _) => LearnerRef::on_platform(source, id)
                .map(|learner| (learner, "externalId", id.clone()))
                .map_err(|e| format!("`externalId` is not usable: {e}")),
            (None, Some(email)) if email.contains('@') => {
                let learner = LearnerRef::from_email(email);
                let text = learner.to_string();
                Ok((learner, "email", text))
            }
            (None, Some(_)) => Err("`email` is not an e-mail address".into()),
            (None, None) => Err("the row names no learner".into()),
        }
    }

    /// The row as JSON under the API's names, cleaned of the e-mail address: what a rejection
    /// of it keeps.
    fn cleaned_json(&self) -> String {
        let mut map = Map::new();
        let mut put = |name: &str, value: Value| {
            if !value.is_null() {
                map.insert(name.to_owned(), value);
            }
        };
        let hide = |text: &Option<String>| {
            text.as_ref().map(|t| {
                if t.contains('@') {
                    LearnerRef::from_email(t).to_string()
                } else {
                    t.clone()
                }
            })
        };
        put("programId", Value::from(self.program_id.clone()));
        put("programName", Value::from(self.program_name.clone()));
        put("externalId", Value::from(hide(&self.external_id)));
        put("email", Value::from(hide(&self.email)));
        put("contentId", Value::from(self.content_id.clone()));
        put("contentType", Value::from(self.content_type.clone()));
        put("contentName", Value::from(self.content_name.clone()));
        put("isCompleted", Value::from(self.is_completed));
        put("completedAt", Value::from(self.completed_at));
        put("overallProgress", Value::from(self.overall_progress));
        put("grade", Value::from(self.grade));
        put("enrolledAt", Value::from(self.enrolled_at));
        put("lastActivityAt", Value::from(self.last_activity_at));
        put("updatedAt", Value::from(self.updated_at));
        put(
            "membershipState",
            Value::from(self.membership_state.clone()),
        );
        put("removedFromProgram", Value::from(self.removed_from_program));
        put("certificateUrl", Value::from(self.certificate_url.clone()));
        canonical_json(&Value::Object(map))
    }

    fn error(&self, field: &'static str, reason: RejectReason, message: String) -> RowError {
        RowError {
            at: self.at,
            field: Some(field),
            reason,
            message,
            raw: self.cleaned_json(),
        }
    }

    /// Whether the membership state (or the export's "Removed From Program") says the learner
    /// left the program. See [`membership_left`].
    pub fn has_left(&self) -> bool {
        self.removed_from_program == Some(true)
            || self
                .membership_state
                .as_deref()
                .is_some_and(membership_left)
    }

    /// The key the report has one row per: program, learner (as [`row_events`] names them) and
    /// content. Two rows with the same key in one pass are the same row sent twice.
    pub fn key(&self) -> (String, String, String) {
        let learner = match (&self.external_id, &self.email) {
            (Some(id), _) if id.contains('@') => LearnerRef::from_email(id).to_string(),
            (Some(id), _) => format!("externalId:{id}"),
            (None, Some(email)) => LearnerRef::from_email(email).to_string(),
            (None, None) => String::new(),
        };
        (self.program_id.clone(), learner, self.content_id.clone())
    }
}

/// Membership states that say the learner is no longer in the program. Coursera's states are
/// upper-case words (`MEMBER`, `INVITED`, …); the comparison ignores case and separators, so
/// the CSV's "Deleted Member" is `DELETED_MEMBER`. Coursera keeps a removed learner's
/// certificates and progress (learner.coursera.help, "Leave your organization's learning
/// program"), so leaving is a `withdrawn` event and takes nothing else back.
pub const LEFT_STATES: &[&str] = &["DELETED_MEMBER", "SOFT_DELETED_MEMBER", "NOT_MEMBER"];

/// Membership states of a learner still in the program (or invited to it).
pub const MEMBER_STATES: &[&str] = &[
    "MEMBER",
    "INVITED",
    "INVITED_EMAIL_NOT_VERIFIED",
    "EMAIL_NOT_VERIFIED",
    "WHITELISTED",
];

/// Whether a membership state is one of [`LEFT_STATES`]. A state in neither list counts as
/// still a member (a new state must not invent withdrawals) and is logged.
pub fn membership_left(state: &str) -> bool {
    let wanted = normalise(state);
    if LEFT_STATES.iter().any(|s| normalise(s) == wanted) {
        return true;
    }
    if !MEMBER_STATES.iter().any(|s| normalise(s) == wanted) {
        tracing::warn!(
            state,
            "Coursera reported a membership state nigrani does not know; it is read as still a member."
        );
    }
    false
}

/// Reads the CSV export of the enrollment report, one row at a time (never the whole file).
///
/// Headers are matched ignoring case, spaces and punctuation, under the API's names
/// (`externalId`, `contentId`, `overallProgress`, …) or the export's ("External Id", "Course
/// ID", "Overall Progress", "Completion Time", …; see [`ReportRow`]'s fields). Columns nigrani
/// does not read (the learner's name, job title, location) are ignored and never kept.
/// Timestamps may be epoch milliseconds or ISO 8601 with a zone; booleans true/false or
/// yes/no; progress and grade may carry a `%`. A header that lacks a required column is one
/// error (line 1) and ends the file; a bad row is an error with its line, and reading goes on.
pub fn read_csv(reader: impl Read) -> impl Iterator<Item = Result<ReportRow, RowError>> {
    CsvRows {
        reader: csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(reader),
        columns: None,
        record: csv::StringRecord::new(),
        done: false,
    }
}

struct CsvRows<R> {
    reader: csv::Reader<R>,
    columns: Option<HashMap<Column, usize>>,
    record: csv::StringRecord,
    done: bool,
}

impl<R: Read> CsvRows<R> {
    fn header_error(message: String, field: Option<&'static str>) -> RowError {
        RowError {
            at: RowAt::Line(1),
            field,
            reason: RejectReason::InvalidField,
            message,
            raw: String::new(),
        }
    }

    fn read_header(&mut self) -> Result<HashMap<Column, usize>, RowError> {
        let headers = self
            .reader
            .headers()
            .map_err(|e| Self::header_error(format!("the header cannot be read: {e}"), None))?;
        let columns = resolve(
            headers
                .iter()
                .enumerate()
                .map(|(index, name)| (name.trim_start_matches('\u{feff}').to_owned(), index)),
        );
        for required in [Column::ProgramId, Column::ContentId] {
            if !columns.contains_key(&required) {
                return Err(Self::header_error(
                    format!(
                        "the header has no `{}` column (accepted: {})",
                        required.api_name(),
                        required.spellings().join(", ")
                    ),
                    Some(required.api_name()),
                ));
            }
        }
        if !columns.contains_key(&Column::ExternalId) && !columns.contains_key(&Column::Email) {
            return Err(Self::header_error(
                "the header has neither an `externalId` nor an `email` column".into(),
                Some("externalId"),
            ));
        }
        Ok(columns)
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<ReportRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.columns.is_none() {
            match self.read_header() {
                Ok(columns) => self.columns = Some(columns),
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        match self.reader.read_record(&mut self.record) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                let at = RowAt::Line(self.record.position().map_or(0, csv::Position::line));
                let columns = self.columns.as_ref()?;
                let record = &self.record;
                let get = |column: Column| {
                    columns
                        .get(&column)
                        .and_then(|index| record.get(*index))
                        .map(Input::Text)
                };
                Some(read_row(&Fields { at, get: &get }))
            }
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                let structural = matches!(
                    error.kind(),
                    csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }
                );
                if !structural {
                    self.done = true;
                }
                Some(Err(RowError {
                    at: RowAt::Line(line),
                    field: None,
                    reason: RejectReason::MalformedJson,
                    message: format!("the line is not a readable CSV row: {error}"),
                    raw: String::new(),
                }))
            }
        }
    }
}

fn rfc3339(millis: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Turns one row into its normalised events (see the module's header for why they are
/// idempotent). The events, in order, when the row supports them:
///
/// - `enrolled` at `enrolledAt`;
/// - `progressed` when `overallProgress` > 0, progress = `overallProgress` / 100, at
///   `lastActivityAt` (else `completedAt`, else `enrolledAt`: `updatedAt` never, as it moves
///   without the learner doing anything). A new progress level, or new activity, is a new event;
///   the analytics keep the greatest progress;
/// - `course_completed` at `completedAt` when `isCompleted`, with `score` = the grade on a 0-1
///   scale ([`grade_on_unit_scale`]);
/// - `certificate_earned` at `completedAt` when there is a certificate URL;
/// - `withdrawn` when the learner left the program ([`ReportRow::has_left`]), at `updatedAt`
///   (else `lastActivityAt`, else `enrolledAt`): the analytics keep the first withdrawal.
///
/// A completion or a certificate without `completedAt` is an error: there is no honest time to
/// give it. The course is `courses.course_for(source, contentId)`.
pub fn row_events(
    row: &ReportRow,
    source: &str,
    courses: &CourseMap,
) -> Result<Vec<LearningEvent>, RowError> {
    if !is_valid_key(source) {
        return Err(row.error(
            "source",
            RejectReason::InvalidField,
            format!("source `{source}` must be letters, digits, `-`, `_` or `.`"),
        ));
    }
    let (learner, learner_field, learner_value) = row.learner(source).map_err(|message| {
        let field = if row.external_id.is_some() {
            "externalId"
        } else {
            "email"
        };
        row.error(field, RejectReason::InvalidLearner, message)
    })?;
    let course_id = courses.course_for(source, &row.content_id);
    if !is_valid_key(&course_id) {
        return Err(row.error(
            "contentId",
            RejectReason::InvalidField,
            format!(
                "course `{course_id}` (for `contentId` `{}`) must be 1-100 letters, digits, `-`, \
                 `_` or `.`; map it to a program course",
                row.content_id
            ),
        ));
    }

    let mut base = Map::new();
    base.insert("programId".into(), Value::from(row.program_id.clone()));
    base.insert("contentId".into(), Value::from(row.content_id.clone()));
    if let Some(content_type) = &row.content_type {
        base.insert("contentType".into(), Value::from(content_type.clone()));
    }
    base.insert(learner_field.into(), Value::from(learner_value));
    let builder = Builder {
        row,
        source,
        learner: &learner,
        course_id: &course_id,
        base,
    };

    let mut events = Vec::new();
    if let Some(enrolled_at) = row.enrolled_at {
        events.push(builder.event(
            EventKind::Enrolled,
            ("enrolledAt", enrolled_at),
            &[],
            None,
            None,
        )?);
    }
    if let Some(progress) = row.overall_progress.filter(|p| *p > 0.0) {
        let at = [
            ("lastActivityAt", row.last_activity_at),
            ("completedAt", row.completed_at),
            ("enrolledAt", row.enrolled_at),
        ]
        .into_iter()
        .find_map(|(field, at)| at.map(|at| (field, at)))
        .ok_or_else(|| {
            row.error(
                "lastActivityAt",
                RejectReason::InvalidField,
                "`overallProgress` needs a time: `lastActivityAt` (or `completedAt` or \
                 `enrolledAt`) is required"
                    .into(),
            )
        })?;
        events.push(builder.event(
            EventKind::Progressed,
            at,
            &[("overallProgress", Value::from(progress))],
            Some(progress / 100.0),
            None,
        )?);
    }
    let completed_at = |what: &str| {
        row.completed_at.ok_or_else(|| {
            row.error(
                "completedAt",
                RejectReason::InvalidField,
                format!("{what}, but `completedAt` is empty: there is no time to give it"),
            )
        })
    };
    if row.is_completed {
        let at = completed_at("`isCompleted` is true")?;
        let mut defining = vec![("isCompleted", Value::Bool(true))];
        if let Some(grade) = row.grade {
            defining.push(("grade", Value::from(grade)));
        }
        events.push(builder.event(
            EventKind::CourseCompleted,
            ("completedAt", at),
            &defining,
            None,
            row.grade,
        )?);
    }
    if let Some(url) = &row.certificate_url {
        let at = completed_at("`certificateUrl` is set")?;
        events.push(builder.event(
            EventKind::CertificateEarned,
            ("completedAt", at),
            &[("certificateUrl", Value::from(url.clone()))],
            None,
            None,
        )?);
    }
    if row.has_left() {
        let at = [
            ("updatedAt", row.updated_at),
            ("lastActivityAt", row.last_activity_at),
            ("enrolledAt", row.enrolled_at),
        ]
        .into_iter()
        .find_map(|(field, at)| at.map(|at| (field, at)))
        .ok_or_else(|| {
            row.error(
                "updatedAt",
                RejectReason::InvalidField,
                "the learner left the program, but the row has no time to give it (`updatedAt`)"
                    .into(),
            )
        })?;
        let mut defining = Vec::new();
        if let Some(state) = &row.membership_state {
            defining.push(("membershipState", Value::from(state.clone())));
        }
        if let Some(removed) = row.removed_from_program {
            defining.push(("removedFromProgram", Value::Bool(removed)));
        }
        events.push(builder.event(EventKind::Withdrawn, at, &defining, None, None)?);
    }
    Ok(events)
}

/// What every event of one row shares.
struct Builder<'a> {
    row: &'a ReportRow,
    source: &'a str,
    learner: &'a LearnerRef,
    course_id: &'a str,
    /// The row's identifying fields, cleaned of the e-mail address.
    base: Map<String, Value>,
}

impl Builder<'_> {
    /// One event. `at` is the row's field the time comes from and its value; `defining` the
    /// other row fields that define the event. `raw` = `{"row": <those fields>, "event":
    /// <derived fields>}` as canonical JSON; `event_id` = `<kind>-<sha256 of raw>`.
    fn event(
        &self,
        kind: EventKind,
        at: (&'static str, i64),
        defining: &[(&'static str, Value)],
        progress: Option<f64>,
        score: Option<f64>,
    ) -> Result<LearningEvent, RowError> {
        let (at_field, millis) = at;
        let occurred_at = DateTime::<Utc>::from_timestamp_millis(millis).ok_or_else(|| {
            self.row.error(
                at_field,
                RejectReason::InvalidTimestamp,
                format!("`{at_field}` {millis} is out of range"),
            )
        })?;
        let mut row = self.base.clone();
        row.insert(at_field.into(), Value::from(millis));
        for (name, value) in defining {
            row.insert((*name).into(), value.clone());
        }
        let mut event = Map::new();
        event.insert("kind".into(), Value::from(kind.as_str()));
        event.insert("course_id".into(), Value::from(self.course_id));
        event.insert("learner".into(), Value::from(self.learner.to_string()));
        event.insert("occurred_at".into(), Value::from(rfc3339(millis)));
        event.insert("occurred_at_from".into(), Value::from(at_field));
        if let Some(progress) = progress {
            event.insert("progress".into(), Value::from(progress));
        }
        if let Some(score) = score {
            event.insert("score".into(), Value::from(score));
        }
        let mut payload = Map::new();
        payload.insert("row".into(), Value::Object(row));
        payload.insert("event".into(), Value::Object(event));
        let raw = canonical_json(&Value::Object(payload));
        let content_hash = content_hash_of_canonical(&raw);
        Ok(LearningEvent {
            source: self.source.to_owned(),
            event_id: format!("{}-{}", kind.as_str(), sha256_hex(raw.as_bytes())),
            learner: self.learner.clone(),
            course_id: self.course_id.to_owned(),
            kind,
            progress,
            score,
            duration_seconds: None,
            occurred_at,
            raw,
            content_hash,
            earlier_content_hash: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/coursera/enrollment_report.csv");
    const EMAIL: &str = "ayesha.siddiqui@uet.edu.pk";
    /// 2026-02-02T04:00:00Z
    const ENROLLED: i64 = 1_770_004_800_000;
    const DAY: i64 = 86_400_000;

    fn api_row() -> Value {
        json!({
            "programId": "pKx7Qm2aEe6uGw4bNcR1sA",
            "programName": "AI Soft Skills",
            "externalId": "UET-LHR-04417",
            "email": EMAIL,
            "contentId": "tC2xJ0t5EeuZ7w6y0kX1qA",
            "contentType": "COURSE",
            "contentName": "Generative AI for Educators",
            "isCompleted": false,
            "completedAt": null,
            "overallProgress": 40,
            "grade": null,
            "enrolledAt": ENROLLED,
            "lastActivityAt": ENROLLED + 9 * DAY,
            "updatedAt": ENROLLED + 10 * DAY,
            "membershipState": "MEMBER",
            "certificateUrl": null
        })
    }

    fn row(change: impl FnOnce(&mut Map<String, Value>)) -> ReportRow {
        let mut value = api_row();
        change(value.as_object_mut().unwrap());
        ReportRow::from_json(&value, RowAt::Element(0)).unwrap()
    }

    fn courses() -> CourseMap {
        CourseMap::new([(
            "coursera".to_owned(),
            "tC2xJ0t5EeuZ7w6y0kX1qA".to_owned(),
            "genai-in-teaching-and-learning".to_owned(),
        )])
    }

    fn events(row: &ReportRow) -> Vec<LearningEvent> {
        row_events(row, "coursera", &courses()).unwrap()
    }

    fn kinds(events: &[LearningEvent]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_row_in_progress_is_an_enrolment_and_a_progress_level() {
        let events = events(&row(|_| {}));
        assert_eq!(kinds(&events), [EventKind::Enrolled, EventKind::Progressed]);
        let [enrolled, progressed] = &events[..] else {
            unreachable!()
        };
        assert_eq!(enrolled.learner.as_str(), "coursera:UET-LHR-04417");
        assert_eq!(enrolled.course_id, "genai-in-teaching-and-learning");
        assert_eq!(
            enrolled.occurred_at,
            Utc.with_ymd_and_hms(2026, 2, 2, 4, 0, 0).unwrap()
        );
        assert_eq!(progressed.progress, Some(0.4));
        assert_eq!(
            progressed.occurred_at,
            Utc.with_ymd_and_hms(2026, 2, 11, 4, 0, 0).unwrap()
        );
        for event in &events {
            assert_eq!(event.content_hash, content_hash_of_canonical(&event.raw));
            assert!(event.event_id.starts_with(event.kind.as_str()));
            assert!(event.event_id.len() <= 200);
            assert_eq!(event.earlier_content_hash, None);
            assert!(event.check(Utc::now()).is_ok());
        }
    }

    #[test]
    fn the_same_row_gives_the_same_events_byte_for_byte() {
        assert_eq!(events(&row(|_| {})), events(&row(|_| {})));
        // Key order and number spelling in the API's JSON change nothing.
        let respelled: Value = serde_json::from_str(
            &api_row()
                .to_string()
                .replace("\"overallProgress\":40", "\"overallProgress\":40.0"),
        )
        .unwrap();
        let respelled = ReportRow::from_json(&respelled, RowAt::Element(7)).unwrap();
        assert_eq!(events(&respelled), events(&row(|_| {})));
    }

    #[test]
    fn a_moved_updated_at_or_renamed_course_changes_no_event() {
        let before = events(&row(|_| {}));
        let after = events(&row(|r| {
            r.insert("updatedAt".into(), json!(ENROLLED + 20 * DAY));
            r.insert(
                "contentName".into(),
                json!("Generative AI for Educators (2026)"),
            );
            r.insert("programName".into(), json!("AI Soft Skills — Cohort 1"));
        }));
        assert_eq!(before, after);
    }

    #[test]
    fn new_progress_is_a_new_event_and_old_ones_stay_valid() {
        let at_40 = events(&row(|_| {}));
        let at_70 = events(&row(|r| {
            r.insert("overallProgress".into(), json!(70));
            r.insert("lastActivityAt".into(), json!(ENROLLED + 15 * DAY));
        }));
        // The enrolment is the same event; the progress is a new one.
        assert_eq!(at_40[0], at_70[0]);
        assert_ne!(at_40[1].event_id, at_70[1].event_id);
        assert_eq!(at_70[1].progress, Some(0.7));
    }

    /// The state the analytics keep from events: the greatest progress, the first completion,
    /// the best score. Applying the reports in any order gives the same state.
    fn fold(events: &[LearningEvent]) -> (f64, Option<DateTime<Utc>>, Option<f64>) {
        let mut state = (0.0_f64, None::<DateTime<Utc>>, None::<f64>);
        for event in events {
            if let Some(progress) = event.progress {
                state.0 = state.0.max(progress);
            }
            if event.kind == EventKind::CourseCompleted {
                state.1 = Some(
                    state
                        .1
                        .map_or(event.occurred_at, |at| at.min(event.occurred_at)),
                );
            }
            if let Some(score) = event.score {
                state.2 = Some(state.2.map_or(score, |s| s.max(score)));
            }
        }
        state
    }

    #[test]
    fn an_older_report_imported_after_a_newer_one_moves_nothing_back() {
        let older = events(&row(|_| {}));
        let newer = events(&row(|r| {
            r.insert("overallProgress".into(), json!(100));
            r.insert("isCompleted".into(), json!(true));
            r.insert("completedAt".into(), json!(ENROLLED + 30 * DAY));
            r.insert("grade".into(), json!(0.91));
            r.insert("lastActivityAt".into(), json!(ENROLLED + 30 * DAY));
        }));
        let forward: Vec<_> = older.iter().chain(&newer).cloned().collect();
        let backward: Vec<_> = newer.iter().chain(&older).cloned().collect();
        assert_eq!(fold(&forward), fold(&backward));
        assert_eq!(fold(&forward).0, 1.0);
        assert_eq!(fold(&forward).2, Some(0.91));
        // A later report with progress reset lower (a course version switch) moves the
        // maximum nowhere.
        let reset = events(&row(|r| {
            r.insert("overallProgress".into(), json!(10));
            r.insert("lastActivityAt".into(), json!(ENROLLED + 40 * DAY));
        }));
        let with_reset: Vec<_> = forward.iter().chain(&reset).cloned().collect();
        assert_eq!(fold(&with_reset), fold(&forward));
    }

    #[test]
    fn a_completed_row_gives_completion_certificate_and_score() {
        let events = events(&row(|r| {
            r.insert("overallProgress".into(), json!(100));
            r.insert("isCompleted".into(), json!(true));
            r.insert("completedAt".into(), json!(ENROLLED + 30 * DAY));
            r.insert("grade".into(), json!(92.5));
            r.insert(
                "certificateUrl".into(),
                json!("https://coursera.org/verify/AB12CD34EF56"),
            );
        }));
        assert_eq!(
            kinds(&events),
            [
                EventKind::Enrolled,
                EventKind::Progressed,
                EventKind::CourseCompleted,
                EventKind::CertificateEarned
            ]
        );
        assert_eq!(events[2].score, Some(0.925));
        assert_eq!(events[2].occurred_at, events[3].occurred_at);
        assert!(events[3].raw.contains("AB12CD34EF56"));
    }

    #[test]
    fn a_completion_without_its_time_is_an_error_naming_the_field() {
        let error = row_events(
            &row(|r| {
                r.insert("isCompleted".into(), json!(true));
            }),
            "coursera",
            &courses(),
        )
        .unwrap_err();
        assert_eq!(error.field, Some("completedAt"));
        assert!(!error.raw.contains(EMAIL));
        let rejection = error.into_rejection("coursera");
        assert_eq!(rejection.reason, RejectReason::InvalidField);
        assert!(rejection.message.contains("report row 0"));
    }

    #[test]
    fn leaving_the_program_is_a_withdrawal_and_takes_nothing_back() {
        let events = events(&row(|r| {
            r.insert("membershipState".into(), json!("DELETED_MEMBER"));
        }));
        assert_eq!(
            kinds(&events),
            [
                EventKind::Enrolled,
                EventKind::Progressed,
                EventKind::Withdrawn
            ]
        );
        assert_eq!(
            events[2].occurred_at,
            DateTime::<Utc>::from_timestamp_millis(ENROLLED + 10 * DAY).unwrap()
        );
        assert!(membership_left("Soft Deleted Member"));
        assert!(!membership_left("MEMBER"));
        assert!(!membership_left("SOMETHING_NEW"));
        assert!(
            row(|r| {
                r.insert("removedFromProgram".into(), json!("Yes"));
            })
            .has_left()
        );
    }

    #[test]
    fn the_email_never_reaches_an_event() {
        // Coursera reports the address as the external id when there is none.
        for change in [
            (|r: &mut Map<String, Value>| {
                r.remove("externalId");
            }) as fn(&mut Map<String, Value>),
            |r| {
                r.insert("externalId".into(), json!(EMAIL));
            },
            |r| {
                r.insert("externalId".into(), json!(" Ayesha.Siddiqui@UET.edu.pk "));
                r.remove("email");
            },
        ] {
            let row = row(change);
            let events = events(&row);
            assert!(!events.is_empty());
            for event in &events {
                assert_eq!(event.learner, LearnerRef::from_email(EMAIL));
                assert!(
                    !event.raw.to_lowercase().contains("uet.edu.pk"),
                    "{}",
                    event.raw
                );
                assert!(event.raw.contains(LearnerRef::from_email(EMAIL).as_str()));
            }
            assert!(!format!("{row:?}").contains("uet.edu.pk"));
        }
        // With an external id, the address is not needed, so it is not kept at all.
        for event in events(&row(|_| {})) {
            assert!(!event.raw.contains("email"));
        }
    }

    #[test]
    fn progress_without_any_time_and_bad_values_are_refused() {
        let error = row_events(
            &row(|r| {
                r.remove("lastActivityAt");
                r.remove("enrolledAt");
            }),
            "coursera",
            &courses(),
        )
        .unwrap_err();
        assert_eq!(error.field, Some("lastActivityAt"));

        let read = |change: fn(&mut Map<String, Value>)| {
            let mut value = api_row();
            change(value.as_object_mut().unwrap());
            ReportRow::from_json(&value, RowAt::Element(3)).unwrap_err()
        };
        let error = read(|r| {
            r.insert("overallProgress".into(), json!(140));
        });
        assert_eq!(
            (error.field, error.reason),
            (Some("overallProgress"), RejectReason::OutOfRange)
        );
        let error = read(|r| {
            r.insert("enrolledAt".into(), json!(1_770_004_800));
        });
        assert_eq!(error.field, Some("enrolledAt"));
        assert!(error.message.contains("seconds instead of milliseconds"));
        let error = read(|r| {
            r.remove("contentId");
        });
        assert_eq!(error.field, Some("contentId"));
        let error = read(|r| {
            r.remove("externalId");
            r.remove("email");
        });
        assert_eq!(error.reason, RejectReason::InvalidLearner);
        let error = read(|r| {
            r.insert("grade".into(), json!(250));
        });
        assert_eq!(error.field, Some("grade"));
        assert!(!error.raw.contains(EMAIL), "{}", error.raw);
    }

    #[test]
    fn grades_are_read_on_a_unit_scale() {
        assert_eq!(grade_on_unit_scale(0.87), Some(0.87));
        assert_eq!(grade_on_unit_scale(1.0), Some(1.0));
        assert_eq!(grade_on_unit_scale(87.0), Some(0.87));
        assert_eq!(grade_on_unit_scale(100.0), Some(1.0));
        assert_eq!(grade_on_unit_scale(-0.1), None);
        assert_eq!(grade_on_unit_scale(100.5), None);
    }

    #[test]
    fn the_fixture_csv_reads_with_coursera_headers_quoted_fields_and_line_numbers() {
        let rows: Vec<_> = read_csv(FIXTURE.as_bytes()).collect();
        let good: Vec<&ReportRow> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
        let bad: Vec<&RowError> = rows.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(good.len(), 6, "{bad:?}");
        // A course name with a comma and quotes, in a quoted field.
        assert!(good.iter().any(|r| r.content_name.as_deref()
            == Some("AI Ethics in Academia: Bias, Privacy & \"Fair Use\"")));
        // ISO and epoch-millisecond times both read.
        let zainab = good
            .iter()
            .find(|r| r.external_id.as_deref() == Some("QAU-ISB-00912"))
            .unwrap();
        assert_eq!(zainab.completed_at, Some(1_772_096_400_000));
        assert_eq!(zainab.grade, Some(0.94));
        assert!(zainab.is_completed);
        // Two bad rows, each with its line and field.
        let found: Vec<(RowAt, Option<&str>)> = bad.iter().map(|e| (e.at, e.field)).collect();
        assert_eq!(
            found,
            [
                (RowAt::Line(9), Some("overallProgress")),
                (RowAt::Line(10), Some("enrolledAt"))
            ]
        );
        for error in bad {
            assert!(!error.raw.contains('@'), "{}", error.raw);
            assert!(
                !error.raw.contains("Hassan"),
                "names are never kept: {}",
                error.raw
            );
        }
        // Every good row becomes events; none keeps a name or an address.
        for row in good {
            for event in row_events(row, "coursera", &courses()).unwrap() {
                assert!(!event.raw.contains('@'));
                assert!(!event.raw.contains("Siddiqui"));
            }
        }
    }

    #[test]
    fn csv_with_api_headers_gives_the_same_events_as_the_api() {
        let csv = "programId,externalId,email,contentId,contentType,contentName,isCompleted,\
                   completedAt,overallProgress,grade,enrolledAt,lastActivityAt,updatedAt,\
                   membershipState,certificateUrl\n\
                   pKx7Qm2aEe6uGw4bNcR1sA,UET-LHR-04417,ayesha.siddiqui@uet.edu.pk,\
                   tC2xJ0t5EeuZ7w6y0kX1qA,COURSE,\"Generative AI for Educators\",false,,40,,\
                   2026-02-02T09:00:00+05:00,1770782400000,1770868800000,MEMBER,\n";
        let rows: Vec<_> = read_csv(csv.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].at, RowAt::Line(2));
        assert_eq!(events(&rows[0]), events(&row(|_| {})));
    }

    #[test]
    fn csv_header_problems_and_broken_lines_are_reported() {
        let no_content = "Program Slug,External Id,Overall Progress\nai-soft-skills,X1,5\n";
        let errors: Vec<_> = read_csv(no_content.as_bytes()).collect();
        assert_eq!(errors.len(), 1);
        let error = errors[0].as_ref().unwrap_err();
        assert_eq!((error.at, error.field), (RowAt::Line(1), Some("contentId")));

        // A quoted field spanning lines, then a row with a missing field: the line numbers
        // are where each row starts.
        let text = "Program ID,External Id,Course ID,Course,Overall Progress\n\
                    P1,X1,C1,\"A name\nover two lines\",5\n\
                    P1,X2,C1\n\
                    P1,X3,C1,Plain,7\n";
        let rows: Vec<_> = read_csv(text.as_bytes()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].as_ref().unwrap().at, RowAt::Line(2));
        assert_eq!(rows[1].as_ref().unwrap_err().at, RowAt::Line(4));
        assert_eq!(rows[2].as_ref().unwrap().at, RowAt::Line(5));
        assert_eq!(rows[2].as_ref().unwrap().overall_progress, Some(7.0));
    }

    #[test]
    fn iso_timestamps_need_a_zone() {
        let text = "programId,externalId,contentId,enrolledAt\nP1,X1,C1,2026-02-02 09:00:00\n";
        let error = read_csv(text.as_bytes()).next().unwrap().unwrap_err();
        assert_eq!(error.reason, RejectReason::TimestampWithoutZone);
        let text = "programId,externalId,contentId,enrolledAt\nP1,X1,C1,2026-02-02 04:00:00 UTC\n";
        let row = read_csv(text.as_bytes()).next().unwrap().unwrap();
        assert_eq!(row.enrolled_at, Some(ENROLLED));
    }

    #[test]
    fn an_unmapped_course_keeps_coursera_s_id() {
        let events = row_events(&row(|_| {}), "coursera", &CourseMap::default()).unwrap();
        assert_eq!(events[0].course_id, "tC2xJ0t5EeuZ7w6y0kX1qA");
        // Mapping the course later gives new events, not conflicts with the stored ones.
        assert_ne!(events[0].event_id, self::events(&row(|_| {}))[0].event_id);
    }
}
