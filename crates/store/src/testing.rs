//! Throw-away PostgreSQL databases for tests.
//!
//! Tests that need PostgreSQL read the server's URL from `NIGRANI_TEST_POSTGRES_URL` (for example
//! `postgres://postgres:secret@127.0.0.1:5432/postgres`), create a database of their own and drop
//! it when done. Without the variable they are skipped — unless `NIGRANI_TEST_REQUIRE_POSTGRES=1` is set
//! (as CI does), in which case they fail.
//!
//! A skipped test still passes, so its skip must be seen: the `SKIPPED` line is written straight
//! to the process's stderr. libtest captures only what the `print!`/`eprint!` macros write and
//! shows it for failed tests alone, so an `eprintln!` here would vanish from a normal
//! `cargo test` run; a direct write to the stderr handle is not captured and shows in every run.

use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

/// The environment variable naming the PostgreSQL server for tests.
pub const URL_VAR: &str = "NIGRANI_TEST_POSTGRES_URL";
/// Set to `1` to make PostgreSQL tests fail rather than skip when no server is configured.
pub const REQUIRE_VAR: &str = "NIGRANI_TEST_REQUIRE_POSTGRES";

/// A database created for one test, dropped when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database, or returns `None` when PostgreSQL tests are not configured
    /// (and not required). `label` ends up in the database name, to tell tests apart.
    pub fn create(label: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(URL_VAR) else {
            if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                panic!("{REQUIRE_VAR}=1 but {URL_VAR} is not set");
            }
            // Best effort: a note that cannot be written is no reason to fail the test.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED: the PostgreSQL part of `{label}` did not run: set {URL_VAR} \
                 (e.g. postgres://postgres:secret@127.0.0.1:5432/postgres); {REQUIRE_VAR}=1 \
                 makes this a failure"
            );
            return None;
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(24)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!(
            "nigrani_test_{label}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_admin(&admin_url, &format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("cannot create test database {name} via {URL_VAR}: {e}"));
        tokio_postgres::Config::from_str(&admin_url)
            .unwrap_or_else(|e| panic!("{URL_VAR} is not a valid URL: {e}"));
        let url = url_with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = run_admin(&self.admin_url, &sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Replaces the database name in a `postgres://` URL.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Runs one statement on the maintenance database, on a runtime of its own so it works from
/// synchronous tests, async tests and `Drop` alike.
fn run_admin(url: &str, sql: &str) -> Result<(), String> {
    let url = url.to_owned();
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, NoTls)
                .await
                .map_err(|e| describe(&e))?;
            let driver = tokio::spawn(connection);
            client.batch_execute(&sql).await.map_err(|e| describe(&e))?;
            drop(client);
            let _ = driver.await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_owned())?
}

/// The server's own message where there is one ("password authentication failed …").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::url_with_database;

    #[test]
    fn database_name_is_replaced_in_urls() {
        assert_eq!(
            url_with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
