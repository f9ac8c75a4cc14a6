//! Writing statements as a learning record store must: all of a batch or none of it.
//!
//! Every statement is validated first; one invalid statement refuses the batch (400), and so do
//! two statements with one id. Each statement is completed as the specification asks — an id
//! when it has none, `timestamp` (the moment it was stored) when absent, `authority` (the key
//! that sent it, whatever the statement claimed) and `version` — then written, with the
//! normalised event it maps to, in one transaction. A statement id stored before with the same
//! content changes nothing; with other content the batch is a conflict (409) and nothing of it
//! is written. A refused batch is kept as a rejection, with its reason.

use std::io::Read;

use chrono::{DateTime, SecondsFormat, Utc};
use nigrani_domain::event::{canonical_json, content_hash_of_canonical};
use nigrani_domain::{LearningEvent, RejectReason, Rejection};
use nigrani_store::adapters::{StatementBatch, StatementRecord, StatementsWrite};
use nigrani_store::{Store, StoreError};
use serde_json::Value;

use crate::CourseMap;
use crate::xapi::validate::{self, Invalid, Version};
use crate::xapi::{mapping, refs};

/// Who sends: the key's source (the platform) and the agent the statements' `authority` names.
#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    pub source: String,
    pub authority: Value,
}

/// Why a batch was refused; nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A statement breaks a rule of the specification (400).
    #[error("statement {index}: {invalid}")]
    Invalid { index: usize, invalid: Invalid },
    /// The body is not one statement or an array of them (400).
    #[error("{0}")]
    Malformed(String),
    /// Two statements of the batch share an id (400).
    #[error("statements {first} and {second} of the batch share the id {id}")]
    DuplicateId {
        id: String,
        first: usize,
        second: usize,
    },
    /// `PUT` named one id and the statement another (400).
    #[error("the statement's id {given} is not the statementId of the request, {expected}")]
    IdMismatch { given: String, expected: String },
    /// More statements than one request may carry (413).
    #[error("the batch holds {count} statements; at most {max} are allowed per request")]
    TooMany { count: usize, max: usize },
    /// A statement id was stored before with other content (409).
    #[error("statement {0} was stored before with other content; statements are immutable")]
    Conflict(String),
    /// The store failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriteError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::Invalid { .. } => "invalid_statement",
            WriteError::Malformed(_) => "malformed_json",
            WriteError::DuplicateId { .. } => "duplicate_statement_id",
            WriteError::IdMismatch { .. } => "statement_id_mismatch",
            WriteError::TooMany { .. } => "too_many_statements",
            WriteError::Conflict(_) => "statement_conflict",
            WriteError::Store(_) => "store_unavailable",
        }
    }
}

/// A batch ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    records: Vec<StatementRecord>,
    events: Vec<LearningEvent>,
    /// Events the figures cannot take (dated more than a day ahead), by their statement's
    /// place in the batch: the statement is stored, the event kept as a rejection.
    refused_events: Vec<(usize, Rejection)>,
    /// How many of the batch's statements change a figure (they map to an event).
    pub meaningful: usize,
}

impl Prepared {
    /// Whether a statement of the batch voids another.
    pub fn voids_any(&self) -> bool {
        self.records.iter().any(|r| r.voids.is_some())
    }

    /// The statement ids, in the batch's order.
    pub fn ids(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| r.statement_id.clone())
            .collect()
    }
}

/// Validates and completes a body (one statement or an array). `put_id` is the `statementId` of
/// a `PUT`, which the statement must match.
pub fn prepare(
    body: &Value,
    version: Version,
    sender: &Sender,
    courses: &CourseMap,
    put_id: Option<&str>,
    max_statements: usize,
    now: DateTime<Utc>,
) -> Result<Prepared, WriteError> {
    let statements: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![body],
        _ => {
            return Err(WriteError::Malformed(
                "the body must be a statement (an object) or an array of statements".into(),
            ));
        }
    };
    if statements.is_empty() {
        return Err(WriteError::Malformed(
            "the batch holds no statements".into(),
        ));
    }
    if statements.len() > max_statements {
        return Err(WriteError::TooMany {
            count: statements.len(),
            max: max_statements,
        });
    }
    if put_id.is_some() && statements.len() != 1 {
        return Err(WriteError::Malformed(
            "PUT takes exactly one statement, not an array".into(),
        ));
    }
    for (index, statement) in statements.iter().enumerate() {
        validate::validate_statement(statement, version)
            .map_err(|invalid| WriteError::Invalid { index, invalid })?;
        attachment_data_is_linked(statement)
            .map_err(|invalid| WriteError::Invalid { index, invalid })?;
    }

    let mut fresh_ids = new_ids(statements.len()).map_err(|e| {
        WriteError::Store(StoreError::internal(format!(
            "no random bytes for statement ids: {e}"
        )))
    })?;
    let stored = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut records = Vec::with_capacity(statements.len());
    let mut events = Vec::new();
    let mut refused_events = Vec::new();
    for (index, statement) in statements.into_iter().enumerate() {
        let mut statement = statement.clone();
        let given = statement
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let id = match (given, put_id) {
            (Some(given), Some(expected)) if given != expected.to_ascii_lowercase() => {
                return Err(WriteError::IdMismatch {
                    given,
                    expected: expected.to_owned(),
                });
            }
            (Some(given), _) => given,
            (None, Some(expected)) => expected.to_ascii_lowercase(),
            (None, None) => fresh_ids.pop().unwrap_or_default(),
        };
        if let Some(first) = seen.insert(id.clone(), index) {
            return Err(WriteError::DuplicateId {
                id,
                first,
                second: index,
            });
        }
        normalise_context_activities(&mut statement);
        let content_hash = content_hash_of(&statement);
        let fields = statement
            .as_object_mut()
            .ok_or_else(|| WriteError::Malformed("a statement must be an object".into()))?;
        fields.insert("id".into(), Value::String(id.clone()));
        fields
            .entry("timestamp")
            .or_insert_with(|| Value::String(stored.clone()));
        fields.insert("authority".into(), sender.authority.clone());
        fields
            .entry("version")
            .or_insert_with(|| Value::String(stored_version(version).into()));
        fields.remove("stored");

        let voids = (statement.pointer("/verb/id").and_then(Value::as_str)
            == Some(mapping::VOIDED))
        .then(|| statement.pointer("/object/id").and_then(Value::as_str))
        .flatten()
        .map(str::to_ascii_lowercase);
        if voids.is_none()
            && let Some(event) =
                mapping::event_of(&statement, &sender.source, courses, &content_hash)
        {
            // An event the figures cannot take (dated more than a day ahead) leaves the statement
            // stored and counted, without an effect, and is kept as a rejection with its reason.
            match event.check(now) {
                Ok(()) => events.push(event),
                Err((reason, message)) => refused_events.push((
                    index,
                    Rejection {
                        reason,
                        message: format!("xAPI statement {id}: {message}"),
                        source: Some(sender.source.clone()),
                        event_id: Some(id.clone()),
                        raw: event.raw.clone(),
                    },
                )),
            }
        }
        records.push(StatementRecord {
            statement_id: id,
            source: sender.source.clone(),
            verb_id: statement
                .pointer("/verb/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            registration: statement
                .pointer("/context/registration")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase),
            voids,
            refs: refs::statement_refs(&statement),
            content_hash,
            statement: canonical_json(&statement),
        });
    }
    Ok(Prepared {
        meaningful: events.len(),
        records,
        events,
        refused_events,
    })
}

/// Writes a prepared batch; returns its statement ids.
pub async fn store(
    store: &dyn Store,
    prepared: &Prepared,
    now: DateTime<Utc>,
) -> Result<Vec<String>, WriteError> {
    let batch = StatementBatch {
        statements: &prepared.records,
        events: &prepared.events,
    };
    match store.write_statements(batch, now).await? {
        StatementsWrite::Written { statements, .. } => {
            let refused: Vec<Rejection> = prepared
                .refused_events
                .iter()
                .filter(|(index, _)| statements.get(*index).copied().unwrap_or(false))
                .map(|(_, rejection)| rejection.clone())
                .collect();
            if !refused.is_empty() {
                store.write_batch(&[], &refused, now).await?;
            }
            Ok(prepared.ids())
        }
        StatementsWrite::Conflict { statement_id } => Err(WriteError::Conflict(statement_id)),
    }
}

/// Keeps a refused batch as a rejection, with its reason: nothing received is dropped.
pub async fn keep_refused(
    store: &dyn Store,
    source: &str,
    body: &[u8],
    error: &WriteError,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let reason = match error {
        WriteError::Malformed(_) => RejectReason::MalformedJson,
        WriteError::Conflict(_) => RejectReason::Conflict,
        _ => RejectReason::InvalidField,
    };
    let rejection = Rejection {
        reason,
        message: format!("xAPI: {error}"),
        source: Some(source.to_owned()),
        event_id: None,
        raw: String::from_utf8_lossy(body).into_owned(),
    }
    .storable();
    store.write_batch(&[], &[rejection], now).await.map(|_| ())
}

/// What identifies a statement's content: the statement as sent, without what the store sets
/// (`authority`, `stored`, `version`, and the `id` itself), in canonical JSON.
fn content_hash_of(statement: &Value) -> String {
    let mut sent = statement.clone();
    if let Some(fields) = sent.as_object_mut() {
        for set_by_store in ["id", "authority", "stored", "version"] {
            fields.remove(set_by_store);
        }
    }
    content_hash_of_canonical(&canonical_json(&sent))
}

/// A statement sent as JSON carries no attachment data, so each attachment (the statement's and
/// a sub-statement's) must say where its data is (`fileUrl`).
fn attachment_data_is_linked(statement: &Value) -> Result<(), Invalid> {
    for (pointer, path) in [
        ("/attachments", "attachments"),
        ("/object/attachments", "object.attachments"),
    ] {
        let Some(Value::Array(attachments)) = statement.pointer(pointer) else {
            continue;
        };
        if let Some(index) = attachments.iter().position(|a| a.get("fileUrl").is_none()) {
            return Err(Invalid {
                path: format!("{path}[{index}]"),
                message: "an attachment without `fileUrl` needs its data in a multipart/mixed \
                          request, which nigrani does not take: link the data with `fileUrl`"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Writes each list of `contextActivities` (the statement's, and a sub-statement's) as an
/// array, as the specification asks an LRS to return them, so that one activity sent bare and
/// the same sent in an array are one content.
fn normalise_context_activities(statement: &mut Value) {
    for pointer in [
        "/context/contextActivities",
        "/object/context/contextActivities",
    ] {
        if let Some(Value::Object(lists)) = statement.pointer_mut(pointer) {
            for list in lists.values_mut() {
                if list.is_object() {
                    *list = Value::Array(vec![list.take()]);
                }
            }
        }
    }
}

/// The `version` a statement without one is stored with.
fn stored_version(version: Version) -> &'static str {
    match version {
        Version::V1_0_3 => "1.0.0",
        Version::V2_0_0 => "2.0.0",
    }
}

/// `count` random (version 4) UUIDs, from the operating system's random bytes.
fn new_ids(count: usize) -> std::io::Result<Vec<String>> {
    let mut bytes = vec![0u8; count * 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks_exact(16)
        .map(|chunk| {
            let mut b = [0u8; 16];
            b.copy_from_slice(chunk);
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let hex = nigrani_domain::roster::hex(&b);
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_version_4_uuids() {
        let ids = new_ids(3).unwrap();
        assert_eq!(ids.len(), 3);
        for id in &ids {
            assert!(validate::is_uuid(id), "{id}");
            assert_eq!(&id[14..15], "4");
        }
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn the_content_hash_ignores_what_the_store_sets() {
        let sent = serde_json::json!({"actor": {"mbox": "mailto:a@b.pk"}, "verb": {"id": "x:y"},
            "object": {"id": "x:z"}});
        let mut stored = sent.clone();
        stored["authority"] = serde_json::json!({"mbox": "mailto:k@b.pk"});
        stored["version"] = "1.0.0".into();
        stored["id"] = "4f0c7a3e-9d51-4f6e-8a0b-2c3d4e5f6a7b".into();
        assert_eq!(content_hash_of(&sent), content_hash_of(&stored));
    }

    #[test]
    fn a_bare_context_activity_is_stored_in_an_array() {
        let mut bare = serde_json::json!({"context": {"contextActivities": {
            "parent": {"id": "https://lms.example/course/1"}}}});
        let listed = serde_json::json!({"context": {"contextActivities": {
            "parent": [{"id": "https://lms.example/course/1"}]}}});
        normalise_context_activities(&mut bare);
        assert_eq!(bare, listed);
    }
}
