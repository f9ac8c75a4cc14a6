//! nigrani's HTTP API: routes, the error contract, health checks, event ingest and the roster.
//!
//! This crate owns HTTP only — status codes, content types, body limits, routing and the
//! server's life cycle. Validation and storage happen in `nigrani-ingest` and `nigrani-store`;
//! every figure comes from `nigrani-analytics`. It must not reach into a database directly.
//!
//! Modules:
//! - `access`: the table of who may call which route, applied before any handler reads the
//!   request; HTTP methods (405, 501, bounded metric labels).
//! - [`auth`]: API keys, rate limits; the caller of a request.
//! - `body`: reading request bodies within limits — size, and a minimum rate so that a slow
//!   sender cannot hold a connection.
//! - [`error`]: [`ApiError`], the one error contract, and the table of codes.
//! - [`routes`]: the handlers under `/api/v1`, `/healthz` and `/readyz`.
//! - `figures`: the read API over analytics (breakdown, timeseries, funnel, targets): its query
//!   parameters, the partner view, rendering and handlers, one module each.
//! - `summary`: the program at a glance per track, and one cohort in detail.
//! - `stream`: server-sent events whenever the figures change.
//! - `xapi`: the xAPI statement resource under `/xapi`, as a learning record store.
//! - `caliper`: IMS Caliper 1.1 envelopes at `/caliper/v1p1/events`.
//! - [`courses`]: the course mapping (platforms' course ids to the program's), kept for the adapters.
//! - `imports`: report files posted whole (Coursera's enrollment report as CSV).
//! - `grafana`: Grafana's JSON datasource protocol under `/grafana`.
//! - [`openapi`]: the OpenAPI document (utoipa), served at `/api/openapi.json` and `/api/docs/`.
//! - [`metrics`]: Prometheus metrics, served at `/metrics`.
//! - `schema`: documentation-only schemas (shapes of answers, choices of parameters).
//! - `rendered`: rendered answers kept per request, so that pollers of unchanged figures cost
//!   next to nothing.
//!
//! [`Application::build`] binds the listener (port 0 picks a free one, for tests) and reports the
//! bound address; [`Application::run_until_stopped`] serves until SIGTERM or Ctrl-C, then stops
//! accepting connections and lets requests in flight — batches being committed among them —
//! finish before it returns.

mod access;
pub mod auth;
mod body;
mod caliper;
pub mod courses;
pub mod error;
mod figures;
mod grafana;
mod imports;
pub mod metrics;
pub mod openapi;
mod rendered;
pub mod routes;
pub(crate) mod schema;
mod stream;
mod summary;
mod xapi;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use nigrani_analytics::Engine;
use nigrani_ingest::{Ingestor, Limits};
use nigrani_store::Store;

pub use body::BodyRate;
pub use error::ApiError;

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A second address that serves only `/metrics`, for a scraper on another network.
    pub metrics_listen: Option<SocketAddr>,
    /// Limits on one ingest request.
    pub limits: Limits,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Requests per second each API key may make (bursts of twice that).
    pub rate_limit_per_second: u32,
    /// What partner keys see of the figures.
    pub disclosure: nigrani_analytics::disclosure::Disclosure,
    /// How long requests in flight may take to finish after a stop signal.
    pub shutdown_timeout: Duration,
    /// How fast request bodies must arrive.
    pub body_rate: BodyRate,
    /// Where "now" comes from.
    pub clock: nigrani_domain::SharedClock,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The batch pipeline.
    pub ingestor: Ingestor,
    /// The figures.
    pub engine: Arc<Engine>,
    /// API keys and their meters.
    pub keys: Arc<auth::Keys>,
    /// What partner keys see of the figures: every figure a route renders goes through it.
    pub disclosure: Arc<nigrani_analytics::disclosure::Disclosure>,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// How fast request bodies must arrive.
    pub body_rate: BodyRate,
    /// Where "now" comes from: every handler asks it, never the system clock directly.
    pub clock: nigrani_domain::SharedClock,
    /// The course mapping, as the adapters read it.
    pub courses: Arc<courses::Courses>,
    /// Rendered answers of polled requests.
    rendered: Arc<rendered::Rendered>,
    /// Cancelled when the server is asked to stop, so that endless answers (the live stream)
    /// end and the shutdown is not held up by them.
    pub stopping: tokio_util::sync::CancellationToken,
}

/// A bound, not yet running server.
pub struct Application {
    address: SocketAddr,
    server: Server,
    /// The metrics-only server, when asked for.
    metrics: Option<(SocketAddr, Server)>,
    stopping: tokio_util::sync::CancellationToken,
}

impl Application {
    /// Binds the listener and builds the server.
    pub fn build(
        config: &ServerConfig,
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen)?;
        let address = listener.local_addr()?;
        let state = AppState {
            ingestor: Ingestor::new(Arc::clone(&store), config.limits),
            keys: Arc::new(auth::Keys::new(
                Arc::clone(&store),
                config.rate_limit_per_second,
            )),
            disclosure: Arc::new(config.disclosure.clone()),
            body_rate: config.body_rate,
            clock: std::sync::Arc::clone(&config.clock),
            metrics: Arc::new(metrics::Metrics::new().map_err(std::io::Error::other)?),
            store,
            engine,
            stopping: tokio_util::sync::CancellationToken::new(),
            rendered: Arc::default(),
            courses: Arc::default(),
        };
        let stopping = state.stopping.clone();
        let metrics = match config.metrics_listen {
            Some(listen) => Some(metrics_server(listen, state.clone(), config)?),
            None => None,
        };
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .configure(routes::configure)
                .configure(openapi::configure)
                .wrap(actix_web::middleware::from_fn(access::check))
                .wrap(actix_web::middleware::from_fn(xapi::echo_version))
                .wrap(actix_web::middleware::from_fn(routes::conditional_get))
                .wrap(actix_web::middleware::from_fn(body::with_deadline))
                .wrap(actix_web::middleware::from_fn(routes::audit_partners))
                .wrap(actix_web::middleware::from_fn(routes::observe_http))
                .wrap(tracing_actix_web::TracingLogger::default())
        })
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        // Signals are handled in `run_until_stopped`, which first ends the live streams.
        .disable_signals();
        if config.workers > 0 {
            server = server.workers(config.workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            address,
            server,
            metrics,
            stopping,
        })
    }

    /// The address the server is bound to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address of the metrics-only server, when there is one.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(address, _)| *address)
    }

    /// Serves until SIGTERM or Ctrl-C: then live streams end, the listeners close, and requests
    /// in flight finish first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let mut handles = vec![self.server.handle()];
        handles.extend(self.metrics.as_ref().map(|(_, server)| server.handle()));
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            stop_signal().await;
            tracing::info!("Stopping: finishing requests in flight.");
            stopping.cancel();
            for handle in handles {
                handle.stop(true).await;
            }
        });
        match self.metrics {
            Some((_, metrics)) => {
                futures_util::future::try_join(self.server, metrics).await?;
                Ok(())
            }
            None => self.server.await,
        }
    }
}

/// Waits for SIGTERM or Ctrl-C.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops.");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// A one-worker server answering only `GET /metrics`.
fn metrics_server(
    listen: SocketAddr,
    state: AppState,
    config: &ServerConfig,
) -> std::io::Result<(SocketAddr, Server)> {
    let listener = TcpListener::bind(listen)?;
    let address = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(routes::prometheus_metrics))
            .default_service(web::to(access::unrouted))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout.as_secs())
    .listen(listener)?
    .run();
    Ok((address, server))
}
