//! Numbered SQL migrations, one list per backend, and the runner both backends share. A
//! migration is applied once, in its own transaction, and recorded in `schema_migrations`;
//! files are never edited after release — a change is a new file.
//!
//! The runner decides what to apply and records it; a backend only runs SQL for it (an
//! [`Executor`]), which is also where it decides how a failure is reported.

use async_trait::async_trait;
use chrono::Utc;

use crate::StoreError;
use crate::sql;

/// One numbered migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations apply in increasing order.
    pub version: u32,
    /// A short name, from the file name.
    pub name: &'static str,
    /// The SQL to run.
    pub sql: &'static str,
}

/// Declares both backends' lists from one table of version, name and file, so that every
/// migration exists for both (each backend's file of the same name under `migrations/`).
macro_rules! migrations {
    ($($version:literal $name:literal $file:literal),+ $(,)?) => {
        /// The PostgreSQL migrations.
        pub const POSTGRES: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/postgres/", $file)),
        }),+];

        /// The SQLite migrations.
        pub const SQLITE: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/sqlite/", $file)),
        }),+];
    };
}

migrations! {
    1 "init" "0001_init.sql",
    2 "roster_version" "0002_roster_version.sql",
    3 "api_keys" "0003_api_keys.sql",
    4 "rejection_payloads" "0004_rejection_payloads.sql",
    5 "roster_log" "0005_roster_log.sql",
    6 "record_key_secret" "0006_record_key_secret.sql",
    7 "roster_log_restated" "0007_roster_log_restated.sql",
    8 "xapi_statements" "0008_xapi_statements.sql",
}

/// What the runner asks of a backend: to run SQL, on one connection.
#[async_trait]
pub(crate) trait Executor: Send {
    /// Runs `sql`, which takes no parameters and returns no rows.
    async fn execute(&mut self, sql: &'static str) -> Result<(), StoreError>;

    /// Runs `sql` and returns its one integer column.
    async fn versions(&mut self, sql: &'static str) -> Result<Vec<i64>, StoreError>;

    /// In one transaction: runs `migration.sql`, then `record` with `$1` the migration's
    /// version, `$2` its name and `$3` `applied_at`.
    async fn apply(
        &mut self,
        migration: Migration,
        record: &'static str,
        applied_at: String,
    ) -> Result<(), StoreError>;
}

/// Applies the migrations of `list` that `schema_migrations` does not record yet, in version
/// order, each in its own transaction; returns those applied now. A failure stops the run:
/// those applied before it stay applied.
pub(crate) async fn run(
    db: &mut impl Executor,
    list: &'static [Migration],
) -> Result<Vec<Migration>, StoreError> {
    db.execute(sql::CREATE_SCHEMA_MIGRATIONS).await?;
    let applied = db.versions(sql::APPLIED_MIGRATIONS).await?;
    let pending = pending(list, &applied);
    for migration in &pending {
        db.apply(*migration, sql::RECORD_MIGRATION, Utc::now().to_rfc3339())
            .await?;
    }
    Ok(pending)
}

/// The migrations of `list` whose versions are not among `applied`, in version order.
fn pending(list: &[Migration], applied: &[i64]) -> Vec<Migration> {
    let mut pending: Vec<Migration> = list
        .iter()
        .filter(|m| !applied.contains(&i64::from(m.version)))
        .copied()
        .collect();
    pending.sort_by_key(|m| m.version);
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(list: &[Migration]) -> Vec<u32> {
        list.iter().map(|m| m.version).collect()
    }

    #[test]
    fn pending_are_those_not_applied_in_version_order() {
        assert_eq!(versions(&pending(SQLITE, &[])), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(versions(&pending(SQLITE, &[1, 2, 4])), [3, 5, 6, 7, 8]);
        assert!(pending(POSTGRES, &[1, 2, 3, 4, 5, 6, 7, 8]).is_empty());
        let shuffled = [POSTGRES[3], POSTGRES[0], POSTGRES[2]];
        assert_eq!(versions(&pending(&shuffled, &[1])), [3, 4]);
    }

    #[test]
    fn versions_applied_that_the_list_does_not_know_are_left_alone() {
        assert_eq!(
            versions(&pending(SQLITE, &[1, 2, 3, 4, 5, 6, 7, 8, 99])),
            [] as [u32; 0]
        );
    }

    #[test]
    fn versions_increase_and_backends_agree() {
        for list in [POSTGRES, SQLITE] {
            for pair in list.windows(2) {
                assert!(pair[0].version < pair[1].version);
            }
        }
        let pg: Vec<_> = POSTGRES.iter().map(|m| (m.version, m.name)).collect();
        let lite: Vec<_> = SQLITE.iter().map(|m| (m.version, m.name)).collect();
        assert_eq!(pg, lite, "each migration exists for both backends");
    }
}
