//! One settings tree, read from defaults, then a TOML file, then `NIGRANI_*` environment variables
//! (nested keys joined with `__`, e.g. `NIGRANI_INGEST__MAX_EVENTS=2000`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything nigrani can be told. With nothing set, it serves on 127.0.0.1:8080 from SQLite in
/// `./data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Settings {
    /// Address the HTTP server listens on.
    pub(crate) listen: SocketAddr,
    /// Optionally a second address serving only `/metrics` (e.g. `0.0.0.0:9464` on the private
    /// network, while `listen` faces the internet). `/metrics` stays on `listen` too.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Folder of the embedded SQLite database (used when `database_url` is not set).
    pub(crate) data_dir: PathBuf,
    /// PostgreSQL URL; when set, PostgreSQL is used instead of SQLite.
    pub(crate) database_url: Option<Secret>,
    /// Most connections in the PostgreSQL pool.
    pub(crate) pool_size: usize,
    /// Seconds to wait for a database connection.
    pub(crate) connect_timeout_secs: u64,
    /// HTTP worker threads; 0 means one per core.
    pub(crate) workers: usize,
    /// Seconds requests in flight get to finish after SIGTERM.
    pub(crate) shutdown_timeout_secs: u64,
    /// Log filter, in `RUST_LOG` syntax (e.g. `info`, `nigrani_api=debug`).
    pub(crate) log: String,
    /// Log format: `text` for people, `json` for log collectors.
    pub(crate) log_format: LogFormat,
    /// Limits on ingest requests.
    pub(crate) ingest: IngestSettings,
    /// The admin key to install on a fresh database (`nk_<8 hex>_<32 hex>`). Without it, a fresh
    /// install prints a new admin key once.
    pub(crate) admin_key: Option<Secret>,
    /// Requests per second each API key may make (bursts of twice that).
    pub(crate) rate_limit_per_second: u32,
    /// Counts below this are suppressed for partner keys.
    pub(crate) suppression_k: u64,
    /// Milliseconds between analytics refreshes from the change feed (new data shows in queries
    /// within about this long).
    pub(crate) refresh_millis: u64,
    /// Milliseconds an answer to a polled query may lag the newest data while its successor is
    /// computed in the background (0: always compute on the request path).
    pub(crate) answer_staleness_millis: u64,
    /// Where the analytics checkpoint is kept (the applied events in a compact file, so that a
    /// restart does not read every event through the database). Unset: `analytics.checkpoint`
    /// in `data_dir` on SQLite, none on PostgreSQL (replicas may share a folder); empty: none.
    pub(crate) analytics_checkpoint: Option<PathBuf>,
}

/// Limits on one `POST /api/v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct IngestSettings {
    /// Most events in one batch.
    pub(crate) max_events: usize,
    /// Largest request body, in bytes.
    pub(crate) max_body_bytes: usize,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// A value that must not appear in logs or debug output (it may hold a password).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Default for Settings {
    fn default() -> Self {
        let limits = nigrani_ingest::Limits::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            data_dir: PathBuf::from("data"),
            database_url: None,
            pool_size: 16,
            connect_timeout_secs: 5,
            workers: 0,
            shutdown_timeout_secs: 30,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            ingest: IngestSettings {
                max_events: limits.max_events,
                max_body_bytes: limits.max_body_bytes,
            },
            refresh_millis: 250,
            answer_staleness_millis: 1_000,
            analytics_checkpoint: None,
            admin_key: None,
            rate_limit_per_second: 200,
            suppression_k: 5,
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Settings::default().ingest
    }
}

/// Environment variables with the `NIGRANI_` prefix that are not settings (tests and tools use
/// them), so they are not read as settings.
const NOT_SETTINGS: &[&str] = &[
    "config",
    "test_postgres_url",
    "require_postgres",
    "bin",
    "test_log",
    "bench_postgres_url",
];

impl Settings {
    /// Reads the settings: defaults, then `file` (or `nigrani.toml` in the working folder, when it
    /// exists), then the environment.
    pub(crate) fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "the settings file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("nigrani.toml")),
        }
        figment = figment.merge(
            Env::prefixed("NIGRANI_")
                .split("__")
                .filter(|key| !NOT_SETTINGS.contains(&key.as_str())),
        );
        let settings: Settings = figment.extract().context("the settings are not valid")?;
        if let Some(url) = &settings.database_url {
            anyhow::ensure!(
                !url.expose().trim().is_empty(),
                "NIGRANI_DATABASE_URL is set but empty; unset it to use SQLite"
            );
        }
        anyhow::ensure!(
            settings.ingest.max_events > 0 && settings.ingest.max_body_bytes > 0,
            "ingest limits must be greater than 0"
        );
        Ok(settings)
    }

    /// Where the analytics checkpoint goes, if anywhere.
    pub(crate) fn analytics_checkpoint_path(&self) -> Option<PathBuf> {
        match &self.analytics_checkpoint {
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(path.clone()),
            None if self.database_url.is_none() => Some(self.data_dir.join("analytics.checkpoint")),
            None => None,
        }
    }

    /// The store's part of the settings.
    pub(crate) fn store(&self) -> nigrani_store::StoreConfig {
        nigrani_store::StoreConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.as_ref().map(|s| s.expose().to_owned()),
            pool_size: self.pool_size,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
        }
    }

    /// The ingest limits.
    pub(crate) fn limits(&self) -> nigrani_ingest::Limits {
        nigrani_ingest::Limits {
            max_events: self.ingest.max_events,
            max_body_bytes: self.ingest.max_body_bytes,
        }
    }

    /// The HTTP server's part of the settings.
    pub(crate) fn server(&self) -> nigrani_api::ServerConfig {
        nigrani_api::ServerConfig {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            limits: self.limits(),
            workers: self.workers,
            rate_limit_per_second: self.rate_limit_per_second,
            suppression_k: self.suppression_k,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret("postgres://u:hunter2@h/db".into());
        assert_eq!(format!("{secret:?}"), "[redacted]");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn files_and_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "listen = \"0.0.0.0:9000\"\n[ingest]\nmax_events = 10\n",
            )?;
            jail.set_env("NIGRANI_INGEST__MAX_BODY_BYTES", "2048");
            jail.set_env("NIGRANI_TEST_POSTGRES_URL", "ignored");
            let settings =
                Settings::load(Some(Path::new("custom.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.listen.port(), 9000);
            assert_eq!(settings.ingest.max_events, 10);
            assert_eq!(settings.ingest.max_body_bytes, 2048);
            assert_eq!(settings.data_dir, PathBuf::from("data"));
            Ok(())
        });
    }
}
