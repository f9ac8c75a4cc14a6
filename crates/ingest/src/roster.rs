//! Reference data and the roster, in CSV or JSON: parsing, checking and upserting.
//!
//! A file is checked whole before anything is written: a missing or unknown column, a bad value
//! or a reference to an unknown institution, discipline or cohort refuses the file with every
//! problem listed by line, so an admin fixes it and sends it again (upserts are idempotent).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use nigrani_domain::roster::is_valid_key;
use nigrani_domain::{Cohort, Discipline, Institution, Learner, LearnerRef, TrackPlan};
use nigrani_store::{Store, StoreError};
use serde::Serialize;

/// How many rows are written per store call, so that a roster of millions streams.
pub const CHUNK_ROWS: usize = 10_000;

/// The kinds of roster file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RosterKind {
    Institutions,
    Disciplines,
    Tracks,
    Cohorts,
    Learners,
}

impl RosterKind {
    /// Every kind, in the order a fresh program is loaded (references before learners).
    pub const ALL: &'static [RosterKind] = &[
        RosterKind::Institutions,
        RosterKind::Disciplines,
        RosterKind::Tracks,
        RosterKind::Cohorts,
        RosterKind::Learners,
    ];

    /// The kind's name, as in URLs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RosterKind::Institutions => "institutions",
            RosterKind::Disciplines => "disciplines",
            RosterKind::Tracks => "tracks",
            RosterKind::Cohorts => "cohorts",
            RosterKind::Learners => "learners",
        }
    }

    /// CSV columns: those every file must have, then those it may have.
    pub fn columns(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            RosterKind::Institutions => (
                &["hec_id", "name", "province", "city", "sector"],
                &["name_ur"],
            ),
            RosterKind::Disciplines => (&["code", "name", "stem"], &["name_ur"]),
            RosterKind::Tracks => (
                &["track", "required_courses", "target"],
                &["stretch_target"],
            ),
            RosterKind::Cohorts => (
                &[
                    "cohort_id",
                    "name",
                    "track",
                    "starts_on",
                    "ends_on",
                    "target",
                ],
                &["name_ur"],
            ),
            RosterKind::Learners => (
                &[
                    "learner_id",
                    "institution",
                    "discipline",
                    "track",
                    "cohort",
                    "role",
                    "identities",
                ],
                &["gender"],
            ),
        }
    }

    /// Recognises a kind from its CSV header: the kind whose required columns are all present.
    pub fn from_header(header: &[&str]) -> Option<RosterKind> {
        RosterKind::ALL.iter().copied().find(|kind| {
            let (required, _) = kind.columns();
            required.iter().all(|column| header.contains(column))
        })
    }
}

impl std::str::FromStr for RosterKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        RosterKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown roster kind `{value}`; expected one of: institutions, disciplines, \
                     tracks, cohorts, learners"
                )
            })
    }
}

/// Rows of one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Institutions(Vec<Institution>),
    Disciplines(Vec<Discipline>),
    Tracks(Vec<TrackPlan>),
    Cohorts(Vec<Cohort>),
    Learners(Vec<Learner>),
}

impl Rows {
    /// The kind of these rows.
    pub fn kind(&self) -> RosterKind {
        match self {
            Rows::Institutions(_) => RosterKind::Institutions,
            Rows::Disciplines(_) => RosterKind::Disciplines,
            Rows::Tracks(_) => RosterKind::Tracks,
            Rows::Cohorts(_) => RosterKind::Cohorts,
            Rows::Learners(_) => RosterKind::Learners,
        }
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            Rows::Institutions(rows) => rows.len(),
            Rows::Disciplines(rows) => rows.len(),
            Rows::Tracks(rows) => rows.len(),
            Rows::Cohorts(rows) => rows.len(),
            Rows::Learners(rows) => rows.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One problem with one row of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    /// Line of the file (CSV, counting the header as line 1) or index of the item (JSON, from 0).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// Why a roster file was refused. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("the file holds no rows")]
    Empty,
    #[error("the CSV header lacks required columns: {}", .0.join(", "))]
    MissingColumns(Vec<String>),
    #[error("the CSV header has columns this kind does not take: {}", .0.join(", "))]
    UnknownColumns(Vec<String>),
    #[error("line {0} is not valid UTF-8")]
    InvalidUtf8(u64),
    #[error("the CSV is malformed: {0}")]
    MalformedCsv(String),
    #[error("the JSON is malformed: {0}")]
    MalformedJson(String),
    #[error("{} row(s) are invalid; first: line {}: {}", .0.len(), .0[0].line, .0[0].message)]
    InvalidRows(Vec<RowProblem>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RosterError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RosterError::Empty => "empty_batch",
            RosterError::MissingColumns(_) => "csv_missing_columns",
            RosterError::UnknownColumns(_) => "csv_unknown_columns",
            RosterError::InvalidUtf8(_) => "invalid_utf8",
            RosterError::MalformedCsv(_) => "malformed_csv",
            RosterError::MalformedJson(_) => "malformed_json",
            RosterError::InvalidRows(_) => "invalid_rows",
            RosterError::Store(_) => "store_error",
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RosterReport {
    /// The kind written.
    pub kind: RosterKind,
    /// Rows inserted or updated.
    pub rows: u64,
    /// Previously unmatched events now attributed to a learner (learners only).
    pub attributed_events: u64,
}

/// Parses a CSV file of one kind.
pub fn parse_csv(kind: RosterKind, bytes: &[u8]) -> Result<Rows, RosterError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(str::to_owned)
        .collect();
    let (required, optional) = kind.columns();
    let missing: Vec<String> = required
        .iter()
        .filter(|c| !header.iter().any(|h| h == *c))
        .map(|c| (*c).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(RosterError::MissingColumns(missing));
    }
    let unknown: Vec<String> = header
        .iter()
        .filter(|h| !required.contains(&h.as_str()) && !optional.contains(&h.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(RosterError::UnknownColumns(unknown));
    }
    let index: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();

    let mut problems = Vec::new();
    let mut records = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        records.push((line, record));
    }
    if records.is_empty() {
        return Err(RosterError::Empty);
    }
    macro_rules! rows_of {
        ($variant:ident, $from:ident) => {{
            let mut rows = Vec::with_capacity(records.len());
            for (line, record) in &records {
                let field = |name: &str| {
                    index
                        .get(name)
                        .and_then(|&i| record.get(i))
                        .unwrap_or_default()
                };
                match $from(&field) {
                    Ok(row) => rows.push(row),
                    Err(message) => problems.push(RowProblem {
                        line: *line,
                        message,
                    }),
                }
            }
            Rows::$variant(rows)
        }};
    }
    let rows = match kind {
        RosterKind::Institutions => rows_of!(Institutions, institution_from),
        RosterKind::Disciplines => rows_of!(Disciplines, discipline_from),
        RosterKind::Tracks => rows_of!(Tracks, track_from),
        RosterKind::Cohorts => rows_of!(Cohorts, cohort_from),
        RosterKind::Learners => rows_of!(Learners, learner_from),
    };
    if !problems.is_empty() {
        return Err(RosterError::InvalidRows(problems));
    }
    let lines: Vec<u64> = records.iter().map(|(line, _)| *line).collect();
    check_rows(&rows, |i| lines[i])?;
    Ok(rows)
}

/// Parses a JSON array of one kind.
pub fn parse_json(kind: RosterKind, bytes: &[u8]) -> Result<Rows, RosterError> {
    fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, RosterError> {
        serde_json::from_slice(bytes).map_err(|e| RosterError::MalformedJson(e.to_string()))
    }
    let rows = match kind {
        RosterKind::Institutions => Rows::Institutions(parse(bytes)?),
        RosterKind::Disciplines => Rows::Disciplines(parse(bytes)?),
        RosterKind::Tracks => Rows::Tracks(parse(bytes)?),
        RosterKind::Cohorts => Rows::Cohorts(parse(bytes)?),
        RosterKind::Learners => Rows::Learners(parse(bytes)?),
    };
    if rows.is_empty() {
        return Err(RosterError::Empty);
    }
    check_rows(&rows, |i| i as u64)?;
    Ok(rows)
}

fn csv_error(e: csv::Error) -> RosterError {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => {
            RosterError::InvalidUtf8(pos.as_ref().map_or(0, |p| p.line()))
        }
        _ => RosterError::MalformedCsv(e.to_string()),
    }
}

type Field<'a> = dyn Fn(&str) -> &'a str + 'a;

fn parse_field<T: std::str::FromStr>(field: &Field<'_>, name: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    field(name).parse().map_err(|e| format!("`{name}`: {e}"))
}

fn number(field: &Field<'_>, name: &str) -> Result<u32, String> {
    field(name)
        .parse()
        .map_err(|_| format!("`{name}` must be a whole number ≥ 0, got `{}`", field(name)))
}

fn urdu_or_english(field: &Field<'_>, english: &str) -> String {
    match field("name_ur") {
        "" => english.to_owned(),
        urdu => urdu.to_owned(),
    }
}

fn institution_from(field: &Field<'_>) -> Result<Institution, String> {
    Ok(Institution {
        hec_id: field("hec_id").to_owned(),
        name: field("name").to_owned(),
        name_ur: urdu_or_english(field, field("name")),
        province: parse_field(field, "province")?,
        city: field("city").to_owned(),
        sector: parse_field(field, "sector")?,
    })
}

fn discipline_from(field: &Field<'_>) -> Result<Discipline, String> {
    let stem = match field("stem").to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => true,
        "false" | "no" | "0" => false,
        other => return Err(format!("`stem` must be true or false, got `{other}`")),
    };
    Ok(Discipline {
        code: field("code").to_owned(),
        name: field("name").to_owned(),
        name_ur: urdu_or_english(field, field("name")),
        stem,
    })
}

fn track_from(field: &Field<'_>) -> Result<TrackPlan, String> {
    Ok(TrackPlan {
        track: parse_field(field, "track")?,
        required_courses: split_list(field("required_courses")),
        target: number(field, "target")?,
        stretch_target: match field("stretch_target") {
            "" => None,
            _ => Some(number(field, "stretch_target")?),
        },
    })
}

fn cohort_from(field: &Field<'_>) -> Result<Cohort, String> {
    let date = |name: &str| {
        NaiveDate::parse_from_str(field(name), "%Y-%m-%d")
            .map_err(|_| format!("`{name}` must be a date YYYY-MM-DD, got `{}`", field(name)))
    };
    Ok(Cohort {
        cohort_id: field("cohort_id").to_owned(),
        name: field("name").to_owned(),
        name_ur: urdu_or_english(field, field("name")),
        track: parse_field(field, "track")?,
        starts_on: date("starts_on")?,
        ends_on: date("ends_on")?,
        target: number(field, "target")?,
    })
}

fn learner_from(field: &Field<'_>) -> Result<Learner, String> {
    let identities = split_list(field("identities"))
        .iter()
        .map(|r| LearnerRef::parse(r).map_err(|e| format!("`identities`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Learner {
        learner_id: field("learner_id").to_owned(),
        identities,
        institution: field("institution").to_owned(),
        discipline: field("discipline").to_owned(),
        track: parse_field(field, "track")?,
        cohort: field("cohort").to_owned(),
        role: parse_field(field, "role")?,
        gender: match field("gender") {
            "" => None,
            _ => Some(parse_field(field, "gender")?),
        },
    })
}

/// Splits a `|`-separated list, dropping empty entries.
fn split_list(text: &str) -> Vec<String> {
    text.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks rules within one file: keys well formed and unique, names present, dates in order.
fn check_rows(rows: &Rows, line_of: impl Fn(usize) -> u64) -> Result<(), RosterError> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut key = |i: usize, what: &str, value: &str, problems: &mut Vec<RowProblem>| {
        if !is_valid_key(value) {
            problems.push(RowProblem {
                line: line_of(i),
                message: format!(
                    "`{what}` must be 1-100 letters, digits, `-`, `_` or `.`, got `{value}`"
                ),
            });
        } else if !seen.insert(value.to_owned()) {
            problems.push(RowProblem {
                line: line_of(i),
                message: format!("`{what}` `{value}` appears more than once"),
            });
        }
    };
    let need = |i: usize, what: &str, value: &str, problems: &mut Vec<RowProblem>| {
        if value.trim().is_empty() {
            problems.push(RowProblem {
                line: line_of(i),
                message: format!("`{what}` must not be empty"),
            });
        }
    };
    match rows {
        Rows::Institutions(rows) => {
            for (i, row) in rows.iter().enumerate() {
                key(i, "hec_id", &row.hec_id, &mut problems);
                need(i, "name", &row.name, &mut problems);
                need(i, "city", &row.city, &mut problems);
            }
        }
        Rows::Disciplines(rows) => {
            for (i, row) in rows.iter().enumerate() {
                key(i, "code", &row.code, &mut problems);
                need(i, "name", &row.name, &mut problems);
            }
        }
        Rows::Tracks(rows) => {
            for (i, row) in rows.iter().enumerate() {
                key(i, "track", row.track.as_str(), &mut problems);
                if row.required_courses.is_empty() {
                    need(i, "required_courses", "", &mut problems);
                }
                for course in &row.required_courses {
                    if !is_valid_key(course) {
                        problems.push(RowProblem {
                            line: line_of(i),
                            message: format!("course id `{course}` is not a valid key"),
                        });
                    }
                }
            }
        }
        Rows::Cohorts(rows) => {
            for (i, row) in rows.iter().enumerate() {
                key(i, "cohort_id", &row.cohort_id, &mut problems);
                need(i, "name", &row.name, &mut problems);
                if row.ends_on < row.starts_on {
                    problems.push(RowProblem {
                        line: line_of(i),
                        message: format!(
                            "`ends_on` {} lies before `starts_on` {}",
                            row.ends_on, row.starts_on
                        ),
                    });
                }
            }
        }
        Rows::Learners(rows) => {
            let mut identities = HashSet::new();
            for (i, row) in rows.iter().enumerate() {
                key(i, "learner_id", &row.learner_id, &mut problems);
                for identity in &row.identities {
                    if !identities.insert(identity.as_str()) {
                        problems.push(RowProblem {
                            line: line_of(i),
                            message: format!(
                                "identity `{identity}` is given to more than one learner"
                            ),
                        });
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RosterError::InvalidRows(problems))
    }
}

/// Checks references against what the store holds, then upserts in chunks.
pub async fn apply(store: &Arc<dyn Store>, rows: &Rows) -> Result<RosterReport, RosterError> {
    let kind = rows.kind();
    let mut report = RosterReport {
        kind,
        rows: 0,
        attributed_events: 0,
    };
    match rows {
        Rows::Institutions(rows) => {
            for chunk in rows.chunks(CHUNK_ROWS) {
                report.rows += store.upsert_institutions(chunk).await?;
            }
        }
        Rows::Disciplines(rows) => {
            for chunk in rows.chunks(CHUNK_ROWS) {
                report.rows += store.upsert_disciplines(chunk).await?;
            }
        }
        Rows::Tracks(rows) => {
            report.rows += store.upsert_track_plans(rows).await?;
        }
        Rows::Cohorts(rows) => {
            for chunk in rows.chunks(CHUNK_ROWS) {
                report.rows += store.upsert_cohorts(chunk).await?;
            }
        }
        Rows::Learners(rows) => {
            check_learner_references(store, rows).await?;
            for chunk in rows.chunks(CHUNK_ROWS) {
                let change = store.upsert_learners(chunk).await?;
                report.rows += change.learners;
                report.attributed_events += change.attributed_events;
            }
        }
    }
    Ok(report)
}

async fn check_learner_references(
    store: &Arc<dyn Store>,
    rows: &[Learner],
) -> Result<(), RosterError> {
    let institutions: HashSet<String> = store
        .institutions()
        .await?
        .into_iter()
        .map(|i| i.hec_id)
        .collect();
    let disciplines: HashSet<String> = store
        .disciplines()
        .await?
        .into_iter()
        .map(|d| d.code)
        .collect();
    let cohorts: HashMap<String, Cohort> = store
        .cohorts()
        .await?
        .into_iter()
        .map(|c| (c.cohort_id.clone(), c))
        .collect();
    let mut problems = Vec::new();
    for (i, learner) in rows.iter().enumerate() {
        let mut problem = |message: String| {
            problems.push(RowProblem {
                line: i as u64 + 2,
                message: format!("learner `{}`: {message}", learner.learner_id),
            });
        };
        if !institutions.contains(&learner.institution) {
            problem(format!("unknown institution `{}`", learner.institution));
        }
        if !disciplines.contains(&learner.discipline) {
            problem(format!("unknown discipline `{}`", learner.discipline));
        }
        match cohorts.get(&learner.cohort) {
            None => problem(format!("unknown cohort `{}`", learner.cohort)),
            Some(cohort) if cohort.track != learner.track => problem(format!(
                "cohort `{}` belongs to the {} track, not {}",
                cohort.cohort_id, cohort.track, learner.track
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RosterError::InvalidRows(problems))
    }
}

/// Writes rows as CSV, with the same columns [`parse_csv`] reads.
pub fn to_csv(rows: &Rows) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let (required, optional) = rows.kind().columns();
    let header: Vec<&str> = required.iter().chain(optional).copied().collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    match rows {
        Rows::Institutions(rows) => lines.extend(rows.iter().map(|r| {
            vec![
                r.hec_id.clone(),
                r.name.clone(),
                r.province.to_string(),
                r.city.clone(),
                r.sector.to_string(),
                r.name_ur.clone(),
            ]
        })),
        Rows::Disciplines(rows) => lines.extend(rows.iter().map(|r| {
            vec![
                r.code.clone(),
                r.name.clone(),
                r.stem.to_string(),
                r.name_ur.clone(),
            ]
        })),
        Rows::Tracks(rows) => lines.extend(rows.iter().map(|r| {
            vec![
                r.track.to_string(),
                r.required_courses.join("|"),
                r.target.to_string(),
                r.stretch_target.map(|s| s.to_string()).unwrap_or_default(),
            ]
        })),
        Rows::Cohorts(rows) => lines.extend(rows.iter().map(|r| {
            vec![
                r.cohort_id.clone(),
                r.name.clone(),
                r.track.to_string(),
                r.starts_on.to_string(),
                r.ends_on.to_string(),
                r.target.to_string(),
                r.name_ur.clone(),
            ]
        })),
        Rows::Learners(rows) => lines.extend(rows.iter().map(|r| {
            vec![
                r.learner_id.clone(),
                r.institution.clone(),
                r.discipline.clone(),
                r.track.to_string(),
                r.cohort.clone(),
                r.role.to_string(),
                r.identities
                    .iter()
                    .map(LearnerRef::as_str)
                    .collect::<Vec<_>>()
                    .join("|"),
                r.gender.map(|g| g.to_string()).unwrap_or_default(),
            ]
        })),
    }
    // Writing to a Vec cannot fail; a failure here would be a bug in the csv crate.
    let _ = writer.write_record(&header);
    for line in lines {
        let _ = writer.write_record(&line);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_through_to_csv() {
        let csv = "hec_id,name,province,city,sector,name_ur\n\
                   PK-SD-001,\"NED University, Karachi\",sindh,Karachi,public,این ای ڈی\n";
        let rows = parse_csv(RosterKind::Institutions, csv.as_bytes()).unwrap();
        assert_eq!(to_csv(&rows), csv);
    }

    #[test]
    fn missing_and_extra_columns_are_named() {
        let err = parse_csv(RosterKind::Institutions, b"hec_id,name\nPK-1,X\n").unwrap_err();
        assert_eq!(err.code(), "csv_missing_columns");
        assert!(err.to_string().contains("province, city, sector"), "{err}");

        let err = parse_csv(
            RosterKind::Disciplines,
            b"code,name,stem,colour\nlaw,Law,false,red\n",
        )
        .unwrap_err();
        assert_eq!(err.code(), "csv_unknown_columns");
        assert!(err.to_string().contains("colour"));
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let mut bytes = b"code,name,stem\nlaw,Law,false\nart,Fine \xff Arts,false\n".to_vec();
        bytes.push(b'\n');
        let err = parse_csv(RosterKind::Disciplines, &bytes).unwrap_err();
        assert!(matches!(err, RosterError::InvalidUtf8(3)), "{err:?}");
    }

    #[test]
    fn bad_values_are_listed_by_line() {
        let csv = "cohort_id,name,track,starts_on,ends_on,target\n\
                   c1,One,soft,2026-01-01,2026-03-01,10\n\
                   c2,Two,medium,2026-01-01,2026-03-01,10\n\
                   c3,Three,hard,2026-05-01,2026-03-01,10\n\
                   c1,Again,soft,2026-01-01,2026-03-01,x\n";
        let RosterError::InvalidRows(problems) =
            parse_csv(RosterKind::Cohorts, csv.as_bytes()).unwrap_err()
        else {
            panic!("expected invalid rows");
        };
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 5], "{problems:?}");
        let csv = "cohort_id,name,track,starts_on,ends_on,target\n\
                   c1,One,soft,2026-01-01,2026-03-01,10\n\
                   c3,Three,hard,2026-05-01,2026-03-01,10\n\
                   c1,Again,soft,2026-01-01,2026-03-01,7\n";
        let RosterError::InvalidRows(problems) =
            parse_csv(RosterKind::Cohorts, csv.as_bytes()).unwrap_err()
        else {
            panic!("expected invalid rows");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].message.contains("more than once"));
    }

    #[test]
    fn unequal_rows_and_empty_files_are_refused() {
        let err = parse_csv(RosterKind::Disciplines, b"code,name,stem\nlaw,Law\n").unwrap_err();
        assert_eq!(err.code(), "malformed_csv");
        let err = parse_csv(RosterKind::Disciplines, b"code,name,stem\n").unwrap_err();
        assert_eq!(err.code(), "empty_batch");
    }

    #[test]
    fn kinds_are_recognised_from_headers() {
        assert_eq!(
            RosterKind::from_header(&["hec_id", "name", "name_ur", "province", "city", "sector"]),
            Some(RosterKind::Institutions)
        );
        assert_eq!(RosterKind::from_header(&["what"]), None);
    }
}
