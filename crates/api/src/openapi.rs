//! The OpenAPI 3.1 document, assembled by utoipa from the handlers' annotations.
//!
//! `nigrani openapi` prints it, `GET /api/openapi.json` serves it, `/api/docs/` shows it (Swagger
//! UI, served from the binary: nothing loads from outside), and `openapi/openapi.json` is the
//! checked-in copy a test compares against.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::ErrorCode;

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

/// Adds the API-key security schemes.
struct Security;

impl Modify for Security {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("nk_<8 hex>_<32 hex>")
                    .description(Some(
                        "An API key, `Authorization: Bearer nk_…`. Keys are made with `nigrani \
                         keys create` and carry one role: admin, ingest (bound to one source), \
                         manager or partner.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "nigrani",
        description = "Impact monitoring for Pakistan's national AI Upskilling Program for \
                       university faculty: completion events in, figures by province, \
                       institution, discipline, track and cohort out.\n\nEvery error is JSON \
                       `{code, message, details}`; the codes are listed in the `ErrorBody` \
                       schema. Read answers carry an `ETag`: send it back in `If-None-Match` to \
                       get `304 Not Modified` while nothing changed.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::prometheus_metrics,
        crate::routes::post_events,
        crate::routes::status,
        crate::routes::list_rejections,
        crate::routes::list_audit,
        crate::routes::upsert_roster,
        crate::routes::list_roster,
        crate::summary::summary,
        crate::summary::cohort,
        crate::figures::breakdown,
        crate::figures::timeseries,
        crate::figures::funnel,
        crate::figures::targets,
        crate::stream::stream,
        crate::grafana::connection_test,
        crate::grafana::metrics,
        crate::grafana::payload_options,
        crate::grafana::query,
        crate::grafana::variable,
        crate::grafana::tag_keys,
        crate::grafana::tag_values,
    ),
    components(schemas(ErrorBody, crate::routes::RosterKindParam)),
    modifiers(&Security),
    tags(
        (name = "health", description = "Liveness, readiness and Prometheus metrics; no key"),
        (name = "ingest", description = "Events from course platforms"),
        (name = "figures", description = "The program's figures, from the analytics engine"),
        (name = "roster", description = "Institutions, disciplines, tracks, cohorts, learners"),
        (name = "admin", description = "Status, rejections and the audit log"),
        (name = "grafana", description = "Grafana's JSON datasource protocol"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON, ending in a newline (as checked in).
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
