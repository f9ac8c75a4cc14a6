//! Reference data (institutions, disciplines, track plans, cohorts) and the roster of learners.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Gender, Province, Role, Sector, Track};

/// An HEC-recognised university or degree-awarding institution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Institution {
    /// Stable code of the institution, e.g. `PK-PB-001`.
    pub hec_id: String,
    /// Official English name.
    pub name: String,
    /// Name in Urdu script.
    pub name_ur: String,
    /// Province or territory of the main campus.
    pub province: Province,
    /// City of the main campus.
    pub city: String,
    /// Public or private charter.
    pub sector: Sector,
}

/// An academic discipline a learner teaches or studies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discipline {
    /// Stable code, e.g. `computer_science`.
    pub code: String,
    /// English name.
    pub name: String,
    /// Urdu name.
    pub name_ur: String,
    /// Whether the discipline is STEM (the hard track's audience) or not (the soft track's).
    pub stem: bool,
}

/// What a track requires and what it aims for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackPlan {
    /// The track.
    pub track: Track,
    /// Course ids a learner must complete to count as `completed`, in suggested order.
    pub required_courses: Vec<String>,
    /// The program's target: learners trained (soft) or certified (hard).
    pub target: u32,
    /// A stretch target above `target`, where the program set one.
    pub stretch_target: Option<u32>,
}

/// A group of learners of one track that runs between two dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cohort {
    /// Stable id, e.g. `soft-2026-c1`.
    pub cohort_id: String,
    /// English name.
    pub name: String,
    /// Urdu name.
    pub name_ur: String,
    /// The track all members follow.
    pub track: Track,
    /// First day of the cohort.
    pub starts_on: NaiveDate,
    /// Last day of the cohort.
    pub ends_on: NaiveDate,
    /// Learners this cohort should train (soft) or certify (hard).
    pub target: u32,
}

/// A learner on the roster. The id is pseudonymous: names and plain e-mail addresses are never
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learner {
    /// Pseudonymous id assigned by the program, e.g. `L000042`.
    pub learner_id: String,
    /// The ids course platforms know this learner by.
    pub identities: Vec<LearnerRef>,
    /// `hec_id` of the learner's institution.
    pub institution: String,
    /// Discipline code.
    pub discipline: String,
    /// The track the learner follows.
    pub track: Track,
    /// The cohort the learner belongs to.
    pub cohort: String,
    /// Faculty or student.
    pub role: Role,
    /// Optional self-reported gender.
    pub gender: Option<Gender>,
}

/// How a platform names a learner: `platform:external_id`, e.g. `coursera:8f3a…`, or
/// `email:<sha256 hex>` for a hashed e-mail address.
///
/// A plain e-mail address given as `email:someone@uni.edu.pk` is hashed on arrival (trimmed and
/// lower-cased first), so the address itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LearnerRef(String);

/// Why a learner reference was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LearnerRefError {
    #[error("learner reference `{0}` must have the form `platform:id`")]
    MissingPlatform(String),
    #[error(
        "platform name `{0}` must be 1-32 characters of lower-case letters, digits, `_` or `-`"
    )]
    BadPlatform(String),
    #[error("learner id must be 1-200 characters without surrounding spaces or control characters")]
    BadId,
    #[error("`email_sha256` must be 64 hexadecimal characters")]
    BadEmailHash,
}

/// The platform name under which hashed e-mail addresses are kept.
pub const EMAIL_PLATFORM: &str = "email";

impl LearnerRef {
    /// A learner as a platform names them.
    pub fn on_platform(platform: &str, id: &str) -> Result<Self, LearnerRefError> {
        let platform_ok = !platform.is_empty()
            && platform.len() <= 32
            && platform
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !platform_ok {
            return Err(LearnerRefError::BadPlatform(platform.to_owned()));
        }
        if platform == EMAIL_PLATFORM {
            return if id.contains('@') {
                Ok(Self::from_email(id))
            } else {
                Self::from_email_sha256(id)
            };
        }
        let id_ok = !id.is_empty()
            && id.len() <= 200
            && id.trim() == id
            && !id.chars().any(char::is_control);
        if !id_ok {
            return Err(LearnerRefError::BadId);
        }
        Ok(Self(format!("{platform}:{id}")))
    }

    /// A learner known by e-mail address; the address is normalised and hashed.
    pub fn from_email(email: &str) -> Self {
        let normalised = email.trim().to_lowercase();
        let digest = Sha256::digest(normalised.as_bytes());
        Self(format!("{EMAIL_PLATFORM}:{}", hex(&digest)))
    }

    /// A learner known by an e-mail address the sender already hashed (SHA-256 of the trimmed,
    /// lower-cased address, in hex).
    pub fn from_email_sha256(hash: &str) -> Result<Self, LearnerRefError> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LearnerRefError::BadEmailHash);
        }
        Ok(Self(format!(
            "{EMAIL_PLATFORM}:{}",
            hash.to_ascii_lowercase()
        )))
    }

    /// Parses the `platform:id` form.
    pub fn parse(value: &str) -> Result<Self, LearnerRefError> {
        let (platform, id) = value
            .split_once(':')
            .ok_or_else(|| LearnerRefError::MissingPlatform(value.to_owned()))?;
        Self::on_platform(platform, id)
    }

    /// The canonical `platform:id` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LearnerRef {
    type Error = LearnerRefError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<LearnerRef> for String {
    fn from(value: LearnerRef) -> Self {
        value.0
    }
}

impl std::fmt::Display for LearnerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of some bytes, in lower-case hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hexadecimal of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Checks that an id used as a key (institution, discipline, cohort, learner, course) is usable:
/// 1-100 characters of letters, digits, `-`, `_`, `.`.
pub fn is_valid_key(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 100
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_email_is_hashed_and_normalised() {
        let a = LearnerRef::parse("email: Someone@UNI.edu.pk").unwrap();
        let b = LearnerRef::from_email("someone@uni.edu.pk");
        assert_eq!(a, b);
        assert!(!a.as_str().contains('@'));
        assert_eq!(a.as_str().len(), "email:".len() + 64);
    }

    #[test]
    fn platform_ids_keep_their_case_and_reject_bad_forms() {
        assert_eq!(
            LearnerRef::parse("coursera:AbC-1").unwrap().as_str(),
            "coursera:AbC-1"
        );
        assert!(matches!(
            LearnerRef::parse("nocolon"),
            Err(LearnerRefError::MissingPlatform(_))
        ));
        assert!(matches!(
            LearnerRef::parse("Coursera:x"),
            Err(LearnerRefError::BadPlatform(_))
        ));
        assert_eq!(
            LearnerRef::parse("coursera: x"),
            Err(LearnerRefError::BadId)
        );
        assert_eq!(
            LearnerRef::parse("email:abc"),
            Err(LearnerRefError::BadEmailHash)
        );
    }

    #[test]
    fn keys_are_restricted_to_safe_characters() {
        assert!(is_valid_key("PK-PB-001"));
        assert!(is_valid_key("soft-2026.c1_a"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("a b"));
        assert!(!is_valid_key(&"x".repeat(101)));
    }
}
