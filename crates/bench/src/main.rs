//! `nigrani-bench`: benchmarks of nigrani that print their figures, each next to a peer measured
//! in the same run (absolute times drift on a shared machine; ratios hold).
//!
//! This crate owns the benchmarks against peers — ingest over HTTP against `psql \copy`, the
//! analytics engine against DuckDB, the read API against a bare actix-web handler with wrk — and
//! the criterion benches of hot functions under `benches/`. It must never be a dependency of the
//! `nigrani` binary: benchmark code, its peers and their dependencies stay out of production.
//!
//! The benchmarks that measure the server (`ingest`, `api`) run the real `nigrani` binary as a
//! child process, as production runs it, so that its resident memory is its own and SIGTERM stops
//! it as it stops in production. That binary is the one built next to this one (`cargo build
//! --release -p nigrani -p nigrani-bench`), or the one `--nigrani` / `NIGRANI_BENCH_BIN` names.
//! `analytics` runs the engine in this process, through the library crates.
//!
//! Modules:
//! - [`ingest`]: `nigrani-bench ingest`, events/s over HTTP on each backend against `psql \copy`;
//!   with `--xapi`, xAPI statements/s next to the native endpoint.
//! - [`statements`]: the demo events as xAPI statements, for those runs.
//! - [`analytics`]: `nigrani-bench analytics`, the engine at scale, cold group-bys against DuckDB
//!   (`duckdb_groupbys.py` beside this crate's manifest), freshness.
//! - [`api`]: `nigrani-bench api`, wrk against the summary and a breakdown under ingest.
//! - [`support`]: the server child process, throw-away databases, psql, memory and percentiles.

mod analytics;
mod api;
mod ingest;
mod statements;
mod support;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "nigrani-bench",
    version,
    about = "Benchmarks of nigrani against peers, printing their figures"
)]
struct Cli {
    /// The `nigrani` binary the server benchmarks start. Defaults to the `nigrani` built next to
    /// this binary.
    #[arg(long, global = true, env = "NIGRANI_BENCH_BIN")]
    nigrani: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest throughput of POST /api/v1/events against `psql \copy` of the same rows.
    Ingest(ingest::IngestArgs),
    /// Analytics at scale: rebuild time and memory, query latency, cold group-bys against DuckDB,
    /// freshness under load.
    Analytics(analytics::AnalyticsArgs),
    /// Read throughput and latency (wrk) of the summary and a breakdown under ingest, against a
    /// bare actix-web handler.
    Api(api::ApiArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The engine and the store log through tracing while `analytics` runs them in this process;
    // NIGRANI_LOG filters them as it filters `nigrani` itself.
    let filter = std::env::var("NIGRANI_LOG")
        .ok()
        .and_then(|log| EnvFilter::try_new(log).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("nigrani-bench: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Ingest(args) => {
                let nigrani = support::nigrani_binary(cli.nigrani)?;
                ingest::run(args, &nigrani).await
            }
            Command::Analytics(args) => analytics::run(args).await,
            Command::Api(args) => {
                let nigrani = support::nigrani_binary(cli.nigrani)?;
                api::run(args, &nigrani).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nigrani-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
