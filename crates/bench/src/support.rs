//! What the benchmarks share: the `nigrani serve` child process, throw-away PostgreSQL databases,
//! `psql`, resident memory from /proc and percentiles.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail, ensure};
use nigrani_store::StoreConfig;

/// The `nigrani` binary to benchmark: `given` (from `--nigrani` or `NIGRANI_BENCH_BIN`), else the one
/// cargo built next to this binary in the same target folder and profile.
pub(crate) fn nigrani_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this binary's folder")?
            .with_file_name(format!("nigrani{}", std::env::consts::EXE_SUFFIX)),
    };
    ensure!(
        path.is_file(),
        "there is no nigrani binary at {}: build it with this one (`cargo build --release -p \
         nigrani -p nigrani-bench`) or name it with --nigrani or NIGRANI_BENCH_BIN",
        path.display()
    );
    Ok(path)
}

/// The admin key the benchmark's servers are started with (their data is the benchmark's own).
pub(crate) const BENCH_KEY: &str = "nk_00be0c00_00000000000000000000000000000b0c";

/// A running `nigrani serve`, stopped with SIGTERM when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) address: String,
}

impl Server {
    /// Starts `nigrani serve` (the binary `nigrani`) on a free port with the bench key as admin
    /// and no rate limit; `env` adds settings.
    pub(crate) fn start(
        nigrani: &Path,
        config: &StoreConfig,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(nigrani);
        command
            .arg("serve")
            .env("NIGRANI_LISTEN", "127.0.0.1:0")
            .env("NIGRANI_LOG", "warn")
            .env("NIGRANI_ADMIN_KEY", BENCH_KEY)
            .env("NIGRANI_RATE_LIMIT_PER_SECOND", "1000000")
            .env("NIGRANI_DATA_DIR", &config.data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match &config.database_url {
            Some(url) => command.env("NIGRANI_DATABASE_URL", url),
            None => command.env_remove("NIGRANI_DATABASE_URL"),
        };
        let mut child = command.spawn().context("cannot start nigrani serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(address) = line.trim().strip_prefix("nigrani listening on ") else {
            let _ = child.kill();
            bail!("nigrani serve did not start (it printed `{}`)", line.trim());
        };
        Ok(Self {
            address: address.to_owned(),
            child,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A database created for one benchmark run, dropped afterwards.
pub(crate) struct BenchDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
    keep: bool,
}

impl BenchDatabase {
    /// The store settings of a nigrani on this database.
    pub(crate) fn store_config(&self) -> StoreConfig {
        StoreConfig {
            database_url: Some(self.url.clone()),
            ..StoreConfig::default()
        }
    }

    /// A fresh database for this run, dropped afterwards.
    pub(crate) fn create(admin_url: &str, label: &str) -> anyhow::Result<Self> {
        let name = format!("nigrani_bench_{label}_{}", std::process::id());
        psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Self::named(admin_url, &name, false)
    }

    /// A database kept across runs (created when missing), so that a large data set is loaded
    /// once. Returns whether it existed.
    pub(crate) fn reuse(admin_url: &str, name: &str) -> anyhow::Result<(Self, bool)> {
        let output = Command::new("psql")
            .args([
                admin_url,
                "-qAtc",
                &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
            ])
            .output()
            .context("cannot run psql (install the postgresql-client package)")?;
        let existed = String::from_utf8_lossy(&output.stdout).trim() == "1";
        if !existed {
            psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        }
        Ok((Self::named(admin_url, name, true)?, existed))
    }

    fn named(admin_url: &str, name: &str, keep: bool) -> anyhow::Result<Self> {
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) if base.len() > base.find("://").unwrap_or(0) + 3 => {
                format!("{base}/{name}")
            }
            _ => bail!(
                "the PostgreSQL URL must name a database, e.g. postgres://user:pw@host/postgres"
            ),
        };
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name: name.to_owned(),
            url,
            keep,
        })
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if !self.keep {
            let _ = psql(
                &self.admin_url,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        }
    }
}

pub(crate) fn psql(url: &str, command: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", command])
        .output()
        .context("cannot run psql (install the postgresql-client package)")?;
    ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Resident memory of a process, in KiB, from /proc (`VmRSS` now or `VmHWM`, the peak).
pub(crate) fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::{nigrani_binary, percentile};

    #[test]
    fn a_missing_nigrani_binary_is_an_error_that_says_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = nigrani_binary(Some(dir.path().join("nigrani"))).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cargo build --release -p nigrani"),
            "{error}"
        );
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&sorted, 0.5), 3.0);
        assert_eq!(percentile(&sorted, 0.99), 5.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
