//! Numbered SQL migrations, one list per backend. A migration is applied once, in its own
//! transaction, and recorded in `schema_migrations`; files are never edited after release — a
//! change is a new file.

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

/// The PostgreSQL migrations.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "roster_version",
        sql: include_str!("../migrations/postgres/0002_roster_version.sql"),
    },
    Migration {
        version: 3,
        name: "api_keys",
        sql: include_str!("../migrations/postgres/0003_api_keys.sql"),
    },
    Migration {
        version: 4,
        name: "rejection_payloads",
        sql: include_str!("../migrations/postgres/0004_rejection_payloads.sql"),
    },
    Migration {
        version: 5,
        name: "roster_log",
        sql: include_str!("../migrations/postgres/0005_roster_log.sql"),
    },
];

/// The SQLite migrations.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "roster_version",
        sql: include_str!("../migrations/sqlite/0002_roster_version.sql"),
    },
    Migration {
        version: 3,
        name: "api_keys",
        sql: include_str!("../migrations/sqlite/0003_api_keys.sql"),
    },
    Migration {
        version: 4,
        name: "rejection_payloads",
        sql: include_str!("../migrations/sqlite/0004_rejection_payloads.sql"),
    },
    Migration {
        version: 5,
        name: "roster_log",
        sql: include_str!("../migrations/sqlite/0005_roster_log.sql"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

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
