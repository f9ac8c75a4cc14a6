//! The API's one error contract: every error is JSON `{code, message, details}` with a stable,
//! machine-readable `code`. Storage and ingest errors map into it here and nowhere else; 5xx bodies
//! say nothing internal — the cause goes to the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use nigrani_ingest::IngestError;
use nigrani_ingest::native::BodyError;
use nigrani_ingest::roster::RosterError;
use nigrani_store::StoreError;
use serde::Serialize;
use serde_json::Value;

/// Every error code the API answers with, its status and what it means.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_query",
        400,
        "A query parameter is unknown or has a bad value.",
    ),
    ("malformed_json", 400, "The body is not valid JSON."),
    (
        "malformed_csv",
        400,
        "The CSV is malformed (e.g. a row with too few fields).",
    ),
    ("invalid_body", 400, "The body is JSON of the wrong shape."),
    ("empty_batch", 400, "The body holds no events or rows."),
    ("invalid_utf8", 400, "The body is not valid UTF-8."),
    (
        "csv_missing_columns",
        400,
        "The CSV header lacks required columns.",
    ),
    (
        "csv_unknown_columns",
        400,
        "The CSV header has columns this kind does not take.",
    ),
    ("missing_key", 401, "No API key was sent."),
    (
        "invalid_key",
        401,
        "The API key is malformed, unknown or revoked.",
    ),
    ("forbidden", 403, "The API key's role may not do this."),
    ("not_found", 404, "No such route or resource."),
    (
        "method_not_allowed",
        405,
        "The route does not take this method.",
    ),
    (
        "payload_too_large",
        413,
        "The body is larger than the configured limit.",
    ),
    (
        "batch_too_large",
        413,
        "The batch holds more events than the configured limit.",
    ),
    (
        "unsupported_media_type",
        415,
        "The Content-Type is missing or not one the route takes.",
    ),
    (
        "rate_limited",
        429,
        "Too many requests for this key; `Retry-After` says when to retry.",
    ),
    (
        "invalid_rows",
        422,
        "Rows of a roster file are invalid; `details` lists them by line.",
    ),
    (
        "invalid_data",
        422,
        "The database refused the data (a broken reference).",
    ),
    (
        "internal_error",
        500,
        "A fault on nigrani's side; the log has the cause.",
    ),
    (
        "store_unavailable",
        503,
        "The database cannot be reached; nothing was stored. Retry later.",
    ),
];

/// An error answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// Stable machine-readable code, one of [`CODES`].
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// More about the error, e.g. the invalid rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Seconds to wait, sent as `Retry-After`.
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a code from [`CODES`]; its status comes from the table.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        let status = CODES
            .iter()
            .find(|(c, _, _)| *c == code)
            .and_then(|(_, status, _)| StatusCode::from_u16(*status).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "Request failed on nigrani's side.");
        Self::new(
            "internal_error",
            "nigrani could not complete the request; the cause is in its log",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(self)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "The database is unavailable.");
                ApiError::new(
                    "store_unavailable",
                    "the database cannot be reached; nothing was stored, retry later",
                )
            }
            StoreError::Invalid(message) => ApiError::new("invalid_data", message),
            other @ (StoreError::Internal(_) | StoreError::Migration { .. }) => {
                ApiError::internal(&other)
            }
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Empty => ApiError::new("empty_batch", e.to_string()),
            IngestError::TooManyEvents { .. } => ApiError::new("batch_too_large", e.to_string()),
            IngestError::Body(BodyError::MalformedJson(_)) => ApiError::new(
                "malformed_json",
                format!("{e}; the body was kept as a rejection"),
            ),
            IngestError::Body(BodyError::NotAnArray(_)) => ApiError::new(
                "invalid_body",
                format!("{e}; the body was kept as a rejection"),
            ),
            IngestError::Store(e) => e.into(),
        }
    }
}

impl From<RosterError> for ApiError {
    fn from(e: RosterError) -> Self {
        let message = e.to_string();
        match e {
            RosterError::Store(e) => e.into(),
            RosterError::InvalidRows(problems) => ApiError::new("invalid_rows", message)
                .with_details(serde_json::json!({ "problems": problems })),
            RosterError::MissingColumns(columns) => ApiError::new("csv_missing_columns", message)
                .with_details(serde_json::json!({ "columns": columns })),
            RosterError::UnknownColumns(columns) => ApiError::new("csv_unknown_columns", message)
                .with_details(serde_json::json!({ "columns": columns })),
            RosterError::InvalidUtf8(line) => ApiError::new("invalid_utf8", message)
                .with_details(serde_json::json!({ "line": line })),
            RosterError::Empty => ApiError::new("empty_batch", message),
            RosterError::MalformedCsv(_) => ApiError::new("malformed_csv", message),
            RosterError::MalformedJson(_) => ApiError::new("malformed_json", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_entry_and_a_status() {
        let mut codes: Vec<_> = CODES.iter().map(|(c, _, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len());
        for (code, status, _) in CODES {
            assert_eq!(ApiError::new(code, "x").status_code().as_u16(), *status);
        }
    }

    #[test]
    fn internal_errors_say_nothing_internal() {
        let e: ApiError = StoreError::Internal("relation \"events\" does not exist".into()).into();
        assert_eq!(e.code, "internal_error");
        assert!(!e.message.contains("relation"));
    }
}
