//! The commands `serve`, `migrate`, `demo` and `import`.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use nigrani_api::Application;
use nigrani_ingest::demo::{self, DemoConfig, Generator};
use nigrani_ingest::roster::{self, RosterKind};
use nigrani_ingest::{BodyFormat, Ingestor, seed};
use nigrani_store::Store;

use crate::settings::Settings;

/// Opens the store the settings name, applies migrations and loads the seed reference data into
/// empty tables.
async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let config = settings.store();
    let (store, applied) =
        nigrani_store::open(&config)
            .await
            .with_context(|| match &config.database_url {
                Some(_) => {
                    "cannot open the PostgreSQL database named by NIGRANI_DATABASE_URL".to_owned()
                }
                None => format!(
                    "cannot open the SQLite database in {}",
                    config.data_dir.display()
                ),
            })?;
    for migration in &applied {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "Migration applied."
        );
    }
    let loaded = seed::install_if_empty(&store)
        .await
        .context("cannot load the seed reference data")?;
    for kind in loaded {
        tracing::info!(kind = kind.as_str(), "Seed reference data loaded.");
    }
    Ok(store)
}

/// `nigrani serve`.
pub(crate) async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let backend = store.backend();
    let server = settings.server()?;
    let engine = nigrani_analytics::Engine::start_with(
        Arc::clone(&store),
        nigrani_analytics::EngineOptions {
            max_staleness: std::time::Duration::from_millis(settings.answer_staleness_millis),
            checkpoint: settings.analytics_checkpoint_path(),
            // The figures' "now" is the server's.
            clock: Arc::clone(&server.clock).into(),
        },
    )
    .await
    .context("cannot build the analytics state")?;
    // Background work stops through `stopping` and is waited for through `tasks`.
    let stopping = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    engine.spawn_follower(
        std::time::Duration::from_millis(settings.refresh_millis),
        &tasks,
        stopping.clone(),
    );
    let app = Application::build(&server, Arc::clone(&store), engine)
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    // Only once the port is ours: a key made by a start that then fails would never be shown.
    let new_admin_key = bootstrap_admin(settings, &store).await?;
    // Tests and scripts read this line to learn the port when they ask for port 0.
    println!("nigrani listening on http://{}", app.address());
    if let Some(address) = app.metrics_address() {
        println!("metrics on http://{address}/metrics");
    }
    if let Some(key) = new_admin_key {
        println!("admin key (shown once; keep it safe): {key}");
    }
    tracing::info!(address = %app.address(), ?backend, "Serving.");
    if settings.ingest.rejection_retention_days > 0 {
        let retention = chrono::Duration::days(i64::from(settings.ingest.rejection_retention_days));
        tasks.spawn(purge_old_rejections(
            Arc::clone(&store),
            retention,
            stopping.clone(),
        ));
    }
    if let Some(coursera) = &settings.coursera {
        let ingestor = Ingestor::new(Arc::clone(&store), settings.limits());
        crate::connectors::spawn_coursera(coursera, &ingestor, &tasks, &stopping)?;
    }
    tasks.close();
    let served = app.run_until_stopped().await;
    stopping.cancel();
    tasks.wait().await;
    served.context("the HTTP server failed")?;
    tracing::info!("Stopped: requests in flight have finished.");
    Ok(())
}

/// Deletes rejections older than `retention`, at start and then once an hour, until stopped.
async fn purge_old_rejections(
    store: Arc<dyn Store>,
    retention: chrono::Duration,
    stopping: tokio_util::sync::CancellationToken,
) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3_600);
    loop {
        match store.purge_rejections(chrono::Utc::now() - retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "Rejections past their retention deleted."),
            Err(e) => {
                tracing::warn!(error = %e, "Rejections could not be purged; trying again later.")
            }
        }
        tokio::select! {
            () = stopping.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Makes sure an admin key exists: the one from the settings, or — on a fresh database — a new
/// one, returned to be shown once.
async fn bootstrap_admin(
    settings: &Settings,
    store: &Arc<dyn Store>,
) -> anyhow::Result<Option<String>> {
    let keys = store.api_keys().await?;
    if let Some(key) = &settings.admin_key {
        let record = nigrani_api::auth::record_for(
            key.expose(),
            "bootstrap admin",
            nigrani_domain::AccessRole::Admin,
            None,
        )
        .map_err(|e| anyhow::anyhow!("NIGRANI_ADMIN_KEY: {e}"))?;
        if !keys.iter().any(|k| k.key_id == record.key_id) {
            store.create_api_key(&record).await?;
            tracing::info!(key_id = %record.key_id, "Admin key from the settings installed.");
        }
        return Ok(None);
    }
    let has_admin = keys
        .iter()
        .any(|k| k.role == nigrani_domain::AccessRole::Admin && k.revoked_at.is_none());
    if has_admin {
        return Ok(None);
    }
    let new =
        nigrani_api::auth::generate("bootstrap admin", nigrani_domain::AccessRole::Admin, None)?;
    store.create_api_key(&new.record).await?;
    Ok(Some(new.key))
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key and print it (once).
    Create {
        /// admin, ingest, manager or partner.
        #[arg(long)]
        role: String,
        /// What the key is for, e.g. `meta-dashboard`.
        #[arg(long)]
        name: String,
        /// Ingest keys: the one source they may send (required for ingest keys).
        #[arg(long)]
        source: Option<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id (`nk_…`); it stops working within seconds.
    Revoke { key_id: String },
}

/// `nigrani keys`.
pub(crate) async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match command {
        KeysCommand::Create { role, name, source } => {
            let role: nigrani_domain::AccessRole = role.parse()?;
            let ingest = role == nigrani_domain::AccessRole::Ingest;
            anyhow::ensure!(
                ingest == source.is_some(),
                "--source is required for ingest keys and taken by them only"
            );
            let new = nigrani_api::auth::generate(&name, role, source)?;
            store.create_api_key(&new.record).await?;
            println!("{}", new.key);
            eprintln!(
                "key {} ({role}) created; it is shown only now",
                new.record.key_id
            );
        }
        KeysCommand::List => {
            println!(
                "{:<13} {:<8} {:<12} {:<26} name",
                "id", "role", "source", "created"
            );
            for key in store.api_keys().await? {
                println!(
                    "{:<13} {:<8} {:<12} {:<26} {}{}",
                    key.key_id,
                    key.role.as_str(),
                    key.source.as_deref().unwrap_or("-"),
                    key.created_at.to_rfc3339(),
                    key.name,
                    if key.revoked_at.is_some() {
                        " (revoked)"
                    } else {
                        ""
                    }
                );
            }
        }
        KeysCommand::Revoke { key_id } => {
            anyhow::ensure!(
                store.revoke_api_key(&key_id, chrono::Utc::now()).await?,
                "no active key {key_id}"
            );
            println!("revoked {key_id}");
        }
    }
    Ok(())
}

/// `nigrani migrate`.
pub(crate) async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let config = settings.store();
    let (store, applied) = nigrani_store::open(&config)
        .await
        .context("cannot open the database")?;
    if applied.is_empty() {
        println!("the {} database is up to date", store.backend().as_str());
    }
    for migration in applied {
        println!(
            "applied migration {:04} {}",
            migration.version, migration.name
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Learners in the program (faculty now; millions model the student phases).
    #[arg(long, default_value_t = 1_500)]
    learners: usize,
    /// Seed of every random choice: the same seed and `--as-of` give the same program.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The moment the program is generated up to (RFC 3339, or a date for noon in Pakistan).
    /// Defaults to now.
    #[arg(long, value_parser = parse_as_of)]
    as_of: Option<DateTime<Utc>>,
    /// Write the events as NDJSON to this file instead of storing them (the roster is still
    /// stored, so that posting the file to /api/v1/events matches learners).
    #[arg(long)]
    ndjson: Option<PathBuf>,
}

fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is neither RFC 3339 nor YYYY-MM-DD"))?;
    day.and_hms_opt(7, 0, 0)
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{text}` is out of range"))
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `nigrani demo`.
pub(crate) async fn demo(settings: &Settings, args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = open_store(settings).await?;
    let config = DemoConfig {
        learners: args.learners,
        seed: args.seed,
        as_of: args.as_of.unwrap_or_else(Utc::now),
    };
    let generator = Generator::from_store(config, &store).await?;
    let ingestor = Ingestor::new(Arc::clone(&store), settings.limits());
    let batch_size = settings.limits().max_events;
    let mut ndjson = match &args.ndjson {
        Some(path) => Some(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };

    let bar = progress(args.learners as u64, "learners");
    let mut totals = nigrani_ingest::batch::OutcomeCounts::default();
    let mut events_written = 0usize;
    let mut on_roster = 0usize;
    let chunk = roster::CHUNK_ROWS;
    for first in (0..args.learners).step_by(chunk) {
        let learners: Vec<_> = (first..(first + chunk).min(args.learners))
            .map(|i| generator.learner(i))
            .collect();
        on_roster += demo::store_roster(&store, &learners).await?;
        let events: Vec<_> = learners.into_iter().flat_map(|l| l.events).collect();
        events_written += events.len();
        if let Some(out) = ndjson.as_mut() {
            for event in &events {
                serde_json::to_writer(&mut *out, event)?;
                out.write_all(b"\n")?;
            }
        } else {
            totals.add(demo::ingest_events(&ingestor, &events, batch_size).await?);
        }
        bar.inc((first + chunk).min(args.learners) as u64 - first as u64);
    }
    bar.finish_and_clear();
    if let Some(mut out) = ndjson {
        out.flush()?;
    }
    println!(
        "demo program (seed {}, as of {}): {} cohorts, {} learners ({} on the roster), {} events",
        args.seed,
        config.as_of.to_rfc3339(),
        generator.cohort_rows().len(),
        args.learners,
        on_roster,
        events_written
    );
    match &args.ndjson {
        Some(path) => println!(
            "events written to {}; post them with: curl -H 'Content-Type: application/x-ndjson' --data-binary @{} ...",
            path.display(),
            path.display()
        ),
        None => println!(
            "stored: {} accepted, {} unmatched, {} duplicate, {} conflict, {} rejected, in {:.1} s",
            totals.accepted,
            totals.unmatched,
            totals.duplicate,
            totals.conflict,
            totals.rejected,
            started.elapsed().as_secs_f64()
        ),
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// The file: `.csv` or `.json` roster data, or `.ndjson`/`.jsonl` events.
    file: PathBuf,
    /// What the file holds: institutions, disciplines, tracks, cohorts, learners or events.
    /// Guessed from the CSV header or the file name when not given.
    #[arg(long)]
    kind: Option<String>,
    /// A platform's report format instead of nigrani's own: `coursera` (the enrollment report
    /// exported as CSV).
    #[arg(long, value_enum)]
    format: Option<ReportFormat>,
}

/// Report formats `nigrani import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// Coursera's enrollment report (CSV export).
    Coursera,
}

/// `nigrani import`.
pub(crate) async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<()> {
    let path = &args.file;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let events = args.kind.as_deref() == Some("events")
        || (args.kind.is_none() && matches!(extension.as_str(), "ndjson" | "jsonl"));
    let store = open_store(settings).await?;
    if args.format == Some(ReportFormat::Coursera) {
        anyhow::ensure!(
            args.kind.is_none(),
            "--kind names nigrani's own files; a Coursera report needs only --format coursera"
        );
        return import_coursera(store, path, settings.limits()).await;
    }
    if events {
        return import_events(settings, store, path).await;
    }

    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let kind = match (&args.kind, extension.as_str()) {
        (Some(kind), _) => kind.parse::<RosterKind>().map_err(anyhow::Error::msg)?,
        (None, "csv") => {
            let header = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            let header = String::from_utf8_lossy(header);
            let columns: Vec<&str> = header.trim().split(',').map(str::trim).collect();
            RosterKind::from_header(&columns).with_context(|| {
                format!(
                    "cannot tell what {} holds from its header; pass --kind",
                    path.display()
                )
            })?
        }
        (None, _) => stem.parse::<RosterKind>().map_err(|_| {
            anyhow::anyhow!(
                "cannot tell what {} holds from its name; pass --kind",
                path.display()
            )
        })?,
    };
    let rows = match extension.as_str() {
        "csv" => roster::parse_csv(kind, &bytes),
        "json" => roster::parse_json(kind, &bytes),
        other => bail!("`.{other}` files are not supported; use .csv, .json, .ndjson or .jsonl"),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(roster::RosterError::InvalidRows(problems)) => {
            for problem in problems.iter().take(50) {
                eprintln!("line {}: {}", problem.line, problem.message);
            }
            bail!(
                "{} row(s) of {} are invalid; nothing was imported",
                problems.len(),
                path.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot import {}", path.display())),
    };
    let bar = progress(rows.len() as u64, kind.as_str());
    let report = match roster::apply(&store, &rows).await {
        Ok(report) => report,
        Err(roster::RosterError::InvalidRows(problems)) => {
            bar.finish_and_clear();
            for problem in problems.iter().take(50) {
                eprintln!("row {}: {}", problem.line, problem.message);
            }
            bail!(
                "{} row(s) of {} are invalid; nothing was imported",
                problems.len(),
                path.display()
            );
        }
        Err(e) => return Err(e).context("the import failed"),
    };
    bar.finish_and_clear();
    println!(
        "imported {} {} from {}{}",
        report.rows,
        kind.as_str(),
        path.display(),
        if report.attributed_events > 0 {
            format!(
                "; {} earlier events are now attributed",
                report.attributed_events
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `nigrani import --format coursera report.csv`: the report's rows as events, streamed.
async fn import_coursera(
    store: Arc<dyn Store>,
    path: &std::path::Path,
    limits: nigrani_ingest::Limits,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = bytes_progress(size);
    let courses = nigrani_ingest::CourseMap::from_rows(
        store
            .course_map()
            .await
            .context("cannot read the course mapping")?,
    );
    let ingestor = Ingestor::new(store, limits);
    let summary = nigrani_ingest::coursera::import::import_csv(
        &ingestor,
        std::io::BufReader::new(file),
        nigrani_ingest::coursera::connector::SOURCE,
        &courses,
        limits.max_events,
        Utc::now(),
        |read| bar.set_position(read),
    )
    .await;
    bar.finish_and_clear();
    let summary = match summary {
        Ok(summary) => summary,
        Err(nigrani_ingest::coursera::import::ImportError::Header(message)) => {
            bail!(
                "{} is not an enrollment report: {message}; nothing was imported",
                path.display()
            )
        }
        Err(e) => {
            return Err(e).context("a batch could not be stored; the rows before it were stored");
        }
    };
    let events = summary.events;
    println!(
        "imported {} row(s) of {}: {} rejected (see GET /api/v1/rejections); events: {} accepted, {} unmatched, {} duplicate, {} conflict, {} rejected",
        summary.rows,
        path.display(),
        summary.rejected_rows,
        events.accepted,
        events.unmatched,
        events.duplicate,
        events.conflict,
        events.rejected
    );
    anyhow::ensure!(summary.rows > 0, "{} holds no report rows", path.display());
    Ok(())
}

/// A progress bar over a file's bytes.
fn bytes_progress(size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn import_events(
    settings: &Settings,
    store: Arc<dyn Store>,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = bytes_progress(size);
    let ingestor = Ingestor::new(store, settings.limits());
    let max_events = settings.limits().max_events;
    let mut reader = std::io::BufReader::new(file);
    let mut totals = nigrani_ingest::batch::OutcomeCounts::default();
    let mut batch = Vec::with_capacity(max_events);
    let mut line = Vec::new();
    let mut lines = 0usize;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        bar.inc(read as u64);
        if read > 0 && !line.iter().all(u8::is_ascii_whitespace) {
            batch.extend_from_slice(&line);
            if !line.ends_with(b"\n") {
                batch.push(b'\n');
            }
            lines += 1;
        }
        if (read == 0 && !batch.is_empty()) || lines >= max_events {
            let report = ingestor
                .ingest_body(&batch, BodyFormat::Ndjson, Utc::now())
                .await
                .context("a batch could not be stored; events before it were stored")?;
            totals.add(report.counts);
            batch.clear();
            lines = 0;
        }
        if read == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    println!(
        "imported events from {}: {} accepted, {} unmatched, {} duplicate, {} conflict, {} rejected",
        path.display(),
        totals.accepted,
        totals.unmatched,
        totals.duplicate,
        totals.conflict,
        totals.rejected
    );
    Ok(())
}
