//! The course mapping: platforms' course ids to the program's courses. Admins set it (JSON or
//! CSV) and list it; every adapter reads it through [`Courses`], which keeps it for a few seconds
//! so that a batch costs no extra read — another replica sees a change within
//! [`CACHE_SECONDS`].

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use nigrani_ingest::CourseMap;
use nigrani_store::{Store, StoreError};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// How long a read of the mapping is trusted.
pub const CACHE_SECONDS: u64 = 5;
/// Largest mapping file over HTTP.
const MAX_MAPPING_BYTES: usize = 8 * 1024 * 1024;

/// The mapping as last read.
#[derive(Default)]
pub struct Courses {
    kept: RwLock<Option<(Instant, Arc<CourseMap>)>>,
}

impl Courses {
    /// The mapping, read again when the kept one is older than [`CACHE_SECONDS`].
    pub async fn get(&self, store: &dyn Store) -> Result<Arc<CourseMap>, StoreError> {
        if let Ok(kept) = self.kept.read()
            && let Some((at, map)) = kept.as_ref()
            && at.elapsed() < Duration::from_secs(CACHE_SECONDS)
        {
            return Ok(Arc::clone(map));
        }
        let map = Arc::new(CourseMap::from_rows(store.course_map().await?));
        if let Ok(mut kept) = self.kept.write() {
            *kept = Some((Instant::now(), Arc::clone(&map)));
        }
        Ok(map)
    }

    /// Forgets the kept mapping (after a change through this replica).
    pub fn forget(&self) {
        if let Ok(mut kept) = self.kept.write() {
            *kept = None;
        }
    }
}

/// Registers the routes under `/api/v1`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/course-mappings", web::get().to(list))
        .route("/course-mappings", web::post().to(upsert))
        .route("/course-mappings", web::delete().to(delete));
}

/// Every mapping, by source and platform id.
#[utoipa::path(get, path = "/api/v1/course-mappings", tag = "admin",
    responses((status = 200, description = "The course mapping: platforms' course ids to the track plans' courses", body = Object,
               example = json!({"mappings": [{"source": "coursera", "platform_course_id": "https://www.coursera.org/learn/ai-for-everyone", "course_id": "ai-for-everyone"}]})),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn list(
    _caller: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({ "mappings": state.store.course_map().await? })))
}

/// Sets mappings from a JSON array or a CSV file (`source,platform_course_id,course_id`).
/// Events stored under a platform id before it was mapped move to its course.
#[utoipa::path(post, path = "/api/v1/course-mappings", tag = "admin",
    request_body(description = "Mappings as CSV with a header, or a JSON array of objects (up to 8 MiB)", content(
        ("text/csv", example = "source,platform_course_id,course_id\ncoursera,https://www.coursera.org/learn/ai-for-everyone,ai-for-everyone\n"),
        ("application/json", example = json!([{"source": "moodle", "platform_course_id": "https://lms.uet.edu.pk/course/view.php?id=87", "course_id": "ai-fundamentals-for-educators"}])),
    )),
    responses((status = 200, description = "Mappings written", body = Object, example = json!({"mappings": 1})),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn upsert(
    _caller: Authenticated,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let csv = match crate::body::media_type(&req).as_deref() {
        Some("application/json") => false,
        Some("text/csv") => true,
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "send mappings as `application/json` or `text/csv`, not {}",
                    other.map_or("a body without Content-Type".to_owned(), |t| format!(
                        "`{t}`"
                    ))
                ),
            ));
        }
    };
    let body = crate::body::read_body(&req, payload, MAX_MAPPING_BYTES).await?;
    let rows = nigrani_ingest::course_map::read_mappings(&body, csv)
        .map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.to_string()))?;
    let written = state.store.upsert_course_mappings(&rows).await?;
    state.courses.forget();
    // Events stored before their course was mapped have moved to it: their learners are read
    // again.
    state.engine.roster_changed();
    Ok(HttpResponse::Ok().json(json!({ "mappings": written })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct Which {
    source: String,
    platform_course_id: String,
}

/// Removes one mapping.
#[utoipa::path(delete, path = "/api/v1/course-mappings", tag = "admin",
    params(Which),
    responses((status = 204, description = "The mapping is removed"),
              (status = 404, description = "There was no such mapping (`not_found`)", body = crate::error::ErrorBody),
              crate::error::ErrorResponses),
    security(("api_key" = [])))]
pub(crate) async fn delete(
    _caller: Authenticated,
    which: web::Query<Which>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let removed = state
        .store
        .delete_course_mapping(&which.source, &which.platform_course_id)
        .await?;
    state.courses.forget();
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no mapping of `{}` from source `{}`",
                which.platform_course_id, which.source
            ),
        ))
    }
}
