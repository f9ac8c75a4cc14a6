//! The xAPI statement resource under `/xapi`, as a learning record store answers it.
//!
//! Every response carries `X-Experience-API-Version` (the request's version, as nigrani speaks
//! it); every request but `/xapi/about` must send it. Ingest keys (HTTP Basic or Bearer) write
//! statements of their source; admin keys write too (source `xapi`) and alone read them back,
//! since a statement is the raw payload and may hold e-mail addresses. The document resources
//! (state, activity profile, agent profile) answer 501.

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::SecondsFormat;
use nigrani_domain::AccessRole;
use nigrani_ingest::xapi::read::{self, Answer};
use nigrani_ingest::xapi::validate::Version;
use nigrani_ingest::xapi::write::{self, Sender, WriteError};
use serde_json::{Value, json};

use crate::auth::{Authenticated, Caller};
use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// The header naming the xAPI version.
const VERSION_HEADER: &str = "x-experience-api-version";
/// The source of statements sent with an admin key (ingest keys send their own).
const ADMIN_SOURCE: &str = "xapi";

/// Registers `/xapi`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/xapi")
            // HEAD answers as GET does, without the body (the specification asks for it).
            .route("/about", web::get().to(about))
            .route("/about", web::head().to(about))
            .route("/statements", web::post().to(post_statements))
            .route("/statements", web::put().to(put_statement))
            .route("/statements", web::get().to(get_statements))
            .route("/statements", web::head().to(get_statements))
            .route("/activities/state", web::route().to(not_provided))
            .route("/activities/profile", web::route().to(not_provided))
            .route("/agents/profile", web::route().to(not_provided))
            .route("/activities", web::route().to(not_provided))
            .route("/agents", web::route().to(not_provided)),
    );
}

/// Puts `X-Experience-API-Version` on every answer under `/xapi` — refusals of the access
/// check and unknown methods included, so it wraps the whole app: the version the request
/// named, or the latest nigrani speaks.
pub(crate) async fn echo_version(
    req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if req.path() != "/xapi" && !req.path().starts_with("/xapi/") {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let version = requested_version(req.request()).unwrap_or(Version::V2_0_0);
    // Refusals of the access check and handlers' errors arrive here as answers.
    let mut response = next.call(req).await?.map_into_boxed_body();
    response.headers_mut().insert(
        HeaderName::from_static(VERSION_HEADER),
        HeaderValue::from_static(version.as_str()),
    );
    Ok(response)
}

fn requested_version(req: &HttpRequest) -> Option<Version> {
    req.headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Version::from_header(v.trim()))
}

/// The version the request names, or 400.
fn version(req: &HttpRequest) -> Result<Version, ApiError> {
    match req.headers().get(VERSION_HEADER) {
        None => Err(ApiError::new(
            ErrorCode::XapiVersion,
            "send the `X-Experience-API-Version` header (1.0.3 or 2.0.0)",
        )),
        Some(_) => requested_version(req).ok_or_else(|| {
            ApiError::new(
                ErrorCode::XapiVersion,
                "`X-Experience-API-Version` must name 1.0.x or 2.0.0",
            )
        }),
    }
}

/// The versions nigrani speaks.
async fn about() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "version": ["1.0.3", "2.0.0"],
        "extensions": {},
    }))
}

async fn not_provided() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotProvided,
        "nigrani stores statements only; the xAPI document resources (state, activity profile, \
         agent profile) and the activity and agent resources are not provided",
    ))
}

/// `POST /xapi/statements`: one statement or an array; answers their ids in order.
async fn post_statements(
    Authenticated(caller): Authenticated,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ids = write_statements(&caller, &req, payload, &state, None).await?;
    Ok(HttpResponse::Ok().json(ids))
}

#[derive(serde::Deserialize)]
struct PutQuery {
    #[serde(rename = "statementId")]
    statement_id: String,
}

/// `PUT /xapi/statements?statementId=`: one statement with that id; answers 204.
async fn put_statement(
    Authenticated(caller): Authenticated,
    req: HttpRequest,
    query: web::Query<PutQuery>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !nigrani_ingest::xapi::validate::is_uuid(&query.statement_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`statementId` must be a UUID, not `{}`", query.statement_id),
        ));
    }
    write_statements(&caller, &req, payload, &state, Some(&query.statement_id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn write_statements(
    caller: &Caller,
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    put_id: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let version = version(req)?;
    match crate::body::media_type(req).as_deref() {
        Some("application/json") => {}
        Some(multipart) if multipart.starts_with("multipart/") => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "nigrani does not store attachment bodies (multipart/mixed); send statements as \
                 `application/json`, with attachments by `fileUrl`",
            ));
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "send statements as `application/json`, not {}",
                    other.map_or("a body without Content-Type".to_owned(), |t| format!(
                        "`{t}`"
                    ))
                ),
            ));
        }
    }
    let limits = state.ingestor.limits();
    let body = crate::body::read_body(req, payload, limits.max_body_bytes).await?;
    let source = caller.source_or(ADMIN_SOURCE);
    let now = state.clock.now();
    let sender = Sender {
        source: source.clone(),
        authority: authority(req, caller),
    };
    let parsed: Result<Value, WriteError> = serde_json::from_slice(&body)
        .map_err(|e| WriteError::Malformed(format!("the body is not valid JSON: {e}")));
    let courses = state.courses.get(state.store.as_ref()).await?;
    let prepared = parsed.and_then(|body| {
        write::prepare(
            &body,
            version,
            &sender,
            &courses,
            put_id,
            limits.max_events,
            now,
        )
    });
    let stored = match prepared {
        Ok(prepared) => write::store(state.store.as_ref(), &prepared, now)
            .await
            .map(|ids| (ids, prepared)),
        Err(error) => Err(error),
    };
    match stored {
        Ok((ids, prepared)) => {
            state
                .metrics
                .observe_statements(&source, ids.len(), prepared.meaningful);
            if prepared.voids_any() {
                state.engine.roster_changed();
            }
            Ok(ids)
        }
        Err(error) => {
            if !matches!(error, WriteError::Store(_)) {
                write::keep_refused(state.store.as_ref(), &source, &body, &error, now).await?;
            }
            Err(refused(error))
        }
    }
}

/// The agent a statement's `authority` names: the key that sent it.
fn authority(req: &HttpRequest, caller: &Caller) -> Value {
    let info = req.connection_info();
    json!({
        "objectType": "Agent",
        "account": {
            "homePage": format!("{}://{}/api/v1/keys", info.scheme(), info.host()),
            "name": caller.key_id,
        },
    })
}

/// The API's answer to a refused batch.
fn refused(error: WriteError) -> ApiError {
    let code = match &error {
        WriteError::Store(_) => None,
        WriteError::Malformed(_) => Some(ErrorCode::MalformedJson),
        WriteError::TooMany { .. } => Some(ErrorCode::BatchTooLarge),
        WriteError::Conflict(_) => Some(ErrorCode::StatementConflict),
        WriteError::Invalid { .. }
        | WriteError::DuplicateId { .. }
        | WriteError::IdMismatch { .. } => Some(ErrorCode::InvalidStatement),
    };
    match (code, error) {
        (_, WriteError::Store(store)) => ApiError::from(store),
        (Some(code), other) => ApiError::new(code, other.to_string()),
        (None, other) => ApiError::new(ErrorCode::InternalError, other.to_string()),
    }
}

/// `GET /xapi/statements`: one statement, or a filtered page with `more`.
async fn get_statements(
    Authenticated(caller): Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[AccessRole::Admin])?;
    let version = version(&req)?;
    let parameters: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("the query is not valid: {e}"),
                )
            })?
            .into_inner();
    let accept_language = req
        .headers()
        .get(actix_web::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let request = read::parse(&parameters, accept_language, version)
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))?;
    // Every statement stored up to this moment is in the answer: the store waits out a write
    // in progress, and later writes are stored after it.
    let consistent = state
        .store
        .statements_consistent_through()
        .await?
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    let answer = read::read(state.store.as_ref(), &request).await?;
    let mut response = match answer {
        Answer::One(Some(statement)) => HttpResponse::Ok().json(statement),
        Answer::One(None) => {
            return Err(ApiError::new(ErrorCode::NotFound, "no such statement"));
        }
        Answer::Page { statements, more } => HttpResponse::Ok().json(json!({
            "statements": statements,
            "more": more.map_or(String::new(), |more| format!(
                "/xapi/statements?{}",
                read::more_query(&parameters, more)
            )),
        })),
    };
    if let Ok(value) = HeaderValue::from_str(&consistent) {
        response.headers_mut().insert(
            HeaderName::from_static("x-experience-api-consistent-through"),
            value,
        );
    }
    Ok(response)
}
