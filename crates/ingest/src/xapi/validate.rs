//! The rules of the xAPI specification for a statement, as a learning record store applies them
//! before it accepts one (xAPI 1.0.3, part three, section 2; IEEE 9274.1.1 for 2.0.0).
//!
//! The checks are structural and exact: every object may hold only the properties the
//! specification names, spelled in its case; `null` is refused everywhere except inside
//! extensions (whose values are the sender's own); identifiers, IRIs, timestamps, durations and
//! language tags must have their formats. The first rule broken is reported with the JSON path
//! of the offending value, so that a sender can find it in a batch of thousands.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::native::json_type;

/// The xAPI versions nigrani speaks, as the `X-Experience-API-Version` header names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 1.0.0 to 1.0.3 (they share one format).
    V1_0_3,
    /// IEEE 9274.1.1.
    V2_0_0,
}

impl Version {
    /// The version a header value names, if nigrani speaks it.
    pub fn from_header(value: &str) -> Option<Version> {
        match value {
            "1.0" | "1.0.0" | "1.0.1" | "1.0.2" | "1.0.3" => Some(Version::V1_0_3),
            "2.0" | "2.0.0" => Some(Version::V2_0_0),
            _ => None,
        }
    }

    /// The version as nigrani answers it in `X-Experience-API-Version`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0_3 => "1.0.3",
            Version::V2_0_0 => "2.0.0",
        }
    }
}

/// A broken rule: where (a JSON path such as `object.definition.name`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for Invalid {}

type Checked = Result<(), Invalid>;

/// The verb that voids the statement its object names.
pub const VOIDED: &str = "http://adlnet.gov/expapi/verbs/voided";

const STATEMENT_KEYS: &[&str] = &[
    "id",
    "actor",
    "verb",
    "object",
    "result",
    "context",
    "timestamp",
    "stored",
    "authority",
    "version",
    "attachments",
];
const SUB_STATEMENT_KEYS: &[&str] = &[
    "objectType",
    "actor",
    "verb",
    "object",
    "result",
    "context",
    "timestamp",
    "attachments",
];
const AGENT_KEYS: &[&str] = &[
    "objectType",
    "name",
    "mbox",
    "mbox_sha1sum",
    "openid",
    "account",
];
const GROUP_KEYS: &[&str] = &[
    "objectType",
    "name",
    "mbox",
    "mbox_sha1sum",
    "openid",
    "account",
    "member",
];
const IDENTIFIERS: &[&str] = &["mbox", "mbox_sha1sum", "openid", "account"];
const ACCOUNT_KEYS: &[&str] = &["homePage", "name"];
const VERB_KEYS: &[&str] = &["id", "display"];
const ACTIVITY_KEYS: &[&str] = &["objectType", "id", "definition"];
const DEFINITION_KEYS: &[&str] = &[
    "name",
    "description",
    "type",
    "moreInfo",
    "extensions",
    "interactionType",
    "correctResponsesPattern",
    "choices",
    "scale",
    "source",
    "target",
    "steps",
];
const INTERACTION_TYPES: &[&str] = &[
    "true-false",
    "choice",
    "fill-in",
    "long-fill-in",
    "matching",
    "performance",
    "sequencing",
    "likert",
    "numeric",
    "other",
];
const COMPONENT_LISTS: &[&str] = &["choices", "scale", "source", "target", "steps"];
const COMPONENT_KEYS: &[&str] = &["id", "description"];
const STATEMENT_REF_KEYS: &[&str] = &["objectType", "id"];
const RESULT_KEYS: &[&str] = &[
    "score",
    "success",
    "completion",
    "response",
    "duration",
    "extensions",
];
const SCORE_KEYS: &[&str] = &["scaled", "raw", "min", "max"];
const CONTEXT_KEYS_1: &[&str] = &[
    "registration",
    "instructor",
    "team",
    "contextActivities",
    "revision",
    "platform",
    "language",
    "statement",
    "extensions",
];
const CONTEXT_KEYS_2: &[&str] = &[
    "registration",
    "instructor",
    "team",
    "contextActivities",
    "contextAgents",
    "contextGroups",
    "revision",
    "platform",
    "language",
    "statement",
    "extensions",
];
const CONTEXT_ACTIVITY_KEYS: &[&str] = &["parent", "grouping", "category", "other"];
const CONTEXT_AGENT_KEYS: &[&str] = &["objectType", "agent", "relevantTypes"];
const CONTEXT_GROUP_KEYS: &[&str] = &["objectType", "group", "relevantTypes"];
const ATTACHMENT_KEYS: &[&str] = &[
    "usageType",
    "display",
    "description",
    "contentType",
    "length",
    "sha2",
    "fileUrl",
];

/// Checks one statement as sent (before nigrani completes it with `stored` and `authority`).
pub fn validate_statement(statement: &Value, version: Version) -> Checked {
    Walker { version }.statement(statement)
}

/// Checks an agent or a group, as the `agent` filter of a statement query names it.
pub fn validate_agent(agent: &Value, version: Version) -> Checked {
    Walker { version }.actor(agent, "agent", false)
}

/// Whether `text` is a UUID in its hyphenated form (any version; either case).
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// An xAPI timestamp (ISO 8601 as RFC 3339 profiles it), to UTC. The offset is required, and
/// `-00:00` ("offset unknown" in RFC 3339) is refused, as the specification asks.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if text.ends_with("-00:00") || text.ends_with("-0000") || text.ends_with("-00") {
        return None;
    }
    let (date, rest) = text.split_once(['T', 't'])?;
    if date.len() != 10 {
        return None;
    }
    // The time with at least hours and minutes, then an offset: `Z`, `±hh:mm`, `±hhmm` or `±hh`.
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(at) => rest.split_at(at),
        None => return None,
    };
    let offset = match offset {
        "Z" | "z" => "+00:00".to_owned(),
        o if o.len() == 6 && o.as_bytes()[3] == b':' => o.to_owned(),
        o if o.len() == 5 && o[1..].bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}:{}", &o[..3], &o[3..])
        }
        o if o.len() == 3 && o[1..].bytes().all(|b| b.is_ascii_digit()) => format!("{o}:00"),
        _ => return None,
    };
    let time = match time.len() {
        5 => format!("{time}:00"),
        _ => time.to_owned(),
    };
    DateTime::parse_from_rfc3339(&format!("{date}T{time}{offset}"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An ISO 8601 duration (`PnYnMnDTnHnMnS` or `PnW`), in seconds. A year counts 365 days and a
/// month 30; only the last component may have a fraction.
pub fn duration_seconds(text: &str) -> Option<f64> {
    let rest = text.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    if let Some(weeks) = rest.strip_suffix('W') {
        return number(weeks).map(|w| w * 7.0 * 86_400.0);
    }
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return None,
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut seconds = 0.0;
    let mut fraction_seen = false;
    let mut any = false;
    for (part, units) in [
        (
            date,
            &[
                ('Y', 365.0 * 86_400.0),
                ('M', 30.0 * 86_400.0),
                ('D', 86_400.0),
            ][..],
        ),
        (
            time.unwrap_or(""),
            &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)][..],
        ),
    ] {
        let mut rest = part;
        let mut next_unit = 0;
        while !rest.is_empty() {
            if fraction_seen {
                return None;
            }
            let at = rest.find(|c: char| c.is_ascii_alphabetic())?;
            let (digits, tail) = rest.split_at(at);
            let unit = tail.chars().next()?;
            let position = units[next_unit..].iter().position(|(u, _)| *u == unit)?;
            let (_, scale) = units[next_unit + position];
            next_unit += position + 1;
            let value = number(digits)?;
            fraction_seen = digits.contains(['.', ',']);
            seconds += value * scale;
            any = true;
            rest = &tail[1..];
        }
    }
    any.then_some(seconds)
}

/// A non-negative decimal number as ISO 8601 writes one (`.` or `,` before the fraction).
fn number(digits: &str) -> Option<f64> {
    let digits = digits.replace(',', ".");
    let well_formed = !digits.is_empty()
        && !digits.starts_with('.')
        && !digits.ends_with('.')
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.matches('.').count() <= 1;
    if well_formed {
        digits.parse().ok()
    } else {
        None
    }
}

/// Whether `text` is an IRI with a scheme (`scheme:rest`, no whitespace).
pub fn is_iri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `tag` is a well-formed language tag (RFC 5646, section 2.1).
pub fn is_language_tag(tag: &str) -> bool {
    const IRREGULAR: &[&str] = &[
        "en-gb-oed",
        "i-ami",
        "i-bnn",
        "i-default",
        "i-enochian",
        "i-hak",
        "i-klingon",
        "i-lux",
        "i-mingo",
        "i-navajo",
        "i-pwn",
        "i-tao",
        "i-tay",
        "i-tsu",
        "sgn-be-fr",
        "sgn-be-nl",
        "sgn-ch-de",
    ];
    if IRREGULAR.contains(&tag.to_ascii_lowercase().as_str()) {
        return true;
    }
    let subtags: Vec<&str> = tag.split('-').collect();
    if subtags
        .iter()
        .any(|s| s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return false;
    }
    let alpha = |s: &str| s.bytes().all(|b| b.is_ascii_alphabetic());
    let digit = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let private_use = |rest: &[&str]| !rest.is_empty();
    let mut rest: &[&str] = &subtags;
    if rest[0].eq_ignore_ascii_case("x") {
        return private_use(&rest[1..]);
    }
    // language: 2–3 letters with up to three extlang subtags, or 4–8 letters.
    let language = rest[0];
    if !alpha(language) || language.len() < 2 {
        return false;
    }
    rest = &rest[1..];
    if language.len() <= 3 {
        let mut extlangs = 0;
        while extlangs < 3 && rest.first().is_some_and(|s| s.len() == 3 && alpha(s)) {
            rest = &rest[1..];
            extlangs += 1;
        }
    }
    if rest.first().is_some_and(|s| s.len() == 4 && alpha(s)) {
        rest = &rest[1..];
    }
    if rest
        .first()
        .is_some_and(|s| (s.len() == 2 && alpha(s)) || (s.len() == 3 && digit(s)))
    {
        rest = &rest[1..];
    }
    let mut variants: Vec<String> = Vec::new();
    while let Some(s) = rest.first() {
        let variant =
            (5..=8).contains(&s.len()) || (s.len() == 4 && s.as_bytes()[0].is_ascii_digit());
        if !variant {
            break;
        }
        let lower = s.to_ascii_lowercase();
        if variants.contains(&lower) {
            return false;
        }
        variants.push(lower);
        rest = &rest[1..];
    }
    let mut singletons: Vec<String> = Vec::new();
    while let Some(s) = rest.first() {
        if s.len() != 1 || s.eq_ignore_ascii_case("x") {
            break;
        }
        let lower = s.to_ascii_lowercase();
        if singletons.contains(&lower) {
            return false;
        }
        singletons.push(lower);
        rest = &rest[1..];
        let body = rest.iter().take_while(|s| s.len() >= 2).count();
        if body == 0 {
            return false;
        }
        rest = &rest[body..];
    }
    match rest.first() {
        None => true,
        Some(s) if s.eq_ignore_ascii_case("x") => private_use(&rest[1..]),
        Some(_) => false,
    }
}

/// Walks a statement, carrying the version (whose rules differ in a few places).
struct Walker {
    version: Version,
}

fn invalid(path: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The value as an object whose keys are all among `allowed` (exactly so cased) and whose values
/// are not `null`.
fn object<'v>(
    value: &'v Value,
    path: &str,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>, Invalid> {
    let Value::Object(map) = value else {
        return Err(invalid(
            path,
            format!("must be an object, not {}", json_type(value)),
        ));
    };
    for (key, value) in map {
        if !allowed.contains(&key.as_str()) {
            let message = match allowed.iter().find(|a| a.eq_ignore_ascii_case(key)) {
                Some(right) => format!("`{key}` is wrongly cased: the property is `{right}`"),
                None => format!(
                    "`{key}` is not a property here (allowed: {})",
                    allowed.join(", ")
                ),
            };
            return Err(invalid(path, message));
        }
        if value.is_null() {
            return Err(invalid(&child(path, key), "must not be null"));
        }
    }
    Ok(map)
}

fn required<'v>(map: &'v Map<String, Value>, key: &str, path: &str) -> Result<&'v Value, Invalid> {
    map.get(key)
        .ok_or_else(|| invalid(path, format!("`{key}` is required")))
}

fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str, Invalid> {
    value
        .as_str()
        .ok_or_else(|| invalid(path, format!("must be a string, not {}", json_type(value))))
}

fn boolean(value: &Value, path: &str) -> Checked {
    match value {
        Value::Bool(_) => Ok(()),
        other => Err(invalid(
            path,
            format!("must be true or false, not {}", json_type(other)),
        )),
    }
}

fn iri(value: &Value, path: &str) -> Checked {
    let text = string(value, path)?;
    if is_iri(text) {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("`{text}` is not an IRI (it needs a scheme, such as `https:`)"),
        ))
    }
}

fn uuid(value: &Value, path: &str) -> Checked {
    let text = string(value, path)?;
    if is_uuid(text) {
        Ok(())
    } else {
        Err(invalid(path, format!("`{text}` is not a UUID")))
    }
}

fn timestamp(value: &Value, path: &str) -> Checked {
    let text = string(value, path)?;
    match parse_timestamp(text) {
        Some(_) => Ok(()),
        None => Err(invalid(
            path,
            format!(
                "`{text}` is not an ISO 8601 timestamp with an offset (such as 2026-03-01T09:30:00Z; -00:00 is refused)"
            ),
        )),
    }
}

fn language_map(value: &Value, path: &str) -> Checked {
    let Value::Object(map) = value else {
        return Err(invalid(
            path,
            format!(
                "must be a language map (an object), not {}",
                json_type(value)
            ),
        ));
    };
    for (tag, text) in map {
        if !is_language_tag(tag) {
            return Err(invalid(
                path,
                format!("`{tag}` is not a language tag (RFC 5646)"),
            ));
        }
        string(text, &child(path, tag))?;
    }
    Ok(())
}

fn extensions(value: &Value, path: &str) -> Checked {
    let Value::Object(map) = value else {
        return Err(invalid(
            path,
            format!("must be an object, not {}", json_type(value)),
        ));
    };
    for key in map.keys() {
        if !is_iri(key) {
            return Err(invalid(
                path,
                format!("the extension key `{key}` is not an IRI"),
            ));
        }
    }
    Ok(())
}

fn number_of(value: &Value, path: &str) -> Result<f64, Invalid> {
    value
        .as_f64()
        .ok_or_else(|| invalid(path, format!("must be a number, not {}", json_type(value))))
}

fn one_or_many(value: &Value) -> Vec<(Option<usize>, &Value)> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Some(i), v))
            .collect(),
        one => vec![(None, one)],
    }
}

fn array<'v>(value: &'v Value, path: &str) -> Result<&'v Vec<Value>, Invalid> {
    value
        .as_array()
        .ok_or_else(|| invalid(path, format!("must be an array, not {}", json_type(value))))
}

impl Walker {
    fn statement(&self, value: &Value) -> Checked {
        let map = object(value, "", STATEMENT_KEYS)?;
        if let Some(id) = map.get("id") {
            uuid(id, "id")?;
        }
        self.actor(required(map, "actor", "")?, "actor", false)?;
        let verb = required(map, "verb", "")?;
        self.verb(verb, "verb")?;
        let target = required(map, "object", "")?;
        self.object(target, "object", false)?;
        if verb.get("id").and_then(Value::as_str) == Some(VOIDED)
            && target.get("objectType").and_then(Value::as_str) != Some("StatementRef")
        {
            return Err(invalid(
                "object",
                "a voiding statement's object must be a StatementRef to the statement it voids",
            ));
        }
        if let Some(result) = map.get("result") {
            self.result(result, "result")?;
        }
        if let Some(context) = map.get("context") {
            self.context(context, "context", target)?;
        }
        if let Some(at) = map.get("timestamp") {
            timestamp(at, "timestamp")?;
        }
        if let Some(at) = map.get("stored") {
            timestamp(at, "stored")?;
        }
        if let Some(authority) = map.get("authority") {
            self.authority(authority, "authority")?;
        }
        if let Some(version) = map.get("version") {
            let text = string(version, "version")?;
            let known = match self.version {
                Version::V1_0_3 => text
                    .strip_prefix("1.0")
                    .is_some_and(|rest| rest.is_empty() || is_patch(rest)),
                Version::V2_0_0 => {
                    text == "2.0.0"
                        || text
                            .strip_prefix("1.0")
                            .is_some_and(|rest| rest.is_empty() || is_patch(rest))
                }
            };
            if !known {
                return Err(invalid(
                    "version",
                    format!("`{text}` is not an xAPI version this store takes"),
                ));
            }
        }
        if let Some(attachments) = map.get("attachments") {
            self.attachments(attachments, "attachments")?;
        }
        Ok(())
    }

    /// An agent or a group. `in_group` forbids a group (members are agents).
    fn actor(&self, value: &Value, path: &str, in_group: bool) -> Checked {
        let object_type = match value.get("objectType") {
            None => None,
            Some(t) => Some(string(t, &child(path, "objectType"))?),
        };
        match object_type {
            None | Some("Agent") => self.agent(value, path),
            Some("Group") if !in_group => self.group(value, path),
            Some("Group") => Err(invalid(
                path,
                "a group's members must be agents, not groups",
            )),
            Some(other) => Err(invalid(
                &child(path, "objectType"),
                format!("`{other}` is neither `Agent` nor `Group`"),
            )),
        }
    }

    fn agent(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, AGENT_KEYS)?;
        let count = self.identifiers(map, path)?;
        if count != 1 {
            return Err(invalid(
                path,
                format!(
                    "an agent needs exactly one identifier (mbox, mbox_sha1sum, openid or account), not {count}"
                ),
            ));
        }
        if let Some(name) = map.get("name") {
            string(name, &child(path, "name"))?;
        }
        Ok(())
    }

    fn group(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, GROUP_KEYS)?;
        let count = self.identifiers(map, path)?;
        if count > 1 {
            return Err(invalid(
                path,
                format!("a group has at most one identifier, not {count}"),
            ));
        }
        if let Some(name) = map.get("name") {
            string(name, &child(path, "name"))?;
        }
        match map.get("member") {
            Some(members) => {
                let members = array(members, &child(path, "member"))?;
                if count == 0 && members.is_empty() {
                    return Err(invalid(path, "an anonymous group must list its members"));
                }
                for (i, member) in members.iter().enumerate() {
                    self.actor(member, &item(&child(path, "member"), i), true)?;
                }
                Ok(())
            }
            None if count == 0 => Err(invalid(path, "an anonymous group must list its members")),
            None => Ok(()),
        }
    }

    /// Checks the inverse functional identifiers present and counts them.
    fn identifiers(&self, map: &Map<String, Value>, path: &str) -> Result<usize, Invalid> {
        let mut count = 0;
        for key in IDENTIFIERS {
            let Some(value) = map.get(*key) else { continue };
            count += 1;
            let at = child(path, key);
            match *key {
                "mbox" => {
                    let text = string(value, &at)?;
                    let address = text
                        .strip_prefix("mailto:")
                        .ok_or_else(|| invalid(&at, format!("`{text}` must be a mailto: IRI")))?;
                    let well_formed = address
                        .split_once('@')
                        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
                        && !address.chars().any(char::is_whitespace);
                    if !well_formed {
                        return Err(invalid(&at, format!("`{text}` is not a mail address")));
                    }
                }
                "mbox_sha1sum" => {
                    let text = string(value, &at)?;
                    if text.len() != 40 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(invalid(
                            &at,
                            "must be the SHA-1 of a mailto: IRI, in 40 hex digits",
                        ));
                    }
                }
                "openid" => iri(value, &at)?,
                _ => {
                    let account = object(value, &at, ACCOUNT_KEYS)?;
                    iri(required(account, "homePage", &at)?, &child(&at, "homePage"))?;
                    string(required(account, "name", &at)?, &child(&at, "name"))?;
                }
            }
        }
        Ok(count)
    }

    fn verb(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, VERB_KEYS)?;
        iri(required(map, "id", path)?, &child(path, "id"))?;
        if let Some(display) = map.get("display") {
            language_map(display, &child(path, "display"))?;
        }
        Ok(())
    }

    /// A statement's object: an activity, an agent or group, a statement reference, or (not
    /// inside another) a sub-statement.
    fn object(&self, value: &Value, path: &str, in_sub_statement: bool) -> Checked {
        let object_type = match value.get("objectType") {
            None => "Activity",
            Some(t) => string(t, &child(path, "objectType"))?,
        };
        match object_type {
            "Activity" => self.activity(value, path),
            "Agent" | "Group" => self.actor(value, path, false),
            "StatementRef" => self.statement_ref(value, path),
            "SubStatement" if in_sub_statement => Err(invalid(
                path,
                "a sub-statement's object must not be another sub-statement",
            )),
            "SubStatement" => self.sub_statement(value, path),
            other => Err(invalid(
                &child(path, "objectType"),
                format!("`{other}` is not Activity, Agent, Group, StatementRef or SubStatement"),
            )),
        }
    }

    fn activity(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, ACTIVITY_KEYS)?;
        iri(required(map, "id", path)?, &child(path, "id"))?;
        if let Some(definition) = map.get("definition") {
            self.definition(definition, &child(path, "definition"))?;
        }
        Ok(())
    }

    fn definition(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, DEFINITION_KEYS)?;
        for key in ["name", "description"] {
            if let Some(text) = map.get(key) {
                language_map(text, &child(path, key))?;
            }
        }
        for key in ["type", "moreInfo"] {
            if let Some(link) = map.get(key) {
                iri(link, &child(path, key))?;
            }
        }
        if let Some(ext) = map.get("extensions") {
            extensions(ext, &child(path, "extensions"))?;
        }
        let interaction = match map.get("interactionType") {
            None => None,
            Some(t) => {
                let text = string(t, &child(path, "interactionType"))?;
                if !INTERACTION_TYPES.contains(&text) {
                    return Err(invalid(
                        &child(path, "interactionType"),
                        format!(
                            "`{text}` is not an interaction type ({})",
                            INTERACTION_TYPES.join(", ")
                        ),
                    ));
                }
                Some(text)
            }
        };
        if let Some(pattern) = map.get("correctResponsesPattern") {
            let at = child(path, "correctResponsesPattern");
            for (i, response) in array(pattern, &at)?.iter().enumerate() {
                string(response, &item(&at, i))?;
            }
        }
        for list in COMPONENT_LISTS {
            let Some(components) = map.get(*list) else {
                continue;
            };
            let at = child(path, list);
            if interaction.is_none() {
                return Err(invalid(
                    &at,
                    "interaction components need an `interactionType`",
                ));
            }
            let mut ids: Vec<&str> = Vec::new();
            for (i, component) in array(components, &at)?.iter().enumerate() {
                let here = item(&at, i);
                let component = object(component, &here, COMPONENT_KEYS)?;
                let id = string(required(component, "id", &here)?, &child(&here, "id"))?;
                if ids.contains(&id) {
                    return Err(invalid(
                        &here,
                        format!("the component id `{id}` is used twice"),
                    ));
                }
                ids.push(id);
                if let Some(description) = component.get("description") {
                    language_map(description, &child(&here, "description"))?;
                }
            }
        }
        Ok(())
    }

    fn statement_ref(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, STATEMENT_REF_KEYS)?;
        if map.get("objectType").and_then(Value::as_str) != Some("StatementRef") {
            return Err(invalid(path, "`objectType` must be `StatementRef`"));
        }
        uuid(required(map, "id", path)?, &child(path, "id"))
    }

    fn sub_statement(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, SUB_STATEMENT_KEYS)?;
        self.actor(required(map, "actor", path)?, &child(path, "actor"), false)?;
        self.verb(required(map, "verb", path)?, &child(path, "verb"))?;
        let target = required(map, "object", path)?;
        self.object(target, &child(path, "object"), true)?;
        if let Some(result) = map.get("result") {
            self.result(result, &child(path, "result"))?;
        }
        if let Some(context) = map.get("context") {
            self.context(context, &child(path, "context"), target)?;
        }
        if let Some(at) = map.get("timestamp") {
            timestamp(at, &child(path, "timestamp"))?;
        }
        if let Some(attachments) = map.get("attachments") {
            self.attachments(attachments, &child(path, "attachments"))?;
        }
        Ok(())
    }

    fn result(&self, value: &Value, path: &str) -> Checked {
        let map = object(value, path, RESULT_KEYS)?;
        if let Some(score) = map.get("score") {
            score_of(score, &child(path, "score"))?;
        }
        for key in ["success", "completion"] {
            if let Some(flag) = map.get(key) {
                boolean(flag, &child(path, key))?;
            }
        }
        if let Some(response) = map.get("response") {
            string(response, &child(path, "response"))?;
        }
        if let Some(duration) = map.get("duration") {
            let at = child(path, "duration");
            let text = string(duration, &at)?;
            if duration_seconds(text).is_none() {
                return Err(invalid(
                    &at,
                    format!("`{text}` is not an ISO 8601 duration (such as PT1H30M)"),
                ));
            }
        }
        if let Some(ext) = map.get("extensions") {
            extensions(ext, &child(path, "extensions"))?;
        }
        Ok(())
    }

    fn context(&self, value: &Value, path: &str, target: &Value) -> Checked {
        let keys = match self.version {
            Version::V1_0_3 => CONTEXT_KEYS_1,
            Version::V2_0_0 => CONTEXT_KEYS_2,
        };
        let map = object(value, path, keys)?;
        if let Some(registration) = map.get("registration") {
            uuid(registration, &child(path, "registration"))?;
        }
        if let Some(instructor) = map.get("instructor") {
            self.actor(instructor, &child(path, "instructor"), false)?;
        }
        if let Some(team) = map.get("team") {
            self.declared_group(team, &child(path, "team"))?;
        }
        if let Some(activities) = map.get("contextActivities") {
            let at = child(path, "contextActivities");
            let lists = object(activities, &at, CONTEXT_ACTIVITY_KEYS)?;
            for (key, list) in lists {
                let here = child(&at, key);
                for (index, activity) in one_or_many(list) {
                    let place = index.map_or_else(|| here.clone(), |i| item(&here, i));
                    if activity.get("objectType").is_some_and(|t| t != "Activity") {
                        return Err(invalid(&place, "a context activity must be an activity"));
                    }
                    self.activity(activity, &place)?;
                }
            }
        }
        if let Some(agents) = map.get("contextAgents") {
            let at = child(path, "contextAgents");
            self.context_entries(agents, &at, CONTEXT_AGENT_KEYS, "agent", Self::agent)?;
        }
        if let Some(groups) = map.get("contextGroups") {
            let at = child(path, "contextGroups");
            self.context_entries(
                groups,
                &at,
                CONTEXT_GROUP_KEYS,
                "group",
                Self::declared_group,
            )?;
        }
        let object_is_activity = target
            .get("objectType")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "Activity");
        for key in ["revision", "platform"] {
            if let Some(text) = map.get(key) {
                string(text, &child(path, key))?;
                if !object_is_activity {
                    return Err(invalid(
                        &child(path, key),
                        "is allowed only when the statement's object is an activity",
                    ));
                }
            }
        }
        if let Some(language) = map.get("language") {
            let at = child(path, "language");
            let tag = string(language, &at)?;
            if !is_language_tag(tag) {
                return Err(invalid(
                    &at,
                    format!("`{tag}` is not a language tag (RFC 5646)"),
                ));
            }
        }
        if let Some(statement) = map.get("statement") {
            self.statement_ref(statement, &child(path, "statement"))?;
        }
        if let Some(ext) = map.get("extensions") {
            extensions(ext, &child(path, "extensions"))?;
        }
        Ok(())
    }

    /// A group that says it is one (`objectType` `Group`), as a team or a context group must.
    fn declared_group(&self, value: &Value, path: &str) -> Checked {
        if value.get("objectType").and_then(Value::as_str) != Some("Group") {
            return Err(invalid(path, "must be a group (`objectType`: `Group`)"));
        }
        self.group(value, path)
    }

    /// 2.0's `contextAgents` or `contextGroups`: an array of entries with `objectType`
    /// `context<Member>` (`contextAgent`, `contextGroup`), the member under `member`, and
    /// optional `relevantTypes`.
    fn context_entries(
        &self,
        entries: &Value,
        path: &str,
        keys: &[&str],
        member: &str,
        check_member: fn(&Self, &Value, &str) -> Checked,
    ) -> Checked {
        let object_type = match member {
            "agent" => "contextAgent",
            _ => "contextGroup",
        };
        for (i, entry) in array(entries, path)?.iter().enumerate() {
            let here = item(path, i);
            let entry = object(entry, &here, keys)?;
            if required(entry, "objectType", &here)? != object_type {
                return Err(invalid(
                    &here,
                    format!("`objectType` must be `{object_type}`"),
                ));
            }
            check_member(self, required(entry, member, &here)?, &child(&here, member))?;
            self.relevant_types(entry, &here)?;
        }
        Ok(())
    }

    fn relevant_types(&self, entry: &Map<String, Value>, path: &str) -> Checked {
        let Some(types) = entry.get("relevantTypes") else {
            return Ok(());
        };
        let at = child(path, "relevantTypes");
        let types = array(types, &at)?;
        if types.is_empty() {
            return Err(invalid(&at, "must name at least one type"));
        }
        for (i, t) in types.iter().enumerate() {
            iri(t, &item(&at, i))?;
        }
        Ok(())
    }

    fn authority(&self, value: &Value, path: &str) -> Checked {
        self.actor(value, path, false)?;
        if value.get("objectType").and_then(Value::as_str) == Some("Group") {
            let members = value
                .get("member")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if members != 2 {
                return Err(invalid(
                    path,
                    "a group as authority must have exactly two members (an OAuth consumer and a user)",
                ));
            }
        }
        Ok(())
    }

    fn attachments(&self, value: &Value, path: &str) -> Checked {
        for (i, attachment) in array(value, path)?.iter().enumerate() {
            let here = item(path, i);
            let map = object(attachment, &here, ATTACHMENT_KEYS)?;
            iri(
                required(map, "usageType", &here)?,
                &child(&here, "usageType"),
            )?;
            language_map(required(map, "display", &here)?, &child(&here, "display"))?;
            if let Some(description) = map.get("description") {
                language_map(description, &child(&here, "description"))?;
            }
            string(
                required(map, "contentType", &here)?,
                &child(&here, "contentType"),
            )?;
            let length = required(map, "length", &here)?;
            if length.as_u64().is_none() {
                return Err(invalid(
                    &child(&here, "length"),
                    "must be a whole number of octets",
                ));
            }
            string(required(map, "sha2", &here)?, &child(&here, "sha2"))?;
            if let Some(url) = map.get("fileUrl") {
                iri(url, &child(&here, "fileUrl"))?;
            }
        }
        Ok(())
    }
}

fn is_patch(rest: &str) -> bool {
    rest.strip_prefix('.')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn score_of(value: &Value, path: &str) -> Checked {
    let map = object(value, path, SCORE_KEYS)?;
    let get = |key: &str| -> Result<Option<f64>, Invalid> {
        map.get(key)
            .map(|v| number_of(v, &child(path, key)))
            .transpose()
    };
    let (scaled, raw, min, max) = (get("scaled")?, get("raw")?, get("min")?, get("max")?);
    if let Some(scaled) = scaled
        && !(-1.0..=1.0).contains(&scaled)
    {
        return Err(invalid(
            &child(path, "scaled"),
            format!("{scaled} is outside -1..1"),
        ));
    }
    if let (Some(min), Some(max)) = (min, max)
        && min >= max
    {
        return Err(invalid(
            path,
            format!("`min` ({min}) must be less than `max` ({max})"),
        ));
    }
    if let Some(raw) = raw
        && (min.is_some_and(|min| raw < min) || max.is_some_and(|max| raw > max))
    {
        return Err(invalid(
            &child(path, "raw"),
            format!("{raw} is outside min..max"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statement() -> Value {
        json!({
            "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0",
            "actor": {"objectType": "Agent", "account": {"homePage": "https://www.coursera.org", "name": "f-1001"}},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/completed", "display": {"en-US": "completed"}},
            "object": {"id": "https://www.coursera.org/learn/ai-for-everyone", "definition": {"name": {"en": "AI For Everyone"}}},
            "result": {"score": {"scaled": 0.9, "raw": 90, "min": 0, "max": 100}, "completion": true, "duration": "PT1H30M"},
            "context": {"registration": "6690d0e6-7d6a-4c3a-b5a7-2f0d3f5d1e11", "contextActivities": {"grouping": [{"id": "https://nigrani.example/tracks/soft"}]}},
            "timestamp": "2026-03-01T09:30:00+05:00"
        })
    }

    fn check(value: Value) -> Checked {
        validate_statement(&value, Version::V1_0_3)
    }

    fn with(pointer: &str, value: Value) -> Value {
        let mut s = statement();
        *s.pointer_mut(pointer).unwrap() = value;
        s
    }

    #[test]
    fn a_complete_statement_passes() {
        check(statement()).unwrap();
        validate_statement(&statement(), Version::V2_0_0).unwrap();
    }

    #[test]
    fn structure_is_exact() {
        let mut s = statement();
        s.as_object_mut().unwrap().remove("verb");
        assert!(check(s).unwrap_err().message.contains("`verb` is required"));
        let mut s = statement();
        s["Actor"] = s["actor"].clone();
        assert!(check(s).unwrap_err().message.contains("wrongly cased"));
        let mut s = statement();
        s["result"]["response"] = Value::Null;
        assert_eq!(check(s).unwrap_err().path, "result.response");
        let mut s = statement();
        s["result"]["extensions"] = json!({"https://x.example/e": null});
        check(s).unwrap();
    }

    #[test]
    fn agents_have_one_identifier() {
        let two = json!({"mbox": "mailto:a@b.pk", "openid": "https://id.example/a"});
        assert!(check(with("/actor", two)).is_err());
        assert!(check(with("/actor", json!({"name": "nobody"}))).is_err());
        assert!(check(with("/actor", json!({"mbox": "a@b.pk"}))).is_err());
        check(with(
            "/actor",
            json!({"mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"}),
        ))
        .unwrap();
        let group = json!({"objectType": "Group", "member": [{"mbox": "mailto:a@b.pk"}]});
        check(with("/actor", group)).unwrap();
        assert!(check(with("/actor", json!({"objectType": "Group"}))).is_err());
    }

    #[test]
    fn formats_are_checked() {
        assert!(check(with("/id", json!("not-a-uuid"))).is_err());
        assert!(check(with("/verb/id", json!("completed"))).is_err());
        assert!(check(with("/timestamp", json!("2026-03-01T09:30:00-00:00"))).is_err());
        assert!(check(with("/timestamp", json!("2026-03-01T09:30:00"))).is_err());
        assert!(check(with("/result/duration", json!("1h"))).is_err());
        assert!(check(with("/verb/display", json!({"not a tag": "x"}))).is_err());
        assert!(check(with("/result/score/scaled", json!(1.5))).is_err());
        assert!(check(with("/result/score/raw", json!(101))).is_err());
        assert!(check(with("/result/score/min", json!(100))).is_err());
    }

    #[test]
    fn voiding_needs_a_statement_ref() {
        let s = with("/verb", json!({"id": VOIDED}));
        assert!(check(s.clone()).is_err());
        let mut s = s;
        s["object"] =
            json!({"objectType": "StatementRef", "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa1"});
        s.as_object_mut().unwrap().remove("context");
        check(s).unwrap();
    }

    #[test]
    fn context_agents_are_a_2_0_property() {
        let mut s = statement();
        s["context"]["contextAgents"] =
            json!([{"objectType": "contextAgent", "agent": {"mbox": "mailto:t@u.pk"}}]);
        assert!(validate_statement(&s, Version::V1_0_3).is_err());
        validate_statement(&s, Version::V2_0_0).unwrap();
    }

    #[test]
    fn timestamps_and_durations() {
        assert!(parse_timestamp("2026-03-01T09:30:00.123Z").is_some());
        assert!(parse_timestamp("2026-03-01T09:30:00+0500").is_some());
        assert!(parse_timestamp("2026-03-01T09:30Z").is_some());
        assert!(parse_timestamp("2026-03-01").is_none());
        assert!(parse_timestamp("2026-13-01T09:30:00Z").is_none());
        assert_eq!(duration_seconds("PT1H30M"), Some(5400.0));
        assert_eq!(duration_seconds("P1W"), Some(604_800.0));
        assert_eq!(duration_seconds("PT0.5S"), Some(0.5));
        assert!(duration_seconds("P").is_none());
        assert!(duration_seconds("PT").is_none());
        assert!(duration_seconds("PT1.5H30M").is_none());
        assert!(duration_seconds("PT30M1H").is_none());
    }

    #[test]
    fn language_tags() {
        for tag in [
            "en",
            "en-US",
            "zh-Hant-TW",
            "ur-PK",
            "x-private",
            "sgn-BE-FR",
            "de-CH-1996",
            "en-a-bbb-x-a-ccc",
        ] {
            assert!(is_language_tag(tag), "{tag}");
        }
        for tag in [
            "",
            "e",
            "en-",
            "en--US",
            "123",
            "en-a",
            "de-1996-1996",
            "toolongtag1",
        ] {
            assert!(!is_language_tag(tag), "{tag}");
        }
    }
}
