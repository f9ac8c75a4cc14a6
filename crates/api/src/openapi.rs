//! The OpenAPI 3.1 document, assembled by utoipa from the handlers' annotations.
//!
//! `nigrani openapi` prints it, `GET /api/openapi.json` serves it, `/api/docs/` shows it (Swagger
//! UI, served from the binary: nothing loads from outside), and `openapi/openapi.json` is the
//! checked-in copy a test compares against.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

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
        crate::routes::program_metrics,
        crate::routes::post_events,
        crate::routes::status,
        crate::routes::list_rejections,
        crate::routes::list_audit,
        crate::courses::list,
        crate::courses::upsert,
        crate::courses::delete,
        crate::imports::import_coursera,
        crate::routes::upsert_roster,
        crate::routes::list_roster,
        crate::summary::summary,
        crate::summary::cohort,
        crate::figures::handlers::breakdown,
        crate::figures::handlers::timeseries,
        crate::figures::handlers::funnel,
        crate::figures::handlers::targets,
        crate::stream::stream,
        crate::grafana::connection_test,
        crate::grafana::metrics,
        crate::grafana::payload_options,
        crate::grafana::query,
        crate::grafana::variable,
        crate::grafana::tag_keys,
        crate::grafana::tag_values,
    ),
    components(schemas(
        ErrorBody,
        crate::routes::RosterKindParam,
        crate::routes::ListFormat,
        crate::routes::ListLang,
        crate::figures::params::RowsFormat,
        crate::figures::params::BreakdownFormat,
        crate::figures::params::LangParam,
        crate::figures::params::IntervalParam,
        crate::figures::params::PeriodParam,
        crate::figures::params::SeriesMetric,
        crate::figures::params::Flag,
        crate::figures::params::DimensionParam,
    )),
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

/// Serves the document at `/api/openapi.json` and Swagger UI at `/api/docs/`. Registered next to
/// [`crate::routes::configure`], not by it, so that the routes do not depend on the document
/// that describes them.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::{HttpResponse, web};
    cfg.route(
        "/api/openapi.json",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(document_json())
        }),
    )
    .service(
        utoipa_swagger_ui::SwaggerUi::new("/api/docs/{_:.*}")
            .url("/api/openapi-ui.json", ApiDoc::openapi()),
    );
}

/// The document as pretty JSON, ending in a newline (as checked in).
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
