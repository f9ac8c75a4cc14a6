//! The program at a glance: the summary per track against its target, and one cohort in detail.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use nigrani_analytics::answers::Stamped;
use nigrani_analytics::disclosure::Audience;
use nigrani_analytics::targets::TargetStatus;
use nigrani_analytics::{BreakdownQuery, Dimension, Metric, Summary};
use serde_json::{Map, Value, json};

use crate::access::audience;
use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::figures::{
    Labels, Lang, Params, disclosure_note, json_bytes, language, metric_value, rounded_now,
    row_figures, to_json,
};
use crate::rendered::{Stamp, stamp_of};
use crate::{ApiError, AppState};

/// The figures the summary gives per track.
pub(crate) const SUMMARY_METRICS: &[Metric] = &[
    Metric::Enrolled,
    Metric::Started,
    Metric::Active7d,
    Metric::Completed,
    Metric::Certified,
    Metric::Trained,
];

/// The analytics answers a summary is made of: figures per track and the targets, from one
/// snapshot.
pub(crate) struct SummaryAnswers(Arc<Stamped<Summary>>);

impl SummaryAnswers {
    /// The snapshot the summary comes from: when it was published, and its position.
    pub(crate) fn data(&self) -> (DateTime<Utc>, i64) {
        (self.0.data_as_of, self.0.last_seq)
    }

    /// Which data the summary reflects.
    pub(crate) fn stamp(&self) -> Stamp {
        stamp_of(&self.0).to_vec()
    }
}

/// The answers behind the summary as of `now`.
pub(crate) async fn summary_answers(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<SummaryAnswers, ApiError> {
    let query = BreakdownQuery {
        by: vec![Dimension::Track],
        filters: Default::default(),
        metrics: SUMMARY_METRICS.to_vec(),
        from: None,
        as_of: rounded_now(now),
        totals: true,
        period: None,
        latest: true,
    };
    Ok(SummaryAnswers(state.engine.summary_stamped(&query).await?))
}

/// A target as shown beside its figures: when the figures' row is left out (for a partner, a
/// group with no learners once perturbed), no one shows as trained, and the target says the
/// same rather than contradict the row.
fn shown_target(target: &TargetStatus, row_shown: bool) -> TargetStatus {
    if row_shown {
        target.clone()
    } else {
        target.recounted(0, 0)
    }
}

/// The summary as JSON: figures per track and for the whole program, with each track's target,
/// as `audience` may see them. Shared by `GET /api/v1/summary` and the live stream.
pub(crate) fn render_summary(
    state: &AppState,
    answers: &SummaryAnswers,
    audience: Audience,
    lang: Option<Lang>,
) -> Result<Value, ApiError> {
    let answer = &answers.0;
    let shown = state
        .disclosure
        .breakdown(audience, answer.value.breakdown.clone());
    let result = shown.value();
    let targets = state
        .disclosure
        .targets(audience, answer.value.targets.clone());
    let figures = |i: usize| row_figures(&shown, i);
    // Every track is listed, with zeros when nobody is on it yet (its target still counts).
    let zeros = || {
        let mut out = Map::new();
        out.insert("learners".into(), json!(0));
        for m in &result.metrics {
            out.insert(m.as_str().into(), metric_value(*m, Some(0.0)));
        }
        out
    };
    let row_of = |key: Option<&str>| {
        result
            .rows
            .iter()
            .position(|r| r.keys.first().and_then(|k| k.as_deref()) == key)
    };
    let program = row_of(None).map_or_else(zeros, figures);
    let mut tracks = Vec::new();
    for track in nigrani_domain::Track::ALL {
        let mut out = Map::new();
        out.insert("track".into(), json!(track.as_str()));
        if let Some(lang) = lang {
            let label = match lang {
                Lang::En => track.label_en(),
                Lang::Ur => track.label_ur(),
            };
            out.insert("track_label".into(), json!(label));
        }
        let row = row_of(Some(track.as_str()));
        out.extend(row.map_or_else(zeros, figures));
        if let Some(target) = targets
            .value()
            .iter()
            .find(|t| t.scope == "track" && t.id == track.as_str())
        {
            out.insert(
                "target".into(),
                to_json(&shown_target(target, row.is_some()))?,
            );
        }
        tracks.push(Value::Object(out));
    }
    let mut answer = json!({
        "as_of": answer.as_of,
        "data_as_of": answer.data_as_of,
        "last_seq": answer.last_seq,
        "tracks": tracks,
        "program": program,
        "disclosure": disclosure_note(&shown, &state.disclosure),
    });
    if let Some(lang) = lang {
        let labels: Map<String, Value> = SUMMARY_METRICS
            .iter()
            .map(|m| {
                let label = match lang {
                    Lang::En => m.label_en(),
                    Lang::Ur => m.label_ur(),
                };
                (m.as_str().to_owned(), json!(label))
            })
            .collect();
        answer["metric_labels"] = Value::Object(labels);
    }
    Ok(answer)
}

/// `GET /api/v1/summary`: per track, enrolled, started, active, completed, certified and
/// trained learners against the track's target.
#[utoipa::path(
    get,
    path = "/api/v1/summary",
    tag = "figures",
    params(
        ("lang" = Option<crate::figures::LangParam>, Query, description = "`en` or `ur`: add labels in that language"),
        ("format" = Option<crate::figures::RowsFormat>, Query, description = "`json` (default) or `rows`: only the per-track rows, as a flat array (for Grafana's Infinity datasource)"),
    ),
    responses(
        (status = 200, description = "Figures per track and for the program, as of now",
         body = crate::schema::ObjectOrRows, example = json!({
            "as_of": "2026-11-30T10:00:00Z", "data_as_of": "2026-11-30T10:00:03Z", "last_seq": 981234,
            "tracks": [{"track": "soft", "learners": 1012, "enrolled": 1012, "started": 920,
                        "active_7d": 410, "completed": 388, "certified": 0, "trained": 388,
                        "target": {"scope": "track", "id": "soft", "attained": 388, "target": 1000,
                                   "attainment": 0.388, "pace_per_day": 9.5,
                                   "projected_date": "2027-01-04"}}],
            "program": {"learners": 1400, "enrolled": 1400, "started": 1270, "active_7d": 530,
                        "completed": 480, "certified": 70, "trained": 458}})),
        crate::error::ErrorResponses,
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn summary(
    Authenticated(caller): Authenticated,
    req: actix_web::HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::without_filters(query.into_inner(), &["lang", "format"])?;
    let rows_only = crate::figures::flat_rows(&params)?;
    let lang = language(&params)?;

    let answers = summary_answers(&state, state.clock.now()).await?;
    let request = format!("summary|{:?}|{}", caller.role, req.query_string());
    let stamp = answers.stamp();
    if let Some(rendering) = state.rendered.get(&request, &stamp) {
        return Ok(rendering.respond());
    }
    let answer = render_summary(&state, &answers, audience(caller.role), lang)?;
    let body = if rows_only {
        json_bytes(&answer["tracks"])?
    } else {
        json_bytes(&answer)?
    };
    let rendering = state.rendered.put(request, stamp, "application/json", body);
    Ok(rendering.respond())
}

/// `GET /api/v1/cohorts/{cohort_id}`: one cohort, its figures and target; for managers and
/// admins also every member's status.
#[utoipa::path(
    get,
    path = "/api/v1/cohorts/{cohort_id}",
    tag = "roster",
    params(
        ("cohort_id" = String, Path, description = "The cohort's id", example = "soft-c1"),
        ("lang" = Option<crate::figures::LangParam>, Query, description = "`en` or `ur`: add the cohort's and track's label"),
    ),
    responses(
        (status = 200, description = "The cohort; `members` only for manager and admin keys",
         body = Object, example = json!({
            "cohort": {"cohort_id": "soft-2026-c1", "name": "AI Soft Skills, cohort 1",
                       "name_ur": "اے آئی سافٹ اسکلز، گروپ 1", "track": "soft",
                       "starts_on": "2026-09-01", "ends_on": "2026-12-15", "target": 300},
            "figures": {"learners": 310, "enrolled": 310, "started": 290, "active_7d": 120,
                        "completed": 140, "certified": 0, "trained": 140},
            "target": {"scope": "cohort", "id": "soft-2026-c1", "attained": 140, "target": 300,
                       "attainment": 0.467, "pace_per_day": 4.2, "projected_date": "2026-12-08",
                       "ends_on": "2026-12-15", "on_track": true},
            "members": [{"learner_id": "L000123", "status": "completed", "progress": 1.0,
                         "started_at": "2026-09-03T08:00:00Z",
                         "completed_at": "2026-10-20T12:30:00Z", "certified_at": null,
                         "last_activity": "2026-10-20T12:30:00Z"}]})),
        (status = 404, description = "No such cohort", body = crate::error::ErrorBody),
        crate::error::ErrorResponses,
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip(caller, query, state))]
pub(crate) async fn cohort(
    Authenticated(caller): Authenticated,
    cohort_id: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::without_filters(query.into_inner(), &["lang"])?;

    let lang = language(&params)?;
    let snapshot = state.engine.snapshot();
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no cohort `{cohort_id}`"));
    let row = snapshot
        .roster
        .cohorts
        .iter()
        .find(|c| c.cohort_id == *cohort_id)
        .cloned()
        .ok_or_else(not_found)?;
    let audience = audience(caller.role);
    let as_of = rounded_now(state.clock.now());
    let query = BreakdownQuery {
        by: Vec::new(),
        filters: [(Dimension::Cohort, vec![cohort_id.to_string()])].into(),
        metrics: SUMMARY_METRICS.to_vec(),
        from: None,
        as_of,
        totals: false,
        period: None,
        latest: true,
    };
    let answer = state
        .engine
        .cohort_summary_stamped(&query, &cohort_id)
        .await?;
    let shown = state
        .disclosure
        .breakdown(audience, answer.value.breakdown.clone());
    let figures = if shown.value().rows.is_empty() {
        Map::new()
    } else {
        row_figures(&shown, 0)
    };
    let targets = state
        .disclosure
        .targets(audience, answer.value.targets.clone());
    let target = targets
        .value()
        .iter()
        .find(|t| t.scope == "cohort" && t.id == *cohort_id)
        .map(|t| to_json(&shown_target(t, !shown.value().rows.is_empty())))
        .transpose()?;
    let mut cohort = to_json(&row)?;
    if let Some(lang) = lang {
        let labels = Labels::load(&state, &snapshot.roster, lang).await?;
        cohort["label"] = json!(labels.of(Dimension::Cohort, &row.cohort_id));
        cohort["track_label"] = json!(labels.of(Dimension::Track, row.track.as_str()));
    }
    let mut answer = json!({
        "as_of": as_of,
        "data_as_of": answer.data_as_of,
        "cohort": cohort,
        "figures": figures,
        "target": target,
        "disclosure": disclosure_note(&shown, &state.disclosure),
    });
    // Learner-level rows never leave through a partner key.
    if audience == Audience::Exact {
        let members = state
            .engine
            .cohort_members(&cohort_id)
            .ok_or_else(not_found)?;
        answer["members"] = to_json(&members)?;
    }
    Ok(HttpResponse::Ok().json(answer))
}
