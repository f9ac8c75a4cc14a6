//! Report imports: `POST /api/v1/imports/coursera` takes a Coursera enrollment report exported
//! as CSV, as `nigrani import --format coursera` does from a file.
//!
//! The body is read whole within the ingest body limit (`ingest.max_body_bytes`; larger reports
//! go through the command line, which streams). Its rows become events through the batch
//! pipeline, so re-importing the same report changes nothing, and rows that cannot be read are
//! kept as rejections. The answer counts rows and the events' outcomes; it is sent once every
//! event is durable.

use actix_web::{HttpRequest, HttpResponse, web};
use nigrani_ingest::coursera::import::{ImportError, import_csv};

use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// The source of rows sent with an admin key (ingest keys send their own).
const ADMIN_SOURCE: &str = "coursera";

/// Registers the route under `/api/v1`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/imports/coursera", web::post().to(import_coursera));
}

/// Imports a Coursera enrollment report exported as CSV: its rows as events, idempotently.
#[utoipa::path(post, path = "/api/v1/imports/coursera", tag = "ingest",
    request_body(description = "The enrollment report as CSV with its header (within the ingest body limit)", content(
        ("text/csv", example = "Name,Email,External Id,Course,Course ID,Course Slug,University,Enrollment Time,Last Course Activity Time,Overall Progress,Completed,Removed From Program,Program Slug,Program Name,Completion Time,Course Grade,Course Certificate URL,Course Type\nAyesha Siddiqui,ayesha@uet.edu.pk,UET-LHR-04417,AI For Everyone,Hw3kN6s2EeuPq1b8Yx4zCd,ai-for-everyone,UET Lahore,2026-02-02 04:00:00 UTC,2026-03-01 04:00:00 UTC,100,Yes,No,ai-soft-skills,AI Soft Skills,2026-03-01 04:00:00 UTC,92%,,COURSE\n"),
    )),
    responses((status = 200, description = "Rows read, rows kept as rejections, and the events' outcomes; every outcome is durable", body = Object,
               example = json!({"rows": 1, "rejected_rows": 0, "events": {"accepted": 3, "unmatched": 0, "duplicate": 0, "conflict": 0, "rejected": 0}})),
              (status = 400, description = "The header lacks the report's columns (`csv_missing_columns`), or there are no rows (`empty_batch`)", body = crate::error::ErrorBody),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn import_coursera(
    Authenticated(caller): Authenticated,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if crate::body::media_type(&req).as_deref() != Some("text/csv") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the enrollment report as `text/csv` (the CSV export of Coursera's admin pages)",
        ));
    }
    let limits = state.ingestor.limits();
    let body = crate::body::read_body(&req, payload, limits.max_body_bytes).await?;
    let source = caller.source_or(ADMIN_SOURCE);
    let courses = state.courses.get(state.store.as_ref()).await?;
    let ingestor = state.ingestor.bound_to(caller.source.as_deref());
    let summary = import_csv(
        &ingestor,
        body.as_ref(),
        &source,
        &courses,
        limits.max_events,
        state.clock.now(),
        |_| {},
    )
    .await
    .map_err(|e| match e {
        ImportError::Header(message) => ApiError::new(ErrorCode::CsvMissingColumns, message),
        ImportError::Ingest(e) => ApiError::from(e),
    })?;
    if summary.rows == 0 {
        return Err(ApiError::new(
            ErrorCode::EmptyBatch,
            "the report holds no rows (a header and at least one row are needed)",
        ));
    }
    Ok(HttpResponse::Ok().json(summary))
}
