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
#[serde(default, deny_unknown_fields)]
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
    /// What partner keys see of the figures (the cell key method; see the analytics crate's
    /// `disclosure` module).
    pub(crate) disclosure: nigrani_analytics::disclosure::DisclosureSettings,
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
    /// The Coursera pull connector: unset, no pull runs. Run it on one replica only (each run
    /// is idempotent, but two replicas would read every page twice).
    pub(crate) coursera: Option<CourseraSettings>,
}

/// Where and how often to pull Coursera's enrollment reports (one connector per program).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CourseraSettings {
    /// The organisation's id at Coursera (the enterprise API's `orgId`).
    pub(crate) org_id: String,
    /// The app's API key (OAuth2 client id).
    pub(crate) client_id: String,
    /// The app's secret (OAuth2 client secret).
    pub(crate) client_secret: Secret,
    /// The programs whose reports are pulled, by Coursera program id.
    pub(crate) programs: Vec<String>,
    /// Minutes between the starts of two runs of a program's pull (the report lags up to a day
    /// or two, so a few times a day is plenty). Default 360.
    #[serde(default = "CourseraSettings::default_every_minutes")]
    pub(crate) every_minutes: u64,
    /// Rows per page. Default 100.
    #[serde(default = "CourseraSettings::default_page_size")]
    pub(crate) page_size: u64,
    /// Override of the API base (default: Coursera's, for `org_id`).
    #[serde(default)]
    pub(crate) api_base: Option<String>,
    /// Override of the OAuth2 token endpoint (default: Coursera's).
    #[serde(default)]
    pub(crate) token_url: Option<String>,
}

impl CourseraSettings {
    fn default_every_minutes() -> u64 {
        360
    }

    fn default_page_size() -> u64 {
        100
    }

    /// The API client's configuration.
    pub(crate) fn client_config(&self) -> nigrani_ingest::coursera::ClientConfig {
        let mut config = nigrani_ingest::coursera::ClientConfig::coursera(
            &self.org_id,
            &self.client_id,
            self.client_secret.expose(),
        );
        config.page_size = self.page_size;
        if let Some(base) = &self.api_base {
            config.api_base.clone_from(base);
        }
        if let Some(url) = &self.token_url {
            config.token_url.clone_from(url);
        }
        config
    }
}

/// Limits on one `POST /api/v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct IngestSettings {
    /// Most events in one batch.
    pub(crate) max_events: usize,
    /// Largest request body, in bytes.
    pub(crate) max_body_bytes: usize,
    /// Largest single event, in bytes of its text; a larger one is refused alone.
    pub(crate) max_event_bytes: usize,
    /// Seconds every request body gets before `min_body_bytes_per_second` counts.
    pub(crate) body_grace_secs: u64,
    /// Bytes a second a request body must average after the grace period, or it ends with 408.
    pub(crate) min_body_bytes_per_second: u64,
    /// Days rejections are kept; older ones are deleted once an hour (0: kept for ever).
    pub(crate) rejection_retention_days: u32,
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
                max_event_bytes: limits.max_event_bytes,
                body_grace_secs: nigrani_api::BodyRate::default().grace.as_secs(),
                min_body_bytes_per_second: nigrani_api::BodyRate::default().min_bytes_per_second,
                rejection_retention_days: 90,
            },
            refresh_millis: 250,
            answer_staleness_millis: 1_000,
            analytics_checkpoint: None,
            coursera: None,
            admin_key: None,
            rate_limit_per_second: 200,
            disclosure: Default::default(),
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Settings::default().ingest
    }
}

/// Environment variables with the `NIGRANI_` prefix that are not settings: the settings file's
/// path, and those of tests and benchmarks, which have prefixes of their own (`NIGRANI_TEST_*`,
/// `NIGRANI_BENCH_*`). Any other `NIGRANI_*` variable must name a setting, or the start fails.
fn is_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key != "config" && !key.starts_with("test_") && !key.starts_with("bench_")
}

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
                .filter(|key| is_setting(key.as_str())),
        );
        let settings: Settings = figment.extract().context("the settings are not valid")?;
        if let Some(url) = &settings.database_url {
            anyhow::ensure!(
                !url.expose().trim().is_empty(),
                "NIGRANI_DATABASE_URL is set but empty; unset it to use SQLite"
            );
        }
        anyhow::ensure!(
            settings.ingest.max_events > 0
                && settings.ingest.max_body_bytes > 0
                && settings.ingest.max_event_bytes > 0
                && settings.ingest.min_body_bytes_per_second > 0,
            "ingest limits must be greater than 0"
        );
        anyhow::ensure!(
            settings.ingest.body_grace_secs <= 3_600,
            "ingest.body_grace_secs must be at most 3600 (an hour), got {}",
            settings.ingest.body_grace_secs
        );
        anyhow::ensure!(
            settings.ingest.rejection_retention_days <= 36_500,
            "ingest.rejection_retention_days must be at most 36500 (a century; 0 keeps them for \
             ever), got {}",
            settings.ingest.rejection_retention_days
        );
        nigrani_analytics::disclosure::Disclosure::new(settings.disclosure)
            .map_err(|e| anyhow::anyhow!("disclosure: {e}"))?;
        if let Some(coursera) = &settings.coursera {
            anyhow::ensure!(
                !coursera.programs.is_empty(),
                "coursera.programs is empty: name the programs to pull, or leave [coursera] out"
            );
            anyhow::ensure!(
                (1..=10_080).contains(&coursera.every_minutes),
                "coursera.every_minutes must be 1 to 10080 (a week), got {}",
                coursera.every_minutes
            );
            anyhow::ensure!(
                (1..=10_000).contains(&coursera.page_size),
                "coursera.page_size must be 1 to 10000, got {}",
                coursera.page_size
            );
            nigrani_ingest::coursera::Client::new(coursera.client_config())
                .map_err(|e| anyhow::anyhow!("coursera: {e}"))?;
        }
        tracing_subscriber::EnvFilter::try_new(&settings.log).map_err(|e| {
            anyhow::anyhow!("`log` ({:?}) is not a valid log filter: {e}", settings.log)
        })?;
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
            max_event_bytes: self.ingest.max_event_bytes,
        }
    }

    /// The HTTP server's part of the settings.
    pub(crate) fn server(&self) -> anyhow::Result<nigrani_api::ServerConfig> {
        Ok(nigrani_api::ServerConfig {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            limits: self.limits(),
            workers: self.workers,
            rate_limit_per_second: self.rate_limit_per_second,
            disclosure: nigrani_analytics::disclosure::Disclosure::new(self.disclosure)
                .map_err(|e| anyhow::anyhow!("disclosure: {e}"))?,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            clock: nigrani_domain::clock::system(),
            body_rate: nigrani_api::BodyRate {
                grace: Duration::from_secs(self.ingest.body_grace_secs),
                min_bytes_per_second: self.ingest.min_body_bytes_per_second,
            },
        })
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

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn disclosure_settings_are_read_and_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("nigrani.toml", "[disclosure]\nk = 10\nmax_noise = 12\n")?;
            jail.set_env("NIGRANI_DISCLOSURE__MIN_BASE", "30");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.disclosure.k, 10);
            assert_eq!(settings.disclosure.max_noise, 12);
            assert_eq!(settings.disclosure.min_base, 30);
            assert_eq!(settings.disclosure.spread, 2.0);
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("NIGRANI_DISCLOSURE__MAX_NOISE", "2");
            let error = Settings::load(None).map(|_| ()).unwrap_err();
            assert!(format!("{error:#}").contains("max_noise"), "{error:#}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn a_misspelt_setting_fails_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("NIGRANI_LISTN", "0.0.0.0:9000");
            let error = Settings::load(None).map(|_| ()).unwrap_err();
            assert!(format!("{error:#}").contains("listn"), "{error:#}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("NIGRANI_INGEST__MAX_EVENT", "10");
            let error = Settings::load(None).map(|_| ()).unwrap_err();
            assert!(format!("{error:#}").contains("max_event"), "{error:#}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("nigrani.toml", "[ingest]\nmax_evnts = 10\n")?;
            let error = Settings::load(None).map(|_| ()).unwrap_err();
            assert!(format!("{error:#}").contains("max_evnts"), "{error:#}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn an_invalid_log_filter_fails() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("NIGRANI_LOG", "nigrani_api=loud");
            let error = Settings::load(None).map(|_| ()).unwrap_err();
            assert!(format!("{error:#}").contains("log filter"), "{error:#}");
            Ok(())
        });
    }
}
