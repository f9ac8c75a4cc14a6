//! Reading statements back: `GET /xapi/statements` with one id, or with filters and paging.
//!
//! A list leaves voided statements out and pages with `more`: the URL of the next page, which
//! repeats the filters and says where the page ended. `format=ids` reduces agents to their
//! identifier and activities to their id; `canonical` keeps one language of every language map
//! (the first the request accepts, else the first given); `exact` is the statement as stored.

use std::collections::HashMap;

use chrono::SecondsFormat;
use nigrani_store::adapters::{StatementFilter, StoredStatement};
use nigrani_store::{Store, StoreError};
use serde_json::{Map, Value};

use crate::xapi::refs;
use crate::xapi::validate::{self, Version};

/// Most statements one page holds (also the page size when `limit` is 0 or absent).
pub const MAX_PAGE: usize = 500;
/// A page ends once its statements pass this many bytes (the rest follow on the next page).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Statements read from the store at a time while a page is filled.
const READ_SLICE: usize = 50;

/// Why a query was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// How statements are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Exact,
    Ids,
    Canonical,
}

/// What a GET asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// One statement: not voided (`statementId`) or voided (`voidedStatementId`).
    One { id: String, voided: bool },
    /// A filtered page.
    List(StatementFilter),
}

/// A parsed request: what to read, and how to return it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub query: Query,
    pub format: Format,
    /// The languages the request accepts, in order (for `canonical`).
    pub languages: Vec<String>,
}

const LIST_PARAMETERS: &[&str] = &[
    "agent",
    "verb",
    "activity",
    "registration",
    "related_activities",
    "related_agents",
    "since",
    "until",
    "limit",
    "ascending",
];

/// Reads the query parameters (names are case-sensitive, as the specification has them).
pub fn parse(
    parameters: &[(String, String)],
    accept_language: Option<&str>,
    version: Version,
) -> Result<Request, QueryError> {
    let mut given: HashMap<&str, &str> = HashMap::new();
    for (name, value) in parameters {
        let known = LIST_PARAMETERS.contains(&name.as_str())
            || matches!(
                name.as_str(),
                "statementId" | "voidedStatementId" | "format" | "attachments" | "more"
            );
        if !known {
            return Err(QueryError(format!("unknown parameter `{name}`")));
        }
        if given.insert(name.as_str(), value.as_str()).is_some() {
            return Err(QueryError(format!("parameter `{name}` is given twice")));
        }
    }
    let format = match given.get("format").copied() {
        None | Some("exact") => Format::Exact,
        Some("ids") => Format::Ids,
        Some("canonical") => Format::Canonical,
        Some(other) => {
            return Err(QueryError(format!(
                "`format` must be `exact`, `ids` or `canonical`, not `{other}`"
            )));
        }
    };
    if let Some(attachments) = given.get("attachments") {
        boolean("attachments", attachments)?;
    }
    let languages = accept_language
        .map(|header| {
            header
                .split(',')
                .filter_map(|part| part.split(';').next())
                .map(|tag| tag.trim().to_owned())
                .filter(|tag| !tag.is_empty() && tag != "*")
                .collect()
        })
        .unwrap_or_default();
    let one = match (given.get("statementId"), given.get("voidedStatementId")) {
        (Some(_), Some(_)) => {
            return Err(QueryError(
                "give `statementId` or `voidedStatementId`, not both".into(),
            ));
        }
        (Some(id), None) => Some((*id, false)),
        (None, Some(id)) => Some((*id, true)),
        (None, None) => None,
    };
    if let Some((id, voided)) = one {
        if let Some(other) = LIST_PARAMETERS.iter().find(|p| given.contains_key(*p)) {
            return Err(QueryError(format!(
                "`{other}` cannot be combined with a single statement's id"
            )));
        }
        if !validate::is_uuid(id) {
            return Err(QueryError(format!("`{id}` is not a UUID")));
        }
        return Ok(Request {
            query: Query::One {
                id: id.to_ascii_lowercase(),
                voided,
            },
            format,
            languages,
        });
    }

    let mut filter = StatementFilter {
        limit: MAX_PAGE,
        ..StatementFilter::default()
    };
    if let Some(agent) = given.get("agent") {
        let value: Value = serde_json::from_str(agent)
            .map_err(|e| QueryError(format!("`agent` is not JSON: {e}")))?;
        validate::validate_agent(&value, version)
            .map_err(|e| QueryError(format!("`agent`: {e}")))?;
        filter.agent = Some(refs::agent_key(&value).ok_or_else(|| {
            QueryError("`agent` must have an identifier (an anonymous group has none)".into())
        })?);
    }
    if let Some(verb) = given.get("verb") {
        filter.verb = Some(iri("verb", verb)?);
    }
    if let Some(activity) = given.get("activity") {
        filter.activity = Some(refs::activity_key(&iri("activity", activity)?));
    }
    if let Some(registration) = given.get("registration") {
        if !validate::is_uuid(registration) {
            return Err(QueryError(format!(
                "`registration` must be a UUID, not `{registration}`"
            )));
        }
        filter.registration = Some(registration.to_ascii_lowercase());
    }
    for (name, slot) in [
        ("related_agents", &mut filter.related_agents),
        ("related_activities", &mut filter.related_activities),
        ("ascending", &mut filter.ascending),
    ] {
        if let Some(value) = given.get(name) {
            *slot = boolean(name, value)?;
        }
    }
    for (name, slot) in [("since", &mut filter.since), ("until", &mut filter.until)] {
        if let Some(value) = given.get(name) {
            *slot = Some(validate::parse_timestamp(value).ok_or_else(|| {
                QueryError(format!(
                    "`{name}` must be an ISO 8601 timestamp, not `{value}`"
                ))
            })?);
        }
    }
    if let Some(limit) = given.get("limit") {
        let limit: usize = limit.parse().map_err(|_| {
            QueryError(format!("`limit` must be a whole number ≥ 0, not `{limit}`"))
        })?;
        filter.limit = if limit == 0 {
            MAX_PAGE
        } else {
            limit.min(MAX_PAGE)
        };
    }
    if let Some(more) = given.get("more") {
        filter.after_seq = Some(more.parse().map_err(|_| {
            QueryError(format!(
                "`more` is not a position this server gave: `{more}`"
            ))
        })?);
    }
    Ok(Request {
        query: Query::List(filter),
        format,
        languages,
    })
}

fn boolean(name: &str, value: &str) -> Result<bool, QueryError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(QueryError(format!(
            "`{name}` must be `true` or `false`, not `{other}`"
        ))),
    }
}

fn iri(name: &str, value: &str) -> Result<String, QueryError> {
    if validate::is_iri(value) {
        Ok(value.to_owned())
    } else {
        Err(QueryError(format!(
            "`{name}` must be an IRI, not `{value}`"
        )))
    }
}

/// What a GET answers: one statement, none, or a page and the position after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    One(Option<Value>),
    Page {
        statements: Vec<Value>,
        more: Option<i64>,
    },
}

/// Reads what the request asks for.
pub async fn read(store: &dyn Store, request: &Request) -> Result<Answer, StoreError> {
    match &request.query {
        Query::One { id, voided } => {
            let found = store
                .statement(id)
                .await?
                .filter(|stored| stored.voided == *voided);
            Ok(Answer::One(found.map(|s| shaped(&s, request))))
        }
        Query::List(filter) => {
            // Read in slices, so that a page of large statements stops at MAX_PAGE_BYTES (the
            // rest is on the next page) and memory stays bounded; one row past the page tells
            // whether there is a next page.
            let mut rows = Vec::new();
            let mut bytes = 0usize;
            let mut slice = filter.clone();
            let more = loop {
                slice.limit = READ_SLICE.min(filter.limit + 1 - rows.len());
                let read = store.statements(&slice).await?;
                let exhausted = read.len() < slice.limit;
                for row in read {
                    if rows.len() == filter.limit || (bytes >= MAX_PAGE_BYTES && !rows.is_empty()) {
                        break;
                    }
                    bytes += row.statement.len();
                    rows.push(row);
                }
                let last = rows
                    .last()
                    .map(|r: &nigrani_store::adapters::StoredStatement| r.seq);
                if rows.len() == filter.limit || bytes >= MAX_PAGE_BYTES {
                    // Full: a next page exists when anything follows the last row.
                    let mut probe = filter.clone();
                    probe.after_seq = last;
                    probe.limit = 1;
                    let follows = !store.statements(&probe).await?.is_empty();
                    break if follows { last } else { None };
                }
                if exhausted {
                    break None;
                }
                slice.after_seq = last;
            };
            Ok(Answer::Page {
                statements: rows.iter().map(|s| shaped(s, request)).collect(),
                more,
            })
        }
    }
}

/// The query string of the page after `more`: the request's parameters, with `more` set.
pub fn more_query(parameters: &[(String, String)], more: i64) -> String {
    let mut pairs: Vec<(String, String)> = parameters
        .iter()
        .filter(|(name, _)| name != "more")
        .cloned()
        .collect();
    pairs.push(("more".into(), more.to_string()));
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A stored statement as the request wants it, with `stored` set.
fn shaped(stored: &StoredStatement, request: &Request) -> Value {
    let mut statement: Value =
        serde_json::from_str(&stored.statement).unwrap_or(Value::Object(Map::new()));
    if let Value::Object(fields) = &mut statement {
        fields.insert(
            "stored".into(),
            Value::String(stored.stored.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
    }
    match request.format {
        Format::Exact => {}
        Format::Ids => ids_only(&mut statement),
        Format::Canonical => one_language(&mut statement, &request.languages),
    }
    statement
}

/// `format=ids`: agents and groups keep their identifier (and a group its members'), activities
/// their id, verbs their id.
fn ids_only(statement: &mut Value) {
    fn agent(value: &mut Value) {
        let Value::Object(fields) = value else { return };
        fields.retain(|key, _| {
            matches!(
                key.as_str(),
                "objectType" | "mbox" | "mbox_sha1sum" | "openid" | "account" | "member"
            )
        });
        if let Some(Value::Array(members)) = fields.get_mut("member") {
            members.iter_mut().for_each(agent);
        }
    }
    fn activity(value: &mut Value) {
        if let Value::Object(fields) = value {
            fields.retain(|key, _| matches!(key.as_str(), "objectType" | "id"));
        }
    }
    fn statement_parts(value: &mut Value) {
        let Value::Object(fields) = value else { return };
        for name in ["actor", "authority"] {
            if let Some(a) = fields.get_mut(name) {
                agent(a);
            }
        }
        if let Some(Value::Object(verb)) = fields.get_mut("verb") {
            verb.retain(|key, _| key == "id");
        }
        if let Some(object) = fields.get_mut("object") {
            match object.get("objectType").and_then(Value::as_str) {
                Some("Agent" | "Group") => agent(object),
                Some("SubStatement") => statement_parts(object),
                Some("StatementRef") => {}
                _ => activity(object),
            }
        }
        if let Some(Value::Object(context)) = fields.get_mut("context") {
            for name in ["instructor", "team"] {
                if let Some(a) = context.get_mut(name) {
                    agent(a);
                }
            }
            if let Some(Value::Object(lists)) = context.get_mut("contextActivities") {
                for list in lists.values_mut() {
                    match list {
                        Value::Array(items) => items.iter_mut().for_each(activity),
                        one => activity(one),
                    }
                }
            }
        }
    }
    statement_parts(statement);
}

/// `format=canonical`: every language map keeps one entry — the first language accepted, else
/// the first given.
fn one_language(value: &mut Value, languages: &[String]) {
    const MAPS: &[&str] = &["display", "name", "description"];
    match value {
        Value::Object(fields) => {
            for (key, inner) in fields.iter_mut() {
                if key == "extensions" {
                    continue;
                }
                if MAPS.contains(&key.as_str())
                    && let Value::Object(map) = inner
                    && map.values().all(Value::is_string)
                {
                    let keep = languages
                        .iter()
                        .find(|tag| map.contains_key(tag.as_str()))
                        .cloned()
                        .or_else(|| map.keys().next().cloned());
                    map.retain(|tag, _| Some(tag) == keep.as_ref());
                    continue;
                }
                one_language(inner, languages);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| one_language(v, languages)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn a_single_id_excludes_the_filters() {
        let id = "4f0c7a3e-9d51-4f6e-8a0b-2c3d4e5f6a7b";
        let one = parse(&params(&[("statementId", id)]), None, Version::V1_0_3).unwrap();
        assert_eq!(
            one.query,
            Query::One {
                id: id.into(),
                voided: false
            }
        );
        assert!(
            parse(
                &params(&[("statementId", id), ("verb", "x:y")]),
                None,
                Version::V1_0_3
            )
            .is_err()
        );
        assert!(parse(&params(&[("statementId", "nope")]), None, Version::V1_0_3).is_err());
        assert!(parse(&params(&[("Verb", "x:y")]), None, Version::V1_0_3).is_err());
    }

    #[test]
    fn filters_and_limits_are_read() {
        let request = parse(
            &params(&[
                ("agent", r#"{"mbox": "mailto:xapi@adlnet.gov"}"#),
                ("limit", "0"),
                ("ascending", "true"),
                ("since", "2026-11-01T00:00:00Z"),
            ]),
            Some("ur-PK, en;q=0.8"),
            Version::V1_0_3,
        )
        .unwrap();
        let Query::List(filter) = request.query else {
            panic!("a list")
        };
        assert_eq!(filter.limit, MAX_PAGE);
        assert!(filter.ascending);
        assert!(filter.agent.unwrap().starts_with("agent:mbox_sha1sum:"));
        assert_eq!(request.languages, ["ur-PK", "en"]);
        assert!(parse(&params(&[("limit", "-1")]), None, Version::V1_0_3).is_err());
        assert!(parse(&params(&[("ascending", "yes")]), None, Version::V1_0_3).is_err());
    }

    #[test]
    fn more_repeats_the_filters() {
        let query = more_query(&params(&[("verb", "http://a.pk/v"), ("more", "3")]), 9);
        assert_eq!(query, "verb=http%3A%2F%2Fa.pk%2Fv&more=9");
    }

    #[test]
    fn canonical_keeps_one_language() {
        let mut statement = serde_json::json!({"verb": {"id": "x:y",
            "display": {"en-US": "completed", "ur-PK": "مکمل"}}});
        one_language(&mut statement, &["ur-PK".to_owned()]);
        assert_eq!(
            statement["verb"]["display"],
            serde_json::json!({"ur-PK": "مکمل"})
        );
    }
}
