//! `nigrani-bench api`: read throughput and latency of the API under ingest, with wrk on loopback.
//!
//! It loads a demo program of `--learners` into a SQLite folder (once: the folder is kept and
//! reused by later runs), starts the real `nigrani serve` on it, and streams new events to it at
//! `--ingest-rate` events a second while wrk measures `GET /api/v1/summary` and a province × track
//! breakdown. The peer is a bare actix-web handler returning a constant JSON body, served from
//! this process with as many workers as `serve` has, measured by wrk in the same run: the
//! framework's ceiling on this machine.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use nigrani_ingest::demo::{DemoConfig, Generator};
use nigrani_store::StoreConfig;
use serde_json::Value;

use crate::support::{BENCH_KEY, Server, memory_kib, percentile};

#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    /// Learners in the demo program.
    #[arg(long, default_value_t = 1_000_000)]
    learners: usize,
    /// Folder of the program's SQLite database; loaded when empty, reused otherwise.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Events a second sent to the server while wrk runs.
    #[arg(long, default_value_t = 5_000)]
    ingest_rate: usize,
    /// Seconds each wrk run lasts.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Open connections per wrk run.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

/// What wrk measured.
struct WrkResult {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// A duration as wrk prints it (`850.00us`, `1.23ms`, `2.00s`), in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

fn wrk(url: &str, seconds: u64, connections: usize) -> anyhow::Result<WrkResult> {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {BENCH_KEY}"),
            url,
        ])
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    };
    let percentile = |p: &str| field(p).and_then(|v| wrk_ms(&v));
    Ok(WrkResult {
        requests_per_second: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("wrk printed no rate: {text}"))?,
        p50_ms: percentile("50%").unwrap_or(f64::NAN),
        p99_ms: percentile("99%").unwrap_or(f64::NAN),
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// Serves a constant JSON body on a free port from a thread of its own; returns its URL.
fn bare_actix(workers: usize) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        system.block_on(async move {
            let server = actix_web::HttpServer::new(|| {
                actix_web::App::new().route(
                    "/",
                    actix_web::web::get().to(|| async {
                        actix_web::HttpResponse::Ok()
                            .content_type("application/json")
                            .body(r#"{"status":"ok","figures":[1,2,3]}"#)
                    }),
                )
            })
            .workers(workers)
            .disable_signals()
            .listen(listener);
            match server {
                Ok(server) => {
                    let _ = server.run().await;
                }
                Err(e) => eprintln!("the bare actix server failed: {e}"),
            }
        });
    });
    Ok(format!("http://{address}/"))
}

/// Loads the demo program into `dir` unless a finished load is there.
fn ensure_program(
    exe: &std::path::Path,
    dir: &std::path::Path,
    learners: usize,
) -> anyhow::Result<()> {
    let marker = dir.join(format!("bench-program-{learners}"));
    if marker.exists() {
        println!(
            "program: reusing {} learners in {}",
            learners,
            dir.display()
        );
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear the unfinished load in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    println!(
        "program: loading {learners} demo learners into {} (once)",
        dir.display()
    );
    let started = Instant::now();
    let status = Command::new(exe)
        .args(["demo", "--learners", &learners.to_string()])
        .env("NIGRANI_DATA_DIR", dir)
        .env_remove("NIGRANI_DATABASE_URL")
        .env("NIGRANI_LOG", "warn")
        .status()
        .context("cannot run nigrani demo")?;
    ensure!(status.success(), "nigrani demo failed");
    std::fs::write(&marker, b"")?;
    println!(
        "program: loaded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// New events for existing learners, as NDJSON bodies of `batch` events: the demo's events of
/// learner `i` with fresh ids, happening now.
fn fresh_events(generator: &Generator, run: u128, first: usize, batch: usize) -> String {
    let mut body = String::new();
    let mut learner = first;
    let mut n = 0usize;
    while n < batch {
        for mut event in generator.learner(learner % generator.learners()).events {
            if n == batch {
                break;
            }
            if let Value::Object(fields) = &mut event {
                fields.insert(
                    "event_id".into(),
                    format!("bench-{run}-{learner}-{n}").into(),
                );
                fields.insert("occurred_at".into(), Utc::now().to_rfc3339().into());
            }
            body.push_str(&event.to_string());
            body.push('\n');
            n += 1;
        }
        learner += 1;
    }
    body
}

/// From acknowledgement to visible in a query, while the ingest goes on: learners who started a
/// cohort's courses withdraw one at a time, and the cohort's `withdrawn` count is polled until it
/// shows each.
fn freshness(address: &str, generator: &Generator) -> anyhow::Result<()> {
    const PROBES: usize = 40;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str| -> anyhow::Result<Value> {
        let mut response = agent
            .get(&format!("{address}{path}"))
            .header("Authorization", &format!("Bearer {BENCH_KEY}"))
            .call()?;
        ensure!(
            response.status() == 200,
            "GET {path}: {}",
            response.status()
        );
        // A cohort's members run to tens of megabytes at a million learners.
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    };
    let cohort = "soft-c4";
    let detail = get(&format!("/api/v1/cohorts/{cohort}"))?;
    let members: Vec<usize> = detail["members"]
        .as_array()
        .context("no members")?
        .iter()
        .filter(|m| m["status"] == "started")
        .filter_map(|m| {
            m["learner_id"]
                .as_str()?
                .trim_start_matches('L')
                .parse()
                .ok()
        })
        .take(PROBES)
        .collect();
    ensure!(
        members.len() == PROBES,
        "too few started members in {cohort}"
    );
    let path = format!("/api/v1/breakdown?cohort={cohort}&metrics=withdrawn");
    let withdrawn = |body: &Value| body["rows"][0]["withdrawn"].as_i64().unwrap_or(-1);
    let mut times = Vec::new();
    for (n, index) in members.into_iter().enumerate() {
        let learner = generator
            .learner(index)
            .roster
            .context("not on the roster")?;
        let before = withdrawn(&get(&path)?);
        let event = serde_json::json!({
            "source": "coursera", "event_id": format!("probe-{}-{n}", Utc::now().timestamp_micros()),
            "learner": learner.identities[0].as_str(), "course_id": "probe", "kind": "withdrawn",
            "occurred_at": Utc::now().to_rfc3339(),
        });
        let response = agent
            .post(&format!("{address}/api/v1/events"))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {BENCH_KEY}"))
            .send(serde_json::json!([event]).to_string())?;
        ensure!(response.status() == 200, "probe not acknowledged");
        let acknowledged = Instant::now();
        loop {
            if withdrawn(&get(&path)?) > before {
                times.push(acknowledged.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            ensure!(
                acknowledged.elapsed() < Duration::from_secs(30),
                "probe {n} never became visible"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(137));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "freshness under ingest: acknowledgement to visible in a breakdown, p50 {:.0} ms, p99 {:.0} \
         ms, max {:.0} ms over {PROBES} probes",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

pub(crate) async fn run(args: ApiArgs, nigrani: &std::path::Path) -> anyhow::Result<()> {
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        std::path::PathBuf::from(format!("/var/tmp/nigrani-bench-api-{}", args.learners))
    });
    ensure_program(nigrani, &dir, args.learners)?;
    let config = StoreConfig {
        data_dir: dir.clone(),
        database_url: None,
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
    };
    // The seed `nigrani demo` used, so that new events name learners on the roster.
    let generator = Arc::new(Generator::from_seed(DemoConfig {
        learners: args.learners,
        seed: 42,
        as_of: Utc::now(),
    })?);

    let started = Instant::now();
    let server = Server::start(nigrani, &config, &[])?;
    println!(
        "serve: state of {} learners built and listening after {:.1} s, RSS {} MiB",
        args.learners,
        started.elapsed().as_secs_f64(),
        memory_kib(server.pid(), "VmRSS:").unwrap_or(0) / 1024
    );
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let bare = bare_actix(workers)?;

    // Ingest at a steady rate, in batches every 100 ms, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let ingested = Arc::new(AtomicU64::new(0));
    let ingest_errors = Arc::new(AtomicU64::new(0));
    let ingest = {
        let generator = Arc::clone(&generator);
        let (stop, ingested, errors) = (
            Arc::clone(&stop),
            Arc::clone(&ingested),
            Arc::clone(&ingest_errors),
        );
        let url = format!("{}/api/v1/events", server.address);
        let per_tick = (args.ingest_rate / 10).max(1);
        let run_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut next_learner = 0usize;
            let mut tick = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let body = fresh_events(&generator, run_id, next_learner, per_tick);
                next_learner += per_tick / 20 + 1;
                let sent = agent
                    .post(&url)
                    .header("Content-Type", "application/x-ndjson")
                    .header("Authorization", &format!("Bearer {BENCH_KEY}"))
                    .send(body.as_str());
                match sent {
                    Ok(response) if response.status() == 200 => {
                        ingested.fetch_add(per_tick as u64, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tick += Duration::from_millis(100);
                if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };

    let targets = [
        ("bare actix-web handler (peer)", bare.clone()),
        (
            "GET /api/v1/summary",
            format!("{}/api/v1/summary", server.address),
        ),
        (
            "GET /api/v1/breakdown province × track",
            format!(
                "{}/api/v1/breakdown?by=province,track&metrics=enrolled,started,active_7d,completed,certified,completion_rate",
                server.address
            ),
        ),
    ];
    println!(
        "wrk: 1 thread, {} connections, {} s per route; ingest at {} events/s meanwhile",
        args.connections, args.seconds, args.ingest_rate
    );
    println!("| route | requests/s | vs bare | p50 | p99 | non-2xx | events ingested/s |");
    println!("|---|---|---|---|---|---|---|");
    let mut bare_rate = f64::NAN;
    for (name, url) in targets {
        let before = ingested.load(Ordering::Relaxed);
        let at = Instant::now();
        let result = wrk(&url, args.seconds, args.connections)?;
        let ingest_rate =
            (ingested.load(Ordering::Relaxed) - before) as f64 / at.elapsed().as_secs_f64();
        if bare_rate.is_nan() {
            bare_rate = result.requests_per_second;
        }
        println!(
            "| {name} | {:.0} | {:.2}× | {:.2} ms | {:.2} ms | {} | {:.0} |",
            result.requests_per_second,
            result.requests_per_second / bare_rate,
            result.p50_ms,
            result.p99_ms,
            result.non_2xx,
            ingest_rate
        );
    }
    freshness(&server.address, &generator)?;
    stop.store(true, Ordering::Relaxed);
    let _ = ingest.join();
    println!(
        "serve RSS at the end: {} MiB (peak {} MiB); ingest requests failed: {}",
        memory_kib(server.pid(), "VmRSS:").unwrap_or(0) / 1024,
        memory_kib(server.pid(), "VmHWM:").unwrap_or(0) / 1024,
        ingest_errors.load(Ordering::Relaxed)
    );
    if ingest_errors.load(Ordering::Relaxed) > 0 {
        bail!("some ingest requests failed during the run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wrk_ms;

    #[test]
    fn wrk_durations_are_read_in_milliseconds() {
        assert_eq!(wrk_ms("850.00us"), Some(0.85));
        assert_eq!(wrk_ms(" 1.23ms"), Some(1.23));
        assert_eq!(wrk_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_ms("12"), None);
    }
}
