//! The live stream: `GET /api/v1/stream` sends server-sent events whenever the figures change.
//!
//! Each connection checks the published snapshot once a second, so however fast events arrive a
//! client gets at most one message a second. A message (`event: update`) carries the summary and
//! the track × province slices that changed since the previous message on this connection, both
//! from one snapshot; its `id` is the snapshot's change-feed position. A client that reconnects
//! with `Last-Event-ID` hears nothing until the data moves past that position, and then every
//! slice (the server does not know which slices the client had). A comment line every 15 seconds
//! keeps proxies from closing an idle connection. Partner streams are suppressed like partner
//! breakdowns, the slices together with their track and program totals.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use nigrani_analytics::{BreakdownQuery, Dimension};
use serde_json::{Value, json};

use crate::access::audience;
use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::figures::{Lang, Params, language, rounded_now, row_figures};
use crate::summary::{SUMMARY_METRICS, render_summary, summary_answers};
use crate::{ApiError, AppState};
use nigrani_analytics::disclosure::Audience;

/// How often a connection looks for new data: the most messages a second it sends.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest silence before a heartbeat comment.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

/// One connection's memory of what it sent.
struct Connection {
    state: web::Data<AppState>,
    audience: Audience,
    lang: Option<Lang>,
    ticker: tokio::time::Interval,
    /// The snapshot (by publication time) of the last update sent, or resumed from.
    sent: Option<DateTime<Utc>>,
    /// `Last-Event-ID`: send nothing until the data moves past this change-feed position.
    resume_after: Option<i64>,
    /// The slices last sent, by key.
    slices: HashMap<String, Value>,
    last_write: Instant,
    /// Whether the `retry:` advice went out.
    greeted: bool,
}

/// An update ready to send: the snapshot it reflects, its change-feed position, the summary and
/// every slice.
struct Update {
    published_at: DateTime<Utc>,
    last_seq: i64,
    summary: Value,
    slices: Vec<(String, Value)>,
}

impl Connection {
    /// Waits until there is something to send and returns it; `None` when the server stops.
    async fn next_message(&mut self) -> Option<String> {
        let stopping = self.state.stopping.clone();
        tokio::select! {
            message = self.wait_for_message() => Some(message),
            () = stopping.cancelled() => None,
        }
    }

    async fn wait_for_message(&mut self) -> String {
        if !self.greeted {
            self.greeted = true;
            return "retry: 3000\n\n".to_owned();
        }
        loop {
            self.ticker.tick().await;
            let snapshot = self.state.engine.snapshot();
            if self.sent != Some(snapshot.published_at) {
                match self.update().await {
                    Ok(Some(update)) => {
                        if let Some(message) = self.message(update) {
                            self.last_write = Instant::now();
                            return message;
                        }
                    }
                    // The answers are still being brought up to date (see
                    // `nigrani_analytics::answers`): next second.
                    Ok(None) => {}
                    Err(e) => {
                        self.last_write = Instant::now();
                        let body = json!({ "code": e.code, "message": e.message });
                        return format!("event: error\ndata: {body}\n\n");
                    }
                }
            }
            if self.last_write.elapsed() >= HEARTBEAT_EVERY {
                self.last_write = Instant::now();
                return ": heartbeat\n\n".to_owned();
            }
        }
    }

    /// The message for an update — its summary and the slices that changed since the last one
    /// sent — or `None` when a resumed client already has it.
    fn message(&mut self, update: Update) -> Option<String> {
        self.sent = Some(update.published_at);
        if self.resume_after.take() == Some(update.last_seq) {
            return None;
        }
        let mut changed = Vec::new();
        for (key, value) in update.slices {
            if self.slices.get(&key) != Some(&value) {
                changed.push(value.clone());
                self.slices.insert(key, value);
            }
        }
        let data = json!({
            "summary": update.summary,
            "slices": { "by": [Dimension::Track, Dimension::Province], "rows": changed },
        });
        Some(format!(
            "id: {}\nevent: update\ndata: {data}\n\n",
            update.last_seq
        ))
    }

    /// The summary and every track × province slice, both from one snapshot newer than the
    /// last update sent; `None` until the answers are.
    async fn update(&self) -> Result<Option<Update>, ApiError> {
        let now = self.state.clock.now();
        let answers = summary_answers(&self.state, now).await?;
        let (published_at, last_seq) = answers.data();
        if self.sent.is_some_and(|sent| published_at <= sent) {
            return Ok(None);
        }
        let by = vec![Dimension::Track, Dimension::Province];
        let query = BreakdownQuery {
            by: by.clone(),
            filters: Default::default(),
            metrics: SUMMARY_METRICS.to_vec(),
            from: None,
            as_of: rounded_now(now),
            totals: false,
            period: None,
            latest: true,
        };
        let answer = self.state.engine.breakdown_stamped(&query).await?;
        if answer.data_as_of != published_at {
            return Ok(None);
        }
        // A partner's slices, summary and totals are each cells of the disclosure policy, so
        // the same learners give the same figures in all of them.
        let shown = self
            .state
            .disclosure
            .breakdown(self.audience, answer.value.clone());
        let summary = render_summary(&self.state, &answers, self.audience, self.lang)?;
        let mut slices = Vec::new();
        for (i, row) in shown.value().rows.iter().enumerate() {
            let mut out = row_figures(&shown, i);
            if let (Some(track), Some(province)) = (row.keys[0].as_deref(), row.keys[1].as_deref())
            {
                out.insert("track".into(), json!(track));
                out.insert("province".into(), json!(province));
                slices.push((format!("{track}/{province}"), Value::Object(out)));
            }
        }
        Ok(Some(Update {
            published_at,
            last_seq,
            summary,
            slices,
        }))
    }
}

/// Server-sent events: the summary and the track × province slices that changed, at most once a
/// second, with heartbeats and `Last-Event-ID` resume.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "figures",
    params(
        ("lang" = Option<crate::figures::LangParam>, Query, description = "`en` or `ur`: add labels to the summary"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this update: nothing is sent until the data moves past it"),
    ),
    responses(
        (status = 200, description = "A `text/event-stream`: `event: update` messages whose `data` is JSON `{summary, slices: {by, rows}}` and whose `id` is the change-feed position; `: heartbeat` comments every 15 s",
         content_type = "text/event-stream", body = String,
         example = "id: 981234\nevent: update\ndata: {\"summary\":{...},\"slices\":{\"by\":[\"track\",\"province\"],\"rows\":[...]}}\n\n"),
        crate::error::ErrorResponses,
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn stream(
    Authenticated(caller): Authenticated,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::without_filters(query.into_inner(), &["lang"])?;
    let lang = language(&params)?;
    let resume_after = match req.headers().get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidQuery,
                        "`Last-Event-ID` must be the `id` of an update (an integer)",
                    )
                })?,
        ),
    };
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let connection = Connection {
        state,
        audience: audience(caller.role),
        lang,
        ticker,
        sent: None,
        resume_after,
        slices: HashMap::new(),
        last_write: Instant::now(),
        greeted: false,
    };
    let events = futures_util::stream::unfold(connection, |mut connection| async move {
        let message = connection.next_message().await?;
        Some((
            Ok::<_, actix_web::Error>(web::Bytes::from(message)),
            connection,
        ))
    });
    // The connection closes with the stream (at shutdown): it would never be reused anyway.
    Ok(HttpResponse::Ok()
        .force_close()
        .content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events))
}
