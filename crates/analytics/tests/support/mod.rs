//! Demo programs in a throw-away SQLite store, shared by the integration tests.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![allow(dead_code, reason = "each test crate uses part of it")]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use nigrani_ingest::demo::{self, DemoConfig, DemoLearner, Generator};
use nigrani_store::{Store, StoreConfig};

/// A SQLite store in `dir` with a demo program's reference data and cohorts; returns its
/// `learners` learners (generated with `seed`, as of `as_of`), not yet stored.
pub(crate) async fn demo_program(
    dir: &std::path::Path,
    learners: usize,
    seed: u64,
    as_of: DateTime<Utc>,
) -> (Arc<dyn Store>, Vec<DemoLearner>) {
    let config = StoreConfig {
        data_dir: dir.to_owned(),
        database_url: None,
        pool_size: 2,
        connect_timeout: std::time::Duration::from_secs(5),
    };
    let (store, _) = nigrani_store::open(&config).await.unwrap();
    nigrani_ingest::seed::install_if_empty(&store)
        .await
        .unwrap();
    let generator = Generator::from_store(
        DemoConfig {
            learners,
            seed,
            as_of,
        },
        &store,
    )
    .await
    .unwrap();
    let learners = (0..learners).map(|i| generator.learner(i)).collect();
    (store, learners)
}

/// As [`demo_program`], with the learners on the roster; returns the program's events, not yet
/// ingested.
pub(crate) async fn demo_store(
    dir: &std::path::Path,
    learners: usize,
    seed: u64,
    as_of: DateTime<Utc>,
) -> (Arc<dyn Store>, Vec<serde_json::Value>) {
    let (store, learners) = demo_program(dir, learners, seed, as_of).await;
    demo::store_roster(&store, &learners).await.unwrap();
    let events = learners.into_iter().flat_map(|l| l.events).collect();
    (store, events)
}
