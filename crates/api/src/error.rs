//! The API's one error contract: every error is JSON `{code, message, details}` with a stable,
//! machine-readable `code`. Storage, ingest and analytics errors map into it here and nowhere else; 5xx bodies
//! say nothing internal — the cause goes to the log. [`ErrorBody`] and [`ErrorResponses`] describe
//! the contract in the OpenAPI document.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use nigrani_analytics::AnalyticsError;
use nigrani_ingest::IngestError;
use nigrani_ingest::native::BodyError;
use nigrani_ingest::roster::RosterError;
use nigrani_store::StoreError;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::response::{Response, ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

/// Declares [`ErrorCode`]: each variant with its wire name, HTTP status and meaning. The matches
/// are generated, so every code has all three and a typo is a compile error, not a 500.
macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:literal, $meaning:literal),)*) => {
        /// Every error code the API answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable, machine-readable name.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// What it means, for the OpenAPI document.
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)* }
            }
        }
    };
}

error_codes! {
    InvalidQuery = ("invalid_query", 400, "A query parameter is unknown or has a bad value."),
    MalformedJson = ("malformed_json", 400, "The body is not valid JSON."),
    MalformedCsv = ("malformed_csv", 400, "The CSV is malformed (e.g. a row with too few fields)."),
    InvalidBody = ("invalid_body", 400, "The body is JSON of the wrong shape."),
    EmptyBatch = ("empty_batch", 400, "The body holds no events or rows."),
    InvalidUtf8 = ("invalid_utf8", 400, "The body is not valid UTF-8."),
    CsvMissingColumns = ("csv_missing_columns", 400, "The CSV header lacks required columns."),
    CsvUnknownColumns = ("csv_unknown_columns", 400, "The CSV header has columns this kind does not take."),
    MissingKey = ("missing_key", 401, "No API key was sent."),
    InvalidKey = ("invalid_key", 401, "The API key is malformed, unknown or revoked."),
    Forbidden = ("forbidden", 403, "The API key's role may not do this."),
    NotFound = ("not_found", 404, "No such route or resource."),
    MethodNotAllowed = ("method_not_allowed", 405, "The route does not take this method."),
    BodyTimeout = ("body_timeout", 408, "The body arrived too slowly (below the minimum rate, or stalled); send it again."),
    PayloadTooLarge = ("payload_too_large", 413, "The body is larger than the configured limit."),
    BatchTooLarge = ("batch_too_large", 413, "The batch holds more events than the configured limit."),
    UnsupportedMediaType = ("unsupported_media_type", 415, "The Content-Type is missing or not one the route takes."),
    RateLimited = ("rate_limited", 429, "Too many requests for this key, or failed authentications from this address; `Retry-After` says when to retry."),
    InvalidRows = ("invalid_rows", 422, "Rows of a roster file are invalid; `details` lists them by line."),
    InvalidData = ("invalid_data", 422, "The database refused the data (a broken reference, or text it cannot hold)."),
    XapiVersion = ("xapi_version", 400, "The `X-Experience-API-Version` header is missing or names an xAPI version nigrani does not speak (1.0.x, 2.0.0)."),
    InvalidStatement = ("invalid_statement", 400, "An xAPI statement of the batch breaks a rule of the specification, or two share an id; nothing of the batch was stored."),
    StatementConflict = ("statement_conflict", 409, "An xAPI statement id was stored before with other content; nothing of the batch was stored."),
    UnsupportedVersion = ("unsupported_version", 422, "The Caliper envelope's `dataVersion` is not Caliper 1.1."),
    InternalError = ("internal_error", 500, "A fault on nigrani's side; the log has the cause."),
    NotImplemented = ("not_implemented", 501, "The HTTP method is not one nigrani knows."),
    NotProvided = ("not_provided", 501, "nigrani does not provide this resource (the xAPI document resources)."),
    StoreUnavailable = ("store_unavailable", 503, "The database cannot be reached; nothing was stored. `Retry-After` says when to retry."),
    OutcomeUnknown = ("outcome_unknown", 503, "The database connection failed while the batch was committed: it may or may not be stored. Resend it after `Retry-After`; resending is safe, stored events answer `duplicate`."),
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// Stable machine-readable code.
    pub code: ErrorCode,
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
    /// An error with a code; its status comes from the table.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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

    fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %chain(cause), "Request failed on nigrani's side.");
        Self::new(
            ErrorCode::InternalError,
            "nigrani could not complete the request; the cause is in its log",
        )
    }
}

/// An error and its sources, each once: `outer: inner: innermost`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let words = cause.to_string();
        if !text.ends_with(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        source = cause.source();
    }
    text
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
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

/// The error body every 4xx and 5xx answer carries: `{code, message, details}`.
pub struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let table: String = ErrorCode::ALL
            .iter()
            .map(|code| {
                format!(
                    "\n- `{}` ({}): {}",
                    code.as_str(),
                    code.status(),
                    code.meaning()
                )
            })
            .collect();
        ObjectBuilder::new()
            .description(Some(
                "Every error answer. `code` is stable and machine-readable; `message` is for \
                 people; `details` adds structure where there is some (e.g. invalid rows).",
            ))
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
                    .description(Some(format!("The error's code:{table}"))),
            )
            .required("code")
            .property(
                "message",
                ObjectBuilder::new().schema_type(Type::String),
            )
            .required("message")
            .property("details", ObjectBuilder::new())
            .examples([serde_json::json!({
                "code": "invalid_query",
                "message": "unknown dimension `provence`; expected one of: province, institution, sector, discipline, track, cohort, gender, role"
            })])
            .into()
    }
}

impl ToSchema for ErrorBody {}

/// The error answers every route may give, for its `#[utoipa::path]`: any 4xx or 5xx status with
/// an [`ErrorBody`]. Routes list the statuses worth a word of their own besides.
pub struct ErrorResponses;

impl IntoResponses for ErrorResponses {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        ResponsesBuilder::new()
            .response("4XX", error("An error of the request; `code` says which"))
            .response(
                "5XX",
                error(
                    "A fault on nigrani's side, or the database cannot be reached; `code` says \
                     which",
                ),
            )
            .build()
            .into()
    }
}

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Store(e) => e.into(),
            AnalyticsError::Query(nigrani_analytics::query::QueryError::Invalid(message)) => {
                ApiError::new(ErrorCode::InvalidQuery, message)
            }
            AnalyticsError::Query(e) => {
                tracing::error!(error = %e, "An analytics query failed.");
                ApiError::new(
                    ErrorCode::InternalError,
                    "nigrani could not compute the figures; the cause is in its log",
                )
            }
        }
    }
}

/// Seconds a client is asked to wait before retrying after the database failed.
const RETRY_AFTER_STORE_SECONDS: u64 = 2;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %chain(&cause), "The database is unavailable.");
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the database cannot be reached; nothing was stored, retry later",
                )
                .with_retry_after(RETRY_AFTER_STORE_SECONDS)
            }
            StoreError::OutcomeUnknown(cause) => {
                tracing::warn!(error = %chain(&cause), "The connection failed while committing.");
                ApiError::new(
                    ErrorCode::OutcomeUnknown,
                    "the database connection failed while the batch was being committed, so \
                     it may or may not be stored; resend it (stored events answer `duplicate`)",
                )
                .with_retry_after(RETRY_AFTER_STORE_SECONDS)
            }
            StoreError::Invalid(cause) => {
                tracing::info!(error = %chain(&cause), "The database refused the data.");
                ApiError::new(ErrorCode::InvalidData, cause.message())
            }
            other @ (StoreError::Internal(_) | StoreError::Migration { .. }) => {
                ApiError::internal(&other)
            }
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Empty => ApiError::new(ErrorCode::EmptyBatch, e.to_string()),
            IngestError::TooManyEvents { .. }
            | IngestError::Body(BodyError::TooManyEvents { .. }) => {
                ApiError::new(ErrorCode::BatchTooLarge, e.to_string())
            }
            IngestError::Body(BodyError::MalformedJson(_)) => ApiError::new(
                ErrorCode::MalformedJson,
                format!("{e}; the body was kept as a rejection"),
            ),
            IngestError::Body(BodyError::NotAnArray(_)) => ApiError::new(
                ErrorCode::InvalidBody,
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
            RosterError::InvalidRows(problems) => ApiError::new(ErrorCode::InvalidRows, message)
                .with_details(serde_json::json!({ "problems": problems })),
            RosterError::MissingColumns(columns) => {
                ApiError::new(ErrorCode::CsvMissingColumns, message)
                    .with_details(serde_json::json!({ "columns": columns }))
            }
            RosterError::UnknownColumns(columns) => {
                ApiError::new(ErrorCode::CsvUnknownColumns, message)
                    .with_details(serde_json::json!({ "columns": columns }))
            }
            RosterError::InvalidUtf8(line) => ApiError::new(ErrorCode::InvalidUtf8, message)
                .with_details(serde_json::json!({ "line": line })),
            RosterError::Empty => ApiError::new(ErrorCode::EmptyBatch, message),
            RosterError::MalformedCsv(_) => ApiError::new(ErrorCode::MalformedCsv, message),
            RosterError::MalformedJson(_) => ApiError::new(ErrorCode::MalformedJson, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_a_valid_status() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert_eq!(
                ApiError::new(*code, "x").status_code().as_u16(),
                code.status()
            );
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
        }
    }

    #[test]
    fn store_failures_ask_for_a_retry_and_say_what_is_known() {
        let e: ApiError =
            StoreError::OutcomeUnknown(nigrani_store::Cause::new("connection reset")).into();
        assert_eq!(e.code, ErrorCode::OutcomeUnknown);
        assert_eq!(e.status_code().as_u16(), 503);
        assert!(e.message.contains("may or may not be stored"));
        let response = e.error_response();
        assert_eq!(response.headers().get("retry-after").unwrap(), "2");
        let e: ApiError = StoreError::unavailable("refused").into();
        assert_eq!(
            e.error_response().headers().get("retry-after").unwrap(),
            "2"
        );
    }

    #[test]
    fn internal_errors_say_nothing_internal() {
        let e: ApiError = StoreError::internal("relation \"events\" does not exist").into();
        assert_eq!(e.code, ErrorCode::InternalError);
        assert!(!e.message.contains("relation"));
    }
}
