//! `nigrani`: the impact-monitoring service of Pakistan's AI Upskilling Program for faculty.
//!
//! A thin binary: it reads settings, sets up logging and runs one command — `serve`, `migrate`,
//! `demo`, `import`, `keys` or `openapi`. The work itself lives in the library crates; the
//! benchmarks are a binary of their own (`nigrani-bench`, crates/bench).

mod allocator;
mod commands;
mod connectors;
mod settings;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "nigrani",
    version,
    about = "Impact monitoring for Pakistan's AI Upskilling Program"
)]
struct Cli {
    /// Settings file (TOML). Defaults to `nigrani.toml` in the working folder, if present.
    #[arg(long, global = true, env = "NIGRANI_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (SQLite in ./data unless NIGRANI_DATABASE_URL is set).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Build a realistic demo program into the store (or write its events as NDJSON).
    Demo(commands::DemoArgs),
    /// Load a roster file (CSV or JSON) or an events file (NDJSON) into the store.
    Import(commands::ImportArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(commands::KeysCommand),
    /// Print the OpenAPI document (the checked-in copy is openapi/openapi.json).
    Openapi,
}

fn main() -> std::process::ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("nigrani: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("nigrani: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => commands::serve(&settings).await,
            Command::Migrate => commands::migrate(&settings).await,
            Command::Demo(args) => commands::demo(&settings, args).await,
            Command::Import(args) => commands::import(&settings, args).await,
            Command::Keys(command) => commands::keys(&settings, command).await,
            Command::Openapi => {
                print!("{}", nigrani_api::openapi::document_json());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nigrani: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
