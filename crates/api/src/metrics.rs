//! Prometheus metrics, all defined here. Labels are bounded: routes by pattern (never the raw
//! path), a handful of outcomes and statuses, tracks, provinces, cohorts, and at most
//! [`MAX_SOURCES`] event sources — never learner or institution ids.
//!
//! Two registries, two routes. The service's own metrics (requests, ingest, refreshes) say
//! nothing about learners and are public at `/metrics`. The program gauges — learners by track,
//! province and status, cohort completion — are exact counts, down to single learners, so they
//! are served only at `/metrics/program` to manager and admin keys (Prometheus sends the key
//! through its scrape config's `authorization`; see the README).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use nigrani_analytics::{BreakdownQuery, Dimension, Engine, Metric};
use nigrani_ingest::coursera::connector::Health;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Distinct `source` label values kept; more are counted as `other`.
pub const MAX_SOURCES: usize = 32;

/// The service's metrics.
pub struct Metrics {
    /// The service's metrics: public.
    registry: Registry,
    /// The program gauges: for manager and admin keys only.
    program: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    events: IntCounterVec,
    statements: IntCounterVec,
    store_write: HistogramVec,
    in_flight: IntGaugeVec,
    last_event: GaugeVec,
    learners: IntGaugeVec,
    cohort_completion: GaugeVec,
    refresh_seconds: prometheus::Gauge,
    refreshes: prometheus::IntGauge,
    connectors: ConnectorGauges,
    sources: Mutex<HashSet<String>>,
}

/// The pull connectors' health, set from the store at each scrape.
struct ConnectorGauges {
    last_run: GaugeVec,
    last_success: GaugeVec,
    rows: IntGaugeVec,
    lag: GaugeVec,
    data_lag: GaugeVec,
    failing: IntGaugeVec,
}

impl ConnectorGauges {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            Ok(register(
                registry,
                GaugeVec::new(Opts::new(name, help), &["connector"])?,
            ))
        };
        let int_gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            Ok(register(
                registry,
                IntGaugeVec::new(Opts::new(name, help), &["connector"])?,
            ))
        };
        Ok(Self {
            last_run: gauge(
                "nigrani_connector_last_run_timestamp_seconds",
                "When each pull connector last ran, whatever came of it, as a Unix timestamp.",
            )?,
            last_success: gauge(
                "nigrani_connector_last_success_timestamp_seconds",
                "When each pull connector last finished a whole pass over its report, as a Unix timestamp.",
            )?,
            rows: int_gauge(
                "nigrani_connector_rows_read",
                "Report rows each pull connector has read over its life (readable or not).",
            )?,
            lag: gauge(
                "nigrani_connector_lag_seconds",
                "Seconds since each pull connector last finished a whole pass.",
            )?,
            data_lag: gauge(
                "nigrani_connector_data_lag_seconds",
                "Seconds between now and the newest row update each connector has read (the platform's own lag included).",
            )?,
            failing: int_gauge(
                "nigrani_connector_failing",
                "1 when a pull connector's last run stopped on an error, else 0.",
            )?,
        })
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed and distinct, so registering cannot fail; a failure would be a bug here.
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "A metric could not be registered.");
    }
    metric
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let program = Registry::new();
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        Ok(Self {
            http_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "nigrani_http_requests_total",
                        "HTTP requests answered, by route pattern, method and status.",
                    ),
                    &["route", "method", "status"],
                )?,
            ),
            http_duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "nigrani_http_request_duration_seconds",
                        "Time to answer HTTP requests, by route pattern and method.",
                    )
                    .buckets(buckets.clone()),
                    &["route", "method"],
                )?,
            ),
            events: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "nigrani_events_ingested_total",
                        "Events received, by source and outcome (accepted, unmatched, duplicate, conflict, rejected).",
                    ),
                    &["source", "outcome"],
                )?,
            ),
            statements: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "nigrani_xapi_statements_total",
                        "xAPI statements stored, by source and whether they change a figure (meaning: event) or not (none: a verb, actor or object without program meaning, or a voiding statement).",
                    ),
                    &["source", "meaning"],
                )?,
            ),
            store_write: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "nigrani_store_write_duration_seconds",
                        "Time to validate and durably write one ingest batch.",
                    )
                    .buckets(buckets),
                    &["backend"],
                )?,
            ),
            in_flight: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "nigrani_ingest_batches_in_flight",
                        "Ingest batches being validated or written right now (the ingest queue).",
                    ),
                    &["backend"],
                )?,
            ),
            last_event: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "nigrani_source_last_event_received_timestamp_seconds",
                        "When this process last stored an event from each source, as a Unix timestamp: a feed that stalls shows here.",
                    ),
                    &["source"],
                )?,
            ),
            learners: register(
                &program,
                IntGaugeVec::new(
                    Opts::new(
                        "nigrani_learners",
                        "Learners on the roster by track, province and status (enrolled, started, completed, certified, inactive, withdrawn).",
                    ),
                    &["track", "province", "status"],
                )?,
            ),
            cohort_completion: register(
                &program,
                GaugeVec::new(
                    Opts::new(
                        "nigrani_cohort_completion_ratio",
                        "Share of a cohort's learners who completed their track.",
                    ),
                    &["cohort"],
                )?,
            ),
            refresh_seconds: register(
                &registry,
                prometheus::Gauge::with_opts(Opts::new(
                    "nigrani_analytics_refresh_duration_seconds",
                    "How long the latest analytics refresh from the change feed took.",
                ))?,
            ),
            refreshes: register(
                &registry,
                prometheus::IntGauge::with_opts(Opts::new(
                    "nigrani_analytics_refreshes",
                    "Analytics refreshes done since start.",
                ))?,
            ),
            connectors: ConnectorGauges::new(&registry)?,
            registry,
            program,
            sources: Mutex::new(HashSet::new()),
        })
    }

    /// Records an answered request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    fn source_label(&self, source: &str) -> String {
        let Ok(mut sources) = self.sources.lock() else {
            return "other".into();
        };
        if sources.contains(source)
            || (sources.len() < MAX_SOURCES && sources.insert(source.to_owned()))
        {
            source.to_owned()
        } else {
            "other".into()
        }
    }

    /// Records a batch's outcomes and its write time; `received_at` (the injected clock's time)
    /// is what the last-event gauge of each source that had an event accepted shows.
    pub fn observe_batch(
        &self,
        backend: &str,
        report: &nigrani_ingest::BatchReport,
        elapsed: Duration,
        received_at: chrono::DateTime<chrono::Utc>,
    ) {
        let now = received_at.timestamp_micros() as f64 / 1e6;
        for result in &report.results {
            let source = self.source_label(result.source.as_deref().unwrap_or("unknown"));
            let outcome = serde_json::to_value(result.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            self.events.with_label_values(&[&source, &outcome]).inc();
            if matches!(
                result.outcome,
                nigrani_ingest::Outcome::Accepted | nigrani_ingest::Outcome::Unmatched
            ) {
                self.last_event.with_label_values(&[&source]).set(now);
            }
        }
        self.store_write
            .with_label_values(&[backend])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a stored batch of statements: `meaningful` of `count` map to an event.
    pub fn observe_statements(&self, source: &str, count: usize, meaningful: usize) {
        let source = self.source_label(source);
        self.statements
            .with_label_values(&[&source, "event"])
            .inc_by(meaningful as u64);
        self.statements
            .with_label_values(&[&source, "none"])
            .inc_by(count.saturating_sub(meaningful) as u64);
    }

    /// The ingest-queue gauge for a backend.
    pub fn in_flight(&self, backend: &str) -> prometheus::IntGauge {
        self.in_flight.with_label_values(&[backend])
    }

    /// Sets the connector gauges from their stored health.
    pub fn set_connectors(&self, connectors: &[Health]) {
        let gauges = &self.connectors;
        for vec in [
            &gauges.last_run,
            &gauges.last_success,
            &gauges.lag,
            &gauges.data_lag,
        ] {
            vec.reset();
        }
        gauges.rows.reset();
        gauges.failing.reset();
        let seconds = |at: chrono::DateTime<chrono::Utc>| at.timestamp_millis() as f64 / 1000.0;
        for health in connectors {
            let label = [health.connector.as_str()];
            if let Some(at) = health.last_run_at {
                gauges.last_run.with_label_values(&label).set(seconds(at));
            }
            if let Some(at) = health.last_success_at {
                gauges
                    .last_success
                    .with_label_values(&label)
                    .set(seconds(at));
            }
            if let Some(lag) = health.lag_seconds {
                gauges.lag.with_label_values(&label).set(lag as f64);
            }
            if let Some(lag) = health.data_lag_seconds {
                gauges.data_lag.with_label_values(&label).set(lag as f64);
            }
            gauges.rows.with_label_values(&label).set(health.rows_total);
            gauges
                .failing
                .with_label_values(&label)
                .set(i64::from(health.last_error.is_some()));
        }
    }

    /// The service's metrics in the text format (public: nothing in them is about learners).
    pub fn render(&self, engine: &Engine) -> String {
        let (refreshes, last) = engine.refresh_stats();
        self.refreshes.set(refreshes as i64);
        self.refresh_seconds.set(last.as_secs_f64());
        encode(&self.registry)
    }

    /// Updates the program gauges from the engine (learner counts as of `now`, the injected
    /// clock's time), then writes them in the text format. Exact figures: for manager and admin
    /// keys only.
    pub async fn render_program(
        &self,
        engine: &Engine,
        now: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let statuses = [
            (Metric::Enrolled, "enrolled"),
            (Metric::Started, "started"),
            (Metric::Completed, "completed"),
            (Metric::Certified, "certified"),
            (Metric::Inactive, "inactive"),
            (Metric::Withdrawn, "withdrawn"),
        ];
        let query = |by: Vec<Dimension>, metrics: Vec<Metric>| BreakdownQuery {
            by,
            filters: Default::default(),
            metrics,
            from: None,
            as_of: now,
            totals: false,
            period: None,
            latest: true,
        };
        match engine
            .breakdown(&query(
                vec![Dimension::Track, Dimension::Province],
                statuses.iter().map(|(m, _)| *m).collect(),
            ))
            .await
        {
            Ok(breakdown) => {
                self.learners.reset();
                for row in &breakdown.rows {
                    let (Some(track), Some(province)) = (&row.keys[0], &row.keys[1]) else {
                        continue;
                    };
                    for ((_, status), value) in statuses.iter().zip(&row.values) {
                        self.learners
                            .with_label_values(&[track.as_str(), province.as_str(), status])
                            .set(value.unwrap_or(0.0) as i64);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Program gauges could not be computed."),
        }
        if let Ok(breakdown) = engine
            .breakdown(&query(
                vec![Dimension::Cohort],
                vec![Metric::CompletionRate],
            ))
            .await
        {
            self.cohort_completion.reset();
            for row in &breakdown.rows {
                if let (Some(cohort), Some(ratio)) = (&row.keys[0], row.values[0]) {
                    self.cohort_completion
                        .with_label_values(&[cohort])
                        .set(ratio);
                }
            }
        }
        encode(&self.program)
    }
}

/// A registry's metrics in Prometheus' text format.
fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "Metrics could not be encoded.");
    }
    String::from_utf8(out).unwrap_or_default()
}
