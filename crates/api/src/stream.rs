//! The live stream: `GET /api/v1/stream` sends server-sent events whenever the figures change.
//!
//! Each connection checks the published snapshot once a second, so however fast events arrive a
//! client gets at most one message a second. A message (`event: update`) carries the summary and
//! the province × track slices that changed since the previous message on this connection; its
//! `id` is the snapshot's change-feed position. A client that reconnects with `Last-Event-ID`
//! hears nothing until the data moves past that position, and then every slice (the server
//! does not know which slices the client had). A comment line every 15 seconds keeps proxies from
//! closing an idle connection. Partner streams are suppressed like partner breakdowns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use nigrani_analytics::{BreakdownQuery, Dimension};
use serde_json::{Map, Value, json};

use crate::auth::Authenticated;
use crate::figures::{Lang, Params, language, metric_value, rounded_now};
use crate::summary::{SUMMARY_METRICS, summary_value};
use crate::{ApiError, AppState};
use nigrani_domain::AccessRole::{Admin, Manager, Partner};

/// How often a connection looks for new data: the most messages a second it sends.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest silence before a heartbeat comment.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

/// One connection's memory of what it sent.
struct Connection {
    state: web::Data<AppState>,
    partner: bool,
    lang: Option<Lang>,
    ticker: tokio::time::Interval,
    /// The change-feed position of the last update sent (or resumed from).
    sent_seq: Option<i64>,
    /// The slices last sent, by key.
    slices: HashMap<String, Value>,
    last_write: Instant,
    /// Whether the `retry:` advice went out.
    greeted: bool,
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
            if self.sent_seq != Some(snapshot.last_seq) {
                match self.update().await {
                    // An answer may lag the newest snapshot by a moment (see
                    // `nigrani_analytics::answers`); its own position is the message's id, so
                    // that its successor is sent once ready.
                    Ok(None) => continue,
                    Ok(Some((last_seq, data))) => {
                        let unchanged = self.sent_seq == Some(last_seq);
                        self.sent_seq = Some(last_seq);
                        if unchanged {
                            continue;
                        }
                        self.last_write = Instant::now();
                        return format!("id: {last_seq}\nevent: update\ndata: {data}\n\n");
                    }
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

    /// The summary and the slices that changed, as one line of JSON, with the change-feed
    /// position of the summary's data.
    /// `None` while the two answers come from different snapshots (one is being refreshed).
    async fn update(&mut self) -> Result<Option<(i64, String)>, ApiError> {
        let now = Utc::now();
        let summary = summary_value(&self.state, self.partner, self.lang, now).await?;
        let by = vec![Dimension::Province, Dimension::Track];
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
        let last_seq = summary["last_seq"].as_i64().unwrap_or_default();
        if answer.last_seq != last_seq {
            return Ok(None);
        }
        let mut result = answer.value.clone();
        let hidden = if self.partner {
            nigrani_analytics::suppress::apply(&mut result, self.state.suppression_k)
        } else {
            Default::default()
        };
        let mut changed = Vec::new();
        for (i, row) in result.rows.iter().enumerate() {
            let mut out = Map::new();
            for (d, key) in by.iter().zip(&row.keys) {
                out.insert(d.as_str().into(), json!(key));
            }
            let key = row
                .keys
                .iter()
                .map(|k| k.as_deref().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("/");
            let learners = (!hidden.contains(&(i, 0))).then_some(row.learners);
            out.insert("learners".into(), json!(learners));
            for (m, value) in result.metrics.iter().zip(&row.values) {
                out.insert(m.as_str().into(), metric_value(*m, *value));
            }
            let value = Value::Object(out);
            if self.slices.get(&key) != Some(&value) {
                self.slices.insert(key, value.clone());
                changed.push(value);
            }
        }
        Ok(Some((
            last_seq,
            json!({
                "summary": summary,
                "slices": { "by": by, "rows": changed },
            })
            .to_string(),
        )))
    }
}

/// Server-sent events: the summary and the province × track slices that changed, at most once a
/// second, with heartbeats and `Last-Event-ID` resume.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "figures",
    params(
        ("lang" = Option<String>, Query, description = "`en` or `ur`: add labels to the summary"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this update: nothing is sent until the data moves past it"),
    ),
    responses(
        (status = 200, description = "A `text/event-stream`: `event: update` messages whose `data` is JSON `{summary, slices: {by, rows}}` and whose `id` is the change-feed position; `: heartbeat` comments every 15 s",
         content_type = "text/event-stream", body = String,
         example = "id: 981234\nevent: update\ndata: {\"summary\":{...},\"slices\":{\"by\":[\"province\",\"track\"],\"rows\":[...]}}\n\n"),
        (status = "4XX", description = "An error; `code` says which", body = crate::openapi::ErrorBody),
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
    caller.require(&[Admin, Manager, Partner])?;
    let params = Params::without_filters(query.into_inner(), &["lang"])?;
    let lang = language(&params)?;
    let sent_seq = match req.headers().get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        "invalid_query",
                        "`Last-Event-ID` must be the `id` of an update (an integer)",
                    )
                })?,
        ),
    };
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let connection = Connection {
        state,
        partner: caller.role == Partner,
        lang,
        ticker,
        sent_seq,
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
