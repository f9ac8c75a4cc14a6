//! Criterion benches of the functions every event or every read goes through, so that a change
//! that slows one of them shows as a regression between two `cargo bench -p nigrani-bench` runs:
//! - `split_body`: an NDJSON request body of 1,000 events cut into items (counted against the
//!   batch limit) and each read into a JSON value, as a batch reads them one at a time (ingest);
//! - `parse_event`: one JSON value validated and normalised into a `LearningEvent` (ingest);
//! - `content_hash`: the SHA-256 of an event's canonical JSON (idempotency check);
//! - `breakdown_from_cells`: a province × track × discipline breakdown answered from the cells
//!   the engine keeps current (every dashboard read of the latest data).
//!
//! The inputs are the demo program's events, so their shape is what course platforms send. The
//! peers and the whole-system figures are `nigrani-bench`'s subcommands, not these.

use std::collections::BTreeMap;

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nigrani_analytics::query::{breakdown_from_cells, cells, learner_frame};
use nigrani_analytics::record_key::RecordSecret;
use nigrani_analytics::state::{Roster, States};
use nigrani_analytics::{BreakdownQuery, Dimension, Metric};
use nigrani_ingest::demo::{DemoConfig, Generator};
use nigrani_ingest::native::{BodyFormat, Item, parse_event, split_body};
use nigrani_ingest::seed;
use serde_json::Value;

/// Learners in the program the breakdown reads: enough to fill most cells of the dimensions.
const LEARNERS: usize = 5_000;

/// Events of one ingest request (the bench and partners send batches of this size).
const BATCH: usize = 1_000;

fn demo_events(generator: &Generator, count: usize) -> Vec<Value> {
    (0..generator.learners())
        .flat_map(|i| generator.learner(i).events)
        .take(count)
        .collect()
}

fn ingest(c: &mut Criterion) {
    let generator = Generator::from_seed(DemoConfig {
        learners: BATCH / 10,
        seed: 7,
        as_of: Utc::now(),
    })
    .expect("the seed reference data parses");
    let events = demo_events(&generator, BATCH);
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let now = Utc::now();

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("split_body ndjson 1000 events", |b| {
        b.iter(|| {
            split_body(body.as_bytes(), BodyFormat::Ndjson, BATCH)
                .map(|items| items.into_iter().map(Item::into_value).count())
        })
    });
    group.finish();

    let event = events
        .iter()
        .find(|e| e.get("progress").is_some())
        .unwrap_or(&events[0])
        .clone();
    // parse_event takes its value by move: the clone is made outside the timed part.
    c.bench_function("parse_event", |b| {
        b.iter_batched(
            || event.clone(),
            |value| parse_event(value, now),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("content_hash", |b| {
        b.iter(|| nigrani_domain::event::content_hash(&event))
    });
}

fn breakdown(c: &mut Criterion) {
    let reference = seed::reference().expect("the seed reference data parses");
    let now = Utc::now();
    let generator = Generator::new(
        DemoConfig {
            learners: LEARNERS,
            seed: 42,
            as_of: now,
        },
        &reference.institutions,
        &reference.disciplines,
        &reference.plans,
    );
    let learners: Vec<_> = (0..LEARNERS)
        .filter_map(|i| generator.learner(i).roster)
        .collect();
    let roster = Roster::new(
        learners,
        reference.institutions.clone(),
        reference
            .disciplines
            .iter()
            .map(|d| d.code.clone())
            .collect(),
        generator.cohort_rows(),
        &reference.plans,
        RecordSecret::new("bench"),
    );
    // The learner state as the engine builds it from the change feed.
    let mut states = States::new(&roster);
    for i in 0..LEARNERS {
        let learner = generator.learner(i);
        let Some(row) = learner
            .roster
            .as_ref()
            .and_then(|l| roster.row(&l.learner_id))
        else {
            continue;
        };
        for value in learner.events {
            let Ok(event) = parse_event(value, now) else {
                continue;
            };
            let feed = nigrani_store::FeedEvent {
                seq: 0,
                learner_id: None,
                course_id: event.course_id,
                kind: event.kind,
                progress: event.progress,
                score: event.score,
                occurred_at: event.occurred_at,
            };
            states.apply(row, &States::effect(&roster, row, &feed));
        }
    }
    let frame = learner_frame(&roster, &states).expect("the learner frame builds");
    let cells = cells(&frame, i64::MAX).expect("the cells build");
    let query = BreakdownQuery {
        by: vec![Dimension::Province, Dimension::Track, Dimension::Discipline],
        filters: BTreeMap::new(),
        metrics: vec![
            Metric::Enrolled,
            Metric::Started,
            Metric::Completed,
            Metric::Certified,
            Metric::CompletionRate,
            Metric::AvgProgress,
        ],
        from: None,
        as_of: now,
        totals: false,
        period: None,
        latest: true,
    };
    assert!(nigrani_analytics::query::cells_answer(&query));
    c.bench_function(
        "breakdown_from_cells province × track × discipline",
        |b| b.iter(|| breakdown_from_cells(&cells, &roster, &query).expect("the breakdown runs")),
    );
}

criterion_group!(benches, ingest, breakdown);
criterion_main!(benches);
