//! `nigrani-bench analytics`: the analytics engine at scale.
//!
//! 0. Scale: the learner state of `--learners` demo learners (3 required courses each, ~30
//!    events per learner) built in memory straight from the generated events — no database — to
//!    measure its resident size, the learner frame's build time and query latency at full size;
//!    and the utility of partners' figures (their error against the exact ones, the share
//!    changed and suppressed, and the time disclosure control adds).
//!
//! Then on PostgreSQL, with `--store-learners` learners (loading millions of events through this
//! machine's disk takes hours, so the stored program is smaller):
//! 1. Loads the demo program into a database kept across runs, so the load happens once.
//! 2. Rebuild: builds the engine's state from the store; time and resident memory.
//! 3. Queries from the maintained state: province × track × discipline and institution × cohort,
//!    six metrics each; p50/p99 over repeated runs.
//! 4. Cold: the same two group-bys computed from the events — by nigrani (rebuild + query) and by
//!    DuckDB over the same events exported to Parquet (`duckdb_groupbys.py` in this crate).
//! 5. Freshness: events written at `--rate` per second while the engine follows the change feed;
//!    the time from acknowledgement to visible in a query, p50/p99.
//! 6. Roster change: `--roster-upsert` learners upserted while the engine follows — half of them
//!    moved to another institution, half new, each new one with events stored before it was on
//!    the roster — and the time from the upsert's commit to visible in the published state,
//!    without a rebuild; against the time of a rebuild of the same store, in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use nigrani_analytics::record_key::RecordSecret;
use nigrani_analytics::{BreakdownQuery, Dimension, Engine, Metric};
use nigrani_domain::event::content_hash;
use nigrani_domain::{EventKind, LearnerRef, LearningEvent};
use nigrani_ingest::demo::{self, DemoConfig, Generator};
use nigrani_ingest::roster;
use nigrani_ingest::{Ingestor, Limits, seed};
use nigrani_store::{Store, StoreConfig};

use crate::support::{BenchDatabase, memory_kib, percentile, psql};

#[derive(Debug, clap::Args)]
pub(crate) struct AnalyticsArgs {
    /// Learners of the in-memory scale run.
    #[arg(long, default_value_t = 1_000_000)]
    learners: usize,
    /// Learners of the program stored in PostgreSQL for the other runs.
    #[arg(long, default_value_t = 50_000)]
    store_learners: usize,
    /// PostgreSQL server (URL of a maintenance database such as `postgres`). The program is
    /// loaded into a database named after its size and kept for later runs.
    #[arg(
        long,
        env = "NIGRANI_BENCH_POSTGRES_URL",
        required_unless_present = "sqlite_dir"
    )]
    postgres_url: Option<String>,
    /// Instead of PostgreSQL, the SQLite folder of a program loaded before (by `nigrani demo`
    /// or `nigrani-bench api`, e.g. /var/tmp/nigrani-bench-api-1000000); the DuckDB export then needs
    /// the `sqlite3` command.
    #[arg(long, conflicts_with = "postgres_url")]
    sqlite_dir: Option<PathBuf>,
    /// Runs of each query from the maintained state.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Events per second written during the freshness run.
    #[arg(long, default_value_t = 5_000)]
    rate: usize,
    /// Seconds the freshness run lasts.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Learners in each roster upsert of the roster-change run.
    #[arg(long, default_value_t = 10_000)]
    roster_upsert: usize,
    /// Roster upserts measured.
    #[arg(long, default_value_t = 3)]
    roster_runs: usize,
    /// Python with the `duckdb` package, for the peer (skipped when it cannot import duckdb).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Folder for the Parquet export (a temporary one by default).
    #[arg(long)]
    export_dir: Option<PathBuf>,
}

const SIX_METRICS: [Metric; 6] = [
    Metric::Enrolled,
    Metric::Started,
    Metric::Completed,
    Metric::Certified,
    Metric::CompletionRate,
    Metric::AvgProgress,
];

fn query(by: Vec<Dimension>, as_of: DateTime<Utc>) -> BreakdownQuery {
    BreakdownQuery {
        by,
        filters: BTreeMap::new(),
        metrics: SIX_METRICS.to_vec(),
        from: None,
        as_of,
        totals: false,
        period: None,
        latest: true,
    }
}

fn self_rss_mib(field: &str) -> f64 {
    memory_kib(std::process::id(), field).unwrap_or(0) as f64 / 1024.0
}

pub(crate) async fn run(args: AnalyticsArgs) -> anyhow::Result<()> {
    scale(&args)?;
    let name = format!("nigrani_bench_analytics_{}", args.store_learners);
    let (config, source, _db) = match (&args.sqlite_dir, &args.postgres_url) {
        (Some(dir), _) => (
            StoreConfig {
                data_dir: dir.clone(),
                ..StoreConfig::default()
            },
            Export::Sqlite(dir.join("nigrani.sqlite3")),
            None,
        ),
        (None, Some(url)) => {
            let (db, existed) = BenchDatabase::reuse(url, &name)?;
            let config = db.store_config();
            let (store, _) = nigrani_store::open(&config).await?;
            if !existed || store.stats().await?.learners == 0 {
                load(&store, args.store_learners).await?;
            } else {
                eprintln!("reusing database {name}");
            }
            (config, Export::Postgres(db.url.clone()), Some(db))
        }
        (None, None) => anyhow::bail!("give --postgres-url or --sqlite-dir"),
    };
    let (store, _) = nigrani_store::open(&config).await?;
    let stats = store.stats().await?;
    ensure!(stats.learners > 0, "the store holds no program");
    let stats = store.stats().await?;
    let place = match &source {
        Export::Postgres(_) => format!("PostgreSQL database {name}"),
        Export::Sqlite(file) => format!("SQLite {}", file.display()),
    };
    println!(
        "program: {} learners, {} events ({place})",
        stats.learners, stats.events
    );

    // Rebuild, writing the analytics checkpoint as serve does on SQLite.
    let checkpoint = std::env::temp_dir().join(format!(
        "{name}{}.checkpoint",
        if args.sqlite_dir.is_some() {
            "_sqlite"
        } else {
            ""
        }
    ));
    let _ = std::fs::remove_file(&checkpoint);
    let options = || nigrani_analytics::EngineOptions {
        checkpoint: Some(checkpoint.clone()),
        ..Default::default()
    };
    let baseline = self_rss_mib("VmRSS:");
    let started = Instant::now();
    let engine = Engine::start_with(Arc::clone(&store), options()).await?;
    let rebuild = started.elapsed().as_secs_f64();
    let after = self_rss_mib("VmRSS:");
    println!(
        "rebuild: {rebuild:.1} s; resident memory {baseline:.0} MiB before, {after:.0} MiB after \
         (analytics state ≈ {:.0} MiB; peak {:.0} MiB)",
        after - baseline,
        self_rss_mib("VmHWM:")
    );

    // Queries from the maintained state.
    let now = Utc::now();
    let shapes = [
        (
            "province × track × discipline",
            vec![Dimension::Province, Dimension::Track, Dimension::Discipline],
        ),
        (
            "institution × cohort",
            vec![Dimension::Institution, Dimension::Cohort],
        ),
    ];
    for (label, by) in &shapes {
        let q = query(by.clone(), now);
        let mut times = Vec::with_capacity(args.queries);
        let mut rows = 0;
        for _ in 0..args.queries {
            let t = Instant::now();
            rows = engine.breakdown(&q).await?.rows.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "query {label} through the engine (answers cached per snapshot, so all but the \
             first run hit the cache): {rows} rows, p50 {:.2} ms, p99 {:.2} ms over {} runs",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            args.queries
        );
    }

    // Cold: nigrani from the events in its checkpoint file (the roster from the store) and from
    // the store alone; DuckDB from the events exported to Parquet. Each shape is computed
    // by an engine started for it, so nothing is shared between them.
    drop(engine);
    let mut cold = Vec::new();
    for (label, by) in &shapes {
        let mut times = Vec::new();
        for with_checkpoint in [true, false] {
            let started = Instant::now();
            let cold_engine = if with_checkpoint {
                Engine::start_with(Arc::clone(&store), options()).await?
            } else {
                Engine::start(Arc::clone(&store)).await?
            };
            cold_engine.breakdown(&query(by.clone(), now)).await?;
            times.push((started.elapsed().as_secs_f64(), cold_engine.started()));
        }
        cold.push((label, times));
    }
    let peer = duckdb_peer(&args, &source, now);
    let store_name = match &source {
        Export::Postgres(_) => "PostgreSQL",
        Export::Sqlite(_) => "SQLite",
    };
    for (i, (label, times)) in cold.iter().enumerate() {
        let ((checkpoint_s, from), (store_s, _)) = (times[0], times[1]);
        let theirs = peer.as_ref().ok().and_then(|p| p.get(i)).map(|(_, t)| *t);
        let ratio =
            |ours: f64| theirs.map_or("no DuckDB".to_owned(), |t| format!("{:.2}×", ours / t));
        println!(
            "cold {label}: nigrani {checkpoint_s:.3} s from its checkpoint ({} events from the \
             file, {} from {store_name}): {} DuckDB's time; {store_s:.2} s reading every event \
             from {store_name}: {}; DuckDB {} (from Parquet)",
            from.from_checkpoint,
            from.from_store,
            ratio(checkpoint_s),
            ratio(store_s),
            theirs.map_or("skipped".to_owned(), |t| format!("{t:.3} s")),
        );
    }
    if let Err(e) = &peer {
        println!("DuckDB peer skipped: {e:#}");
    }
    let cold_engine = Engine::start_with(Arc::clone(&store), options()).await?;

    freshness(&store, &cold_engine, &args).await?;
    roster_change(&store, &cold_engine, &args).await?;
    Ok(())
}

/// Upserts learners while the engine follows, and times how long until the state shows them.
async fn roster_change(
    store: &Arc<dyn Store>,
    engine: &Arc<Engine>,
    args: &AnalyticsArgs,
) -> anyhow::Result<()> {
    let stopping = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    engine.spawn_follower(Duration::from_millis(250), &tasks, stopping.clone());
    let institutions = store.institutions().await?;
    ensure!(institutions.len() > 1, "the program needs two institutions");
    let moved = args.roster_upsert / 2;
    let added = args.roster_upsert - moved;
    // Existing learners, a different slice each run, are moved to another institution.
    let mut existing: Vec<nigrani_domain::Learner> = Vec::new();
    while existing.len() < moved * args.roster_runs {
        let page = store
            .learners(nigrani_store::Page {
                after: existing.last().map(|l| l.learner_id.clone()),
                limit: 10_000,
            })
            .await?;
        if page.is_empty() {
            break;
        }
        existing.extend(page);
    }
    let mut visible_ms = Vec::new();
    let rebuilds_before = engine.rebuilds();
    for run in 0..args.roster_runs {
        let slice = existing.iter().skip(run * moved).take(moved).cloned();
        let mut rows: Vec<nigrani_domain::Learner> = slice
            .map(|mut l| {
                let other = institutions
                    .iter()
                    .find(|i| i.hec_id != l.institution)
                    .map(|i| i.hec_id.clone());
                if let Some(other) = other {
                    l.institution = other;
                }
                l
            })
            .collect();
        // New learners, each with three events stored before it is on the roster.
        let template = rows.first().cloned().context("no learners to move")?;
        let tag = format!("{}-{run}", std::process::id());
        let mut unmatched = Vec::with_capacity(added * 3);
        for i in 0..added {
            let learner = LearnerRef::parse(&format!("bench:new-{tag}-{i}"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for k in 0..3 {
                unmatched.push(fresh_event(
                    "roster",
                    (run * added * 3 + i * 3 + k) as u64,
                    learner.clone(),
                    k,
                ));
            }
            rows.push(nigrani_domain::Learner {
                learner_id: format!("bench-new-{tag}-{i:06}"),
                identities: vec![learner],
                ..template.clone()
            });
        }
        let writing = Instant::now();
        for chunk in unmatched.chunks(5_000) {
            store.write_batch(chunk, &[], Utc::now()).await?;
        }
        // Let the follower take in the events first: what is timed is the roster change.
        let written = store.stats().await?.last_seq;
        while engine.snapshot().last_seq < written {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let learners_before = engine.snapshot().roster.len();
        let (refreshes_before, _) = engine.refresh_stats();
        let written_in = writing.elapsed();
        let upserting = Instant::now();
        for chunk in rows.chunks(roster::CHUNK_ROWS) {
            store.upsert_learners(chunk).await?;
        }
        let upserted_in = upserting.elapsed();
        let committed = Instant::now();
        // As the roster route does once the upload is committed.
        engine.roster_changed();
        let version = store.roster_version().await?;
        let snapshot = loop {
            let snapshot = engine.snapshot();
            if snapshot.roster.len() >= learners_before + added {
                break snapshot;
            }
            ensure!(
                committed.elapsed() < Duration::from_secs(600),
                "the roster change did not show within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        visible_ms.push(committed.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            snapshot.roster.len() == learners_before + added,
            "expected {added} new learners"
        );
        let (refreshes_after, last) = engine.refresh_stats();
        eprintln!(
            "  roster run {run}: version {version}, {} refreshes, last took {} ms; the new \
             learners' events written and followed in {:.1} s, the upsert took {:.1} s",
            refreshes_after - refreshes_before,
            last.as_millis(),
            written_in.as_secs_f64(),
            upserted_in.as_secs_f64(),
        );
    }
    stopping.cancel();
    tasks.close();
    tasks.wait().await;
    let rebuilds = engine.rebuilds() - rebuilds_before;
    let started = Instant::now();
    let rebuilt = Engine::start(Arc::clone(store)).await?;
    let rebuild_s = started.elapsed().as_secs_f64();
    drop(rebuilt);
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        (lo, hi)
    };
    let (lo, hi) = range(&visible_ms);
    println!(
        "roster change at {} learners: upsert of {} ({moved} moved, {added} new with stored \
         events), commit to visible {lo:.0}–{hi:.0} ms over {} runs (the follower woken on \
         commit, as by the roster route; else every 250 ms); a rebuild of the same store takes \
         {rebuild_s:.1} s ({:.3}–{:.3}× of it); {rebuilds} refreshes looked like rebuilds",
        engine.snapshot().roster.len(),
        args.roster_upsert,
        visible_ms.len(),
        lo / 1000.0 / rebuild_s,
        hi / 1000.0 / rebuild_s,
    );
    Ok(())
}

/// Builds the state of `args.learners` generated learners in memory and queries it.
fn scale(args: &AnalyticsArgs) -> anyhow::Result<()> {
    use nigrani_analytics::query::{breakdown, learner_frame};
    use nigrani_analytics::state::{Roster, States};
    use nigrani_ingest::native::parse_event;

    let reference = seed::reference()?;
    let now = Utc::now();
    let generator = Generator::new(
        DemoConfig {
            learners: args.learners,
            seed: 42,
            as_of: now,
        },
        &reference.institutions,
        &reference.disciplines,
        &reference.plans,
    );
    let started = Instant::now();
    let learners: Vec<_> = (0..args.learners)
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
    let baseline = self_rss_mib("VmRSS:");
    let mut states = States::new(&roster);
    let mut events = 0usize;
    for i in 0..args.learners {
        let learner = generator.learner(i);
        let Some(row) = learner
            .roster
            .as_ref()
            .and_then(|l| roster.row(&l.learner_id))
        else {
            continue;
        };
        for value in learner.events {
            let event = parse_event(value, now).map_err(|r| anyhow::anyhow!(r.message))?;
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
            events += 1;
        }
    }
    let built = started.elapsed().as_secs_f64();
    let state_mib = self_rss_mib("VmRSS:") - baseline;
    let t = Instant::now();
    let frame = learner_frame(&roster, &states)?;
    let frame_ms = t.elapsed().as_secs_f64() * 1000.0;
    let with_frame = self_rss_mib("VmRSS:") - baseline;
    let counted = (states.heap_bytes() + roster.heap_bytes()) as f64 / 1024.0 / 1024.0;
    let frame_mib = frame.estimated_size() as f64 / 1024.0 / 1024.0;
    println!(
        "scale: {} learners, {events} events applied in {built:.0} s (generating included); \
         state + roster {counted:.0} MiB counted, learner frame {frame_mib:.0} MiB (built in \
         {frame_ms:.0} ms); resident growth {state_mib:.0} MiB, {with_frame:.0} MiB with the frame; \
         peak resident {:.0} MiB",
        roster.len(),
        self_rss_mib("VmHWM:")
    );
    let t = Instant::now();
    let cells = nigrani_analytics::query::cells(&frame, now.timestamp_micros())?;
    println!(
        "scale: {} cells (learners added up per combination of dimensions) built in {:.0} ms",
        cells.height(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    publish_after_a_batch(&roster, &mut states, now)?;
    for (label, by) in [
        (
            "province × track × discipline",
            vec![Dimension::Province, Dimension::Track, Dimension::Discipline],
        ),
        (
            "institution × cohort",
            vec![Dimension::Institution, Dimension::Cohort],
        ),
    ] {
        let q = query(by, now);
        let mut times = Vec::with_capacity(args.queries);
        for _ in 0..args.queries {
            let t = Instant::now();
            nigrani_analytics::query::breakdown_from_cells(&cells, &roster, &q)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "scale query {label} from the cells, computed each time (no cache): p50 {:.1} ms, \
             p99 {:.1} ms over {} runs",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            args.queries
        );
        let mut times = Vec::with_capacity(args.queries);
        let mut rows = 0;
        for _ in 0..args.queries {
            let t = Instant::now();
            rows = breakdown(&frame, &roster, &q, now.timestamp_micros())?
                .rows
                .len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "scale query {label} over every learner, computed each time (no cache): {rows} rows, p50 {:.1} ms, \
             p99 {:.1} ms over {} runs",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            args.queries
        );
    }
    utility(
        |q| nigrani_analytics::query::breakdown_from_cells(&cells, &roster, q),
        roster.len(),
        now,
        args.queries,
    )?;
    Ok(())
}

/// What partners' disclosure control costs: their figures against the exact ones (error, share
/// changed, share of rates and averages suppressed, rows left out) and the time it adds to a
/// breakdown from the cells.
fn utility(
    from_cells: impl Fn(
        &BreakdownQuery,
    )
        -> Result<nigrani_analytics::Breakdown, nigrani_analytics::query::QueryError>,
    learners: usize,
    now: DateTime<Utc>,
    runs: usize,
) -> anyhow::Result<()> {
    use nigrani_analytics::definitions::MetricKind;
    use nigrani_analytics::disclosure::{Audience, Disclosure, DisclosureSettings};
    let policy = Disclosure::new(DisclosureSettings::default()).map_err(anyhow::Error::msg)?;
    for (label, by) in [
        (
            "province × track",
            vec![Dimension::Province, Dimension::Track],
        ),
        (
            "institution × gender",
            vec![Dimension::Institution, Dimension::Gender],
        ),
        (
            "institution × cohort",
            vec![Dimension::Institution, Dimension::Cohort],
        ),
    ] {
        let q = BreakdownQuery {
            totals: true,
            ..query(by, now)
        };
        let (mut plain, mut disclosed, mut added) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..runs {
            let t = Instant::now();
            let exact = from_cells(&q)?;
            let computed = t.elapsed().as_secs_f64() * 1000.0;
            let t = Instant::now();
            let shown = policy.breakdown(Audience::Partner, exact.clone());
            let extra = t.elapsed().as_secs_f64() * 1000.0;
            plain.push(computed);
            added.push(extra);
            disclosed.push(computed + extra);
            last = Some((exact, shown.value().clone()));
        }
        let Some((exact, partner)) = last else {
            continue;
        };
        // Per count (a row's learners and each count metric): |published − true|.
        let (mut errors, mut changed) = (Vec::new(), 0usize);
        let (mut ratios, mut suppressed, mut ratio_errors) = (0usize, 0usize, Vec::new());
        let mut left_out = 0usize;
        for row in &exact.rows {
            let published = partner.rows.iter().find(|r| r.keys == row.keys);
            if published.is_none() {
                left_out += 1;
            }
            let mut count = |truth: f64, shown: f64| {
                errors.push((shown - truth).abs());
                changed += usize::from(shown != truth);
            };
            count(
                row.learners as f64,
                published.map_or(0.0, |r| r.learners as f64),
            );
            for (i, metric) in exact.metrics.iter().enumerate() {
                let truth = row.values[i];
                let shown = published.and_then(|r| r.values[i]);
                match metric.kind() {
                    MetricKind::Count => count(truth.unwrap_or(0.0), shown.unwrap_or(0.0)),
                    MetricKind::Ratio => {
                        let Some(truth) = truth else { continue };
                        ratios += 1;
                        match shown {
                            Some(shown) => ratio_errors.push((shown - truth).abs()),
                            None => suppressed += 1,
                        }
                    }
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        for times in [&mut plain, &mut disclosed, &mut added] {
            times.sort_by(f64::total_cmp);
        }
        println!(
            "utility {label} with totals, {} learners: counts — mean abs error {:.2}, max {:.0}, \
             {:.1}% changed; {:.1}% of {} rows left out (no learners once perturbed); rates and \
             averages — mean abs error {:.4}, max {:.4}, {:.1}% of {ratios} suppressed; \
             disclosure adds p50 {:.2} ms, p99 {:.2} ms (breakdown from the cells p99 {:.2} ms \
             exact, {:.2} ms for a partner)",
            learners,
            mean(&errors),
            max(&errors),
            100.0 * changed as f64 / errors.len().max(1) as f64,
            100.0 * left_out as f64 / exact.rows.len().max(1) as f64,
            exact.rows.len(),
            mean(&ratio_errors),
            max(&ratio_errors),
            100.0 * suppressed as f64 / ratios.max(1) as f64,
            percentile(&added, 0.5),
            percentile(&added, 0.99),
            percentile(&plain, 0.99),
            percentile(&disclosed, 0.99),
        );
    }
    Ok(())
}

/// What a publish costs once the frame is kept current: a batch of 1,250 events (a quarter
/// second of ingest at 5,000 events/s) for as many learners, then the new frame and cells.
fn publish_after_a_batch(
    roster: &nigrani_analytics::state::Roster,
    states: &mut nigrani_analytics::state::States,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    use nigrani_analytics::live::LiveFrame;
    let t = Instant::now();
    let mut live = LiveFrame::new(roster, states, true, now.timestamp_micros());
    let (frame, cells) = (live.frame()?, live.cells()?);
    let full_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop((frame, cells));
    let mut times = Vec::new();
    let mut rng = nigrani_ingest::demo::Rng::new(3);
    for round in 0..20 {
        let t = Instant::now();
        let mut touched: Vec<u32> = Vec::with_capacity(1_250);
        for _ in 0..1_250 {
            let row = (rng.next_u64() % roster.len() as u64) as usize;
            let effect = nigrani_analytics::state::Effect {
                course: Some(0),
                kind: nigrani_domain::EventKind::Progressed,
                progress: Some(rng.unit()),
                score: None,
                at: now.timestamp_micros() + round,
            };
            states.apply(row, &effect);
            touched.push(row as u32);
        }
        touched.sort_unstable();
        touched.dedup();
        live.update(roster, states, &touched, now.timestamp_micros() + round);
        let (frame, cells) = (live.frame()?, live.cells()?);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        drop((frame, cells));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "publish: frame and cells built whole in {full_ms:.0} ms; after a 1,250-event batch, kept \
         current: p50 {:.0} ms, max {:.0} ms over 20 batches",
        percentile(&times, 0.5),
        times.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

async fn load(store: &Arc<dyn Store>, learners: usize) -> anyhow::Result<()> {
    let generator = Generator::from_store(
        DemoConfig {
            learners,
            seed: 42,
            as_of: Utc::now(),
        },
        store,
    )
    .await?;
    let ingestor = Ingestor::new(Arc::clone(store), Limits::default());
    let bar = ProgressBar::new(learners as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "loading {elapsed_precise} [{bar:40}] {pos}/{len} learners ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    let started = Instant::now();
    let mut events = 0;
    for first in (0..learners).step_by(roster::CHUNK_ROWS) {
        let chunk: Vec<_> = (first..(first + roster::CHUNK_ROWS).min(learners))
            .map(|i| generator.learner(i))
            .collect();
        demo::store_roster(store, &chunk).await?;
        let batch: Vec<_> = chunk.into_iter().flat_map(|l| l.events).collect();
        events += batch.len();
        demo::ingest_events(&ingestor, &batch, Limits::default().max_events).await?;
        bar.inc(roster::CHUNK_ROWS.min(learners - first) as u64);
    }
    bar.finish_and_clear();
    println!(
        "loaded {learners} learners and {events} events in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Exports the events and roster, then runs the DuckDB script; returns its time per group-by.
/// Where the events for DuckDB are exported from.
enum Export {
    Postgres(String),
    /// The SQLite database file.
    Sqlite(PathBuf),
}

fn duckdb_peer(
    args: &AnalyticsArgs,
    source: &Export,
    as_of: DateTime<Utc>,
) -> anyhow::Result<Vec<(String, f64)>> {
    let probe = Command::new(&args.python)
        .args(["-c", "import duckdb"])
        .status();
    ensure!(
        probe.is_ok_and(|s| s.success()),
        "{} cannot import duckdb (pip install duckdb)",
        args.python
    );
    let temp = tempfile::tempdir()?;
    let dir = args
        .export_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let export = |name: &str, select: &str| -> anyhow::Result<()> {
        let file = dir.join(format!("{name}.csv"));
        match source {
            Export::Postgres(url) => psql(
                url,
                &format!(
                    "\\copy ({select}) TO '{}' WITH (FORMAT csv, HEADER)",
                    file.display()
                ),
            ),
            Export::Sqlite(db) => {
                let output = Command::new("sqlite3")
                    .args(["-readonly", "-header", "-csv"])
                    .arg(db)
                    .arg(select)
                    .stdout(std::fs::File::create(&file)?)
                    .output()
                    .context("cannot run sqlite3 (apt-get install sqlite3)")?;
                ensure!(
                    output.status.success(),
                    "sqlite3 failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                Ok(())
            }
        }
    };
    let (occurred_at, required) = match source {
        Export::Postgres(_) => (
            "e.occurred_at",
            "SELECT track, unnest(required_courses) AS course_id FROM track_plans",
        ),
        // SQLite keeps microseconds since the epoch and JSON arrays.
        Export::Sqlite(_) => (
            "strftime('%Y-%m-%dT%H:%M:%f', e.occurred_at / 1000000.0, 'unixepoch') || 'Z' \
             AS occurred_at",
            "SELECT track, value AS course_id FROM track_plans, json_each(required_courses)",
        ),
    };
    let started = Instant::now();
    export(
        "events",
        &format!(
            "SELECT i.learner_id, e.course_id, e.kind, e.progress, e.score, {occurred_at} \
             FROM events e JOIN learner_identities i USING (learner_ref)"
        ),
    )?;
    export(
        "learners",
        "SELECT l.learner_id, i.province, l.institution, l.discipline, l.track, l.cohort \
         FROM learners l JOIN institutions i ON i.hec_id = l.institution",
    )?;
    export("required", required)?;
    eprintln!(
        "exported for DuckDB in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/duckdb_groupbys.py");
    let output = Command::new(&args.python)
        .args([script, &dir.display().to_string(), &as_of.to_rfc3339()])
        .output()
        .context("cannot run the DuckDB script")?;
    ensure!(
        output.status.success(),
        "the DuckDB script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(["province_track_discipline", "institution_cohort"]
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                result[*k]["seconds"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect())
}

/// Writes events at the configured rate while the engine follows the feed, and measures how long
/// each acknowledged batch takes to show in the engine's snapshot.
async fn freshness(
    store: &Arc<dyn Store>,
    engine: &Arc<Engine>,
    args: &AnalyticsArgs,
) -> anyhow::Result<()> {
    let stopping = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    engine.spawn_follower(Duration::from_millis(250), &tasks, stopping.clone());
    let learners = store
        .learners(nigrani_store::Page {
            after: None,
            limit: 10_000,
        })
        .await?;
    ensure!(!learners.is_empty(), "no learners to write events for");
    let batches_per_second = 5;
    let per_batch = (args.rate / batches_per_second).max(1);
    let mut pending: Vec<(i64, Instant)> = Vec::new();
    let mut latencies = Vec::new();
    let run = Instant::now();
    let mut next = Instant::now();
    let mut n = 0u64;
    while run.elapsed() < Duration::from_secs(args.seconds) {
        if Instant::now() >= next {
            next += Duration::from_millis(1000 / batches_per_second as u64);
            let events: Vec<LearningEvent> = (0..per_batch)
                .map(|i| {
                    n += 1;
                    let learner = &learners[(n as usize) % learners.len()];
                    fresh_event("fresh", n, learner.identities[0].clone(), i)
                })
                .collect();
            let outcomes = store.write_batch(&events, &[], Utc::now()).await?;
            let acked = Instant::now();
            let last = outcomes
                .iter()
                .filter_map(|o| match o {
                    nigrani_store::EventWrite::Accepted { seq, .. } => Some(*seq),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            pending.push((last, acked));
        }
        let visible = engine.snapshot().last_seq;
        pending.retain(|(seq, acked)| {
            if *seq <= visible {
                latencies.push(acked.elapsed().as_secs_f64() * 1000.0);
                false
            } else {
                true
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stopping.cancel();
    tasks.close();
    tasks.wait().await;
    latencies.sort_by(f64::total_cmp);
    println!(
        "freshness at {} events/s for {} s: acknowledgement to visible p50 {:.0} ms, p99 {:.0} ms \
         ({} batches seen, {} still pending)",
        per_batch * batches_per_second,
        args.seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len(),
        pending.len()
    );
    Ok(())
}

fn fresh_event(run: &str, n: u64, learner: LearnerRef, i: usize) -> LearningEvent {
    let raw = serde_json::json!({ "bench": n, "i": i });
    LearningEvent {
        source: "bench".into(),
        // Each run of this process names its events apart: the same id twice is one event.
        event_id: format!("{run}-{}-{n}", std::process::id()),
        learner,
        course_id: "ai-fundamentals-for-educators".into(),
        kind: EventKind::Progressed,
        progress: Some(0.5),
        score: None,
        duration_seconds: None,
        occurred_at: Utc::now(),
        content_hash: content_hash(&raw),
        earlier_content_hash: None,
        raw: raw.to_string(),
    }
}
