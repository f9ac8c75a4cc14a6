//! `nigrani-bench ingest` starts the real `nigrani serve` as a child process on each backend, streams
//! demo events to `POST /api/v1/events` from several client threads on loopback, and samples the
//! server's resident memory. Its peer is `psql \copy` of the same normalised rows into a table of
//! the same shape (the real `events` table, created by nigrani's migrations in a fresh database).
//!
//! With `--xapi`, the same events also go as xAPI statements to `POST /xapi/statements` (see
//! [`crate::statements`]) on PostgreSQL, in batches of 100 and 1,000, each next to the native
//! endpoint at the same batch size in the same run, every run on a fresh database.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;
use chrono::Utc;
use nigrani_ingest::demo::{DemoConfig, Generator};
use nigrani_ingest::native::parse_event;
use nigrani_ingest::roster::{self, Rows};
use nigrani_ingest::seed;
use nigrani_store::StoreConfig;
use nigrani_store::adapters::CourseMapping;
use serde_json::Value;

use crate::statements::{course_iri, statement_of};
use crate::support::{BENCH_KEY, BenchDatabase, Server, memory_kib, percentile, psql};

#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// Events to send.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Concurrent client threads (they share the machine with the server).
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// PostgreSQL server (URL of a maintenance database such as `postgres`) for the PostgreSQL
    /// run and the COPY peer; databases are created for the run and dropped after it.
    #[arg(long, env = "NIGRANI_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Skip the SQLite run.
    #[arg(long)]
    skip_sqlite: bool,
    /// Also send the events as xAPI statements (PostgreSQL only), next to the native endpoint,
    /// at each of `--xapi-batches`.
    #[arg(long)]
    xapi: bool,
    /// Batch sizes of the xAPI comparison.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    xapi_batches: Vec<usize>,
}

/// An endpoint fed by a run: where, how, and how its answer counts what was stored.
struct Feed<'a> {
    path: &'a str,
    content_type: &'a str,
    /// The `Authorization` header.
    authorization: String,
    bodies: &'a [String],
    /// Items stored, as the answer tells.
    stored: fn(&Value) -> u64,
}

/// Events the native answer says were stored (accepted, or kept for a learner to come).
fn native_stored(report: &Value) -> u64 {
    let counts = &report["counts"];
    counts["accepted"].as_u64().unwrap_or(0) + counts["unmatched"].as_u64().unwrap_or(0)
}

/// Statements the xAPI answer (the ids, in order) says were stored.
fn statements_stored(ids: &Value) -> u64 {
    ids.as_array().map_or(0, |ids| ids.len() as u64)
}

impl<'a> Feed<'a> {
    fn native(bodies: &'a [String]) -> Self {
        Feed {
            path: "/api/v1/events",
            content_type: "application/x-ndjson",
            authorization: format!("Bearer {BENCH_KEY}"),
            bodies,
            stored: native_stored,
        }
    }
}

/// The generated workload: roster and events, the events as NDJSON request bodies.
struct Workload {
    cohorts: Vec<nigrani_domain::Cohort>,
    learners: Vec<nigrani_domain::Learner>,
    events: Vec<Value>,
    bodies: Vec<String>,
}

fn workload(events: usize, batch: usize) -> anyhow::Result<Workload> {
    let learners_needed = events / 15 + 1;
    let generator = Generator::from_seed(DemoConfig {
        learners: learners_needed,
        seed: 7,
        as_of: Utc::now(),
    })?;
    let mut out = Workload {
        cohorts: generator.cohort_rows(),
        learners: Vec::new(),
        events: Vec::with_capacity(events),
        bodies: Vec::new(),
    };
    let mut index = 0;
    while out.events.len() < events {
        let learner = generator.learner(index);
        out.learners.extend(learner.roster);
        out.events.extend(learner.events);
        index += 1;
    }
    out.events.truncate(events);
    out.bodies = native_bodies(&out.events, batch);
    Ok(out)
}

/// The events as NDJSON bodies of `batch` events.
fn native_bodies(events: &[Value], batch: usize) -> Vec<String> {
    events
        .chunks(batch)
        .map(|chunk| {
            let mut body = String::new();
            for event in chunk {
                body.push_str(&event.to_string());
                body.push('\n');
            }
            body
        })
        .collect()
}

/// The events as xAPI statements, in JSON array bodies of `batch` statements.
fn statement_bodies(events: &[Value], batch: usize, run: u32) -> Vec<String> {
    events
        .chunks(batch)
        .enumerate()
        .map(|(chunk_index, chunk)| {
            let statements: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, event)| statement_of(event, run, chunk_index * batch + i))
                .collect();
            Value::Array(statements).to_string()
        })
        .collect()
}

/// What one run measured.
struct Measured {
    label: String,
    events: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mib: Option<f64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

pub(crate) async fn run(args: IngestArgs, nigrani: &std::path::Path) -> anyhow::Result<()> {
    ensure!(
        args.events > 0 && args.batch > 0 && args.clients > 0,
        "counts must be positive"
    );
    ensure!(
        args.postgres_url.is_some() || !args.skip_sqlite,
        "nothing to run: give --postgres-url (or NIGRANI_BENCH_POSTGRES_URL) or drop --skip-sqlite"
    );
    eprintln!("generating {} demo events…", args.events);
    let work = workload(args.events, args.batch)?;
    eprintln!(
        "{} events for {} learners, in {} requests of up to {} events, {} clients",
        work.events.len(),
        work.learners.len(),
        work.bodies.len(),
        args.batch,
        args.clients
    );
    let mut results = Vec::new();
    if let Some(admin_url) = &args.postgres_url {
        let db = BenchDatabase::create(admin_url, "ingest")?;
        let config = db.store_config();
        load_roster(&config, &work).await?;
        results.push(serve_and_load(
            nigrani,
            "nigrani → PostgreSQL",
            &config,
            &Feed::native(&work.bodies),
            work.events.len(),
            args.clients,
        )?);
        drop(db);

        let peer = BenchDatabase::create(admin_url, "copy")?;
        let peer_config = peer.store_config();
        nigrani_store::open(&peer_config).await?;
        results.push(copy_peer(&peer.url, &work)?);
    }
    if let (true, Some(admin_url)) = (args.xapi, &args.postgres_url) {
        for (run, &batch) in args.xapi_batches.iter().enumerate() {
            ensure!(batch > 0, "xAPI batch sizes must be positive");
            let native = native_bodies(&work.events, batch);
            let db = BenchDatabase::create(admin_url, "native")?;
            let config = db.store_config();
            load_roster(&config, &work).await?;
            results.push(serve_and_load(
                nigrani,
                &format!("native, batch {batch}"),
                &config,
                &Feed::native(&native),
                work.events.len(),
                args.clients,
            )?);
            drop(db);

            let statements = statement_bodies(&work.events, batch, run as u32 + 1);
            let db = BenchDatabase::create(admin_url, "xapi")?;
            let config = db.store_config();
            load_roster(&config, &work).await?;
            map_courses(&config, &work).await?;
            let key = ingest_key(nigrani, &config)?;
            results.push(serve_and_load(
                nigrani,
                &format!("xAPI, batch {batch}"),
                &config,
                &Feed {
                    path: "/xapi/statements",
                    content_type: "application/json",
                    authorization: format!("Bearer {key}"),
                    bodies: &statements,
                    stored: statements_stored,
                },
                work.events.len(),
                args.clients,
            )?);
        }
    }
    if !args.skip_sqlite {
        let dir = tempfile::tempdir()?;
        let config = StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..StoreConfig::default()
        };
        load_roster(&config, &work).await?;
        results.push(serve_and_load(
            nigrani,
            "nigrani → SQLite",
            &config,
            &Feed::native(&work.bodies),
            work.events.len(),
            args.clients,
        )?);
    }

    println!();
    println!(
        "{:<24} {:>9} {:>9} {:>11} {:>9} {:>9} {:>13}",
        "run", "events", "seconds", "events/s", "p50 ms", "p99 ms", "peak RSS MiB"
    );
    for r in &results {
        println!(
            "{:<24} {:>9} {:>9.2} {:>11.0} {:>9} {:>9} {:>13}",
            r.label,
            r.events,
            r.seconds,
            r.rate(),
            fmt_ms(r.p50_ms),
            fmt_ms(r.p99_ms),
            r.peak_rss_mib.map_or("-".to_owned(), |m| format!("{m:.1}"))
        );
    }
    let find = |label: &str| results.iter().find(|r| r.label == label);
    if let (Some(http), Some(copy)) = (find("nigrani → PostgreSQL"), find("psql \\copy (peer)")) {
        println!(
            "\nPostgreSQL ingest over HTTP runs at {:.2}× the rate of psql \\copy of the same rows (target ≥ 0.8×)",
            http.rate() / copy.rate()
        );
    }
    if let Some(copy) = find("psql \\copy (peer)") {
        for batch in &args.xapi_batches {
            if let (Some(native), Some(xapi)) = (
                find(&format!("native, batch {batch}")),
                find(&format!("xAPI, batch {batch}")),
            ) {
                println!(
                    "batch {batch}: xAPI at {:.2}× native (target ≥ 0.7×); native at {:.2}×, xAPI at {:.2}× psql \\copy (target ≥ 0.8×)",
                    xapi.rate() / native.rate(),
                    native.rate() / copy.rate(),
                    xapi.rate() / copy.rate()
                );
            }
        }
    }
    Ok(())
}

/// Maps each course's platform IRI (as [`statement_of`] writes it) to the course.
async fn map_courses(config: &StoreConfig, work: &Workload) -> anyhow::Result<()> {
    let (store, _) = nigrani_store::open(config).await?;
    let mut courses: Vec<&str> = work
        .events
        .iter()
        .filter_map(|e| e["course_id"].as_str())
        .collect();
    courses.sort_unstable();
    courses.dedup();
    let rows: Vec<CourseMapping> = courses
        .into_iter()
        .map(|course| CourseMapping {
            source: "coursera".to_owned(),
            platform_course_id: course_iri(course),
            course_id: course.to_owned(),
        })
        .collect();
    store.upsert_course_mappings(&rows).await?;
    Ok(())
}

/// An ingest key of source `coursera`, made with `nigrani keys create` on the run's database.
fn ingest_key(nigrani: &std::path::Path, config: &StoreConfig) -> anyhow::Result<String> {
    let mut command = std::process::Command::new(nigrani);
    command
        .args([
            "keys",
            "create",
            "--role",
            "ingest",
            "--name",
            "bench-lrs",
            "--source",
            "coursera",
        ])
        .env("NIGRANI_LOG", "error")
        .env("NIGRANI_DATA_DIR", &config.data_dir);
    match &config.database_url {
        Some(url) => command.env("NIGRANI_DATABASE_URL", url),
        None => command.env_remove("NIGRANI_DATABASE_URL"),
    };
    let output = command.output()?;
    ensure!(
        output.status.success(),
        "nigrani keys create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .find(|word| word.starts_with("nk_"))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("nigrani keys create printed no key"))
}

fn fmt_ms(ms: f64) -> String {
    if ms.is_nan() {
        "-".to_owned()
    } else {
        format!("{ms:.1}")
    }
}

async fn load_roster(config: &StoreConfig, work: &Workload) -> anyhow::Result<()> {
    let (store, _) = nigrani_store::open(config).await?;
    seed::install_if_empty(&store).await?;
    roster::apply(&store, &Rows::Cohorts(work.cohorts.clone())).await?;
    roster::apply(&store, &Rows::Learners(work.learners.clone())).await?;
    Ok(())
}

fn serve_and_load(
    nigrani: &std::path::Path,
    label: &str,
    config: &StoreConfig,
    feed: &Feed<'_>,
    expected: usize,
    clients: usize,
) -> anyhow::Result<Measured> {
    let server = Server::start(nigrani, config, &[])?;
    let url = format!("{}{}", server.address, feed.path);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let latencies = Mutex::new(Vec::<f64>::with_capacity(feed.bodies.len()));
    let stored = AtomicU64::new(0);
    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak_rss, pid) = (Arc::clone(&done), Arc::clone(&peak_rss), server.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = memory_kib(pid, "VmRSS:") {
                    peak_rss.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = feed.bodies.get(i) else {
                        break;
                    };
                    let sent = Instant::now();
                    let result = agent
                        .post(&url)
                        .header("Content-Type", feed.content_type)
                        .header("Authorization", &feed.authorization)
                        .header("X-Experience-API-Version", "1.0.3")
                        .send(body.as_str());
                    let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
                    let outcome = result.map_err(|e| e.to_string()).and_then(|mut response| {
                        let status = response.status();
                        let text = response
                            .body_mut()
                            .read_to_string()
                            .map_err(|e| e.to_string())?;
                        if !status.is_success() {
                            return Err(format!("{status}: {text}"));
                        }
                        let answer: Value =
                            serde_json::from_str(&text).map_err(|e| e.to_string())?;
                        Ok((feed.stored)(&answer))
                    });
                    match outcome {
                        Ok(n) => {
                            stored.fetch_add(n, Ordering::Relaxed);
                            if let Ok(mut l) = latencies.lock() {
                                l.push(elapsed);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failures.lock() {
                                f.push(e);
                            }
                        }
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak = memory_kib(server.pid(), "VmHWM:")
        .unwrap_or(0)
        .max(peak_rss.load(Ordering::Relaxed));
    drop(server);
    let failures = failures.into_inner().unwrap_or_default();
    ensure!(
        failures.is_empty(),
        "{label}: {} request(s) failed; first: {}",
        failures.len(),
        failures[0]
    );
    let stored = stored.into_inner() as usize;
    ensure!(
        stored == expected,
        "{label}: {stored} of {expected} were stored"
    );
    let mut latencies = latencies.into_inner().unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    Ok(Measured {
        label: label.to_owned(),
        events: stored,
        seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        peak_rss_mib: (peak > 0).then(|| peak as f64 / 1024.0),
    })
}

/// `psql \copy` of the same rows, normalised as nigrani stores them, into the `events` table of
/// a fresh nigrani database.
fn copy_peer(url: &str, work: &Workload) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.csv");
    let now = Utc::now();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for value in &work.events {
            let e = parse_event(value.clone(), now)
                .map_err(|r| anyhow::anyhow!("demo event refused: {}", r.message))?;
            let fields = [
                csv_field(&e.source),
                csv_field(&e.event_id),
                csv_field(e.learner.as_str()),
                csv_field(&e.course_id),
                csv_field(e.kind.as_str()),
                e.progress.map(|p| p.to_string()).unwrap_or_default(),
                e.score.map(|s| s.to_string()).unwrap_or_default(),
                e.duration_seconds
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                e.occurred_at.to_rfc3339(),
                now.to_rfc3339(),
                csv_field(&e.content_hash),
                csv_field(&e.raw),
            ];
            writeln!(out, "{}", fields.join(","))?;
        }
        out.flush()?;
    }
    let command = format!(
        "\\copy events (source, event_id, learner_ref, course_id, kind, progress, score, \
         duration_seconds, occurred_at, received_at, content_hash, raw) FROM '{}' WITH (FORMAT csv)",
        path.display()
    );
    let started = Instant::now();
    psql(url, &command)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        label: "psql \\copy (peer)".to_owned(),
        events: work.events.len(),
        seconds,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        peak_rss_mib: None,
    })
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.is_empty() {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
