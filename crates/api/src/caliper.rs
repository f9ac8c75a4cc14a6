//! IMS Caliper 1.1 at `POST /caliper/v1p1/events`: a sensor's envelope, with Bearer auth.
//!
//! A malformed envelope is 400 and a Caliper version other than 1.1 is 422, both kept as a
//! rejection; a good one is answered 200 with an empty body once its events are durable. The
//! events go through the batch pipeline like every other source's (idempotency, unmatched
//! learners attributed later).

use actix_web::{HttpRequest, HttpResponse, web};
use nigrani_domain::{RejectReason, Rejection};
use nigrani_ingest::caliper::{self, EnvelopeError};

use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// The source of envelopes sent with an admin key (ingest keys send their own).
const ADMIN_SOURCE: &str = "caliper";

/// Registers the route.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/caliper/v1p1/events", web::post().to(post_envelope));
}

async fn post_envelope(
    Authenticated(caller): Authenticated,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(caliper::is_caliper_content_type) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send Caliper envelopes as `application/json`",
        ));
    }
    let limits = state.ingestor.limits();
    let body = crate::body::read_body(&req, payload, limits.max_body_bytes).await?;
    let source = caller.source_or(ADMIN_SOURCE);
    let now = state.clock.now();
    let courses = state.courses.get(state.store.as_ref()).await?;
    let mapped = match caliper::read_envelope(&body, &source, &courses) {
        Ok(mapped) => mapped,
        Err(error) => {
            let rejection = Rejection {
                reason: RejectReason::InvalidField,
                message: format!("Caliper: {error}"),
                source: Some(source),
                event_id: None,
                raw: String::from_utf8_lossy(&body).into_owned(),
            }
            .storable();
            state.store.write_batch(&[], &[rejection], now).await?;
            let code = match error {
                EnvelopeError::Malformed(_) => ErrorCode::InvalidBody,
                EnvelopeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            };
            return Err(ApiError::new(code, error.to_string()));
        }
    };
    if mapped.events.len() > limits.max_events {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!(
                "the envelope holds {} events; at most {} are allowed per request",
                mapped.events.len(),
                limits.max_events
            ),
        ));
    }
    if !mapped.events.is_empty() {
        let report = state
            .ingestor
            .bound_to(caller.source.as_deref())
            .ingest_items(mapped.into_items(), now)
            .await?;
        state.metrics.observe_batch(
            state.store.backend().as_str(),
            &report,
            std::time::Duration::ZERO,
            now,
        );
    }
    Ok(HttpResponse::Ok().finish())
}
