//! The scheduled pull connectors of `nigrani serve`: one task per configured Coursera program,
//! running [`run_once`] at start and then every `every_minutes`, until the server stops.
//!
//! Stopping is prompt: the client's waits between retries end when the server stops, and a run
//! in the middle of a page finishes that page's request (at most the request timeout) and then
//! stops before writing anything further. What it wrote is kept; the next start resumes the
//! pass from the stored cursor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nigrani_ingest::Ingestor;
use nigrani_ingest::coursera::Client;
use nigrani_ingest::coursera::connector::run_once;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settings::CourseraSettings;

/// Starts one connector task per program.
pub(crate) fn spawn_coursera(
    settings: &CourseraSettings,
    ingestor: &Ingestor,
    tasks: &TaskTracker,
    stopping: &CancellationToken,
) -> anyhow::Result<()> {
    let every = Duration::from_secs(settings.every_minutes * 60);
    for program in &settings.programs {
        let config = settings.client_config();
        let ingestor = ingestor.bound_to(Some(nigrani_ingest::coursera::connector::SOURCE));
        let program = program.clone();
        let stop = stopping_flag(stopping);
        let sleep_stop = Arc::clone(&stop);
        let new_client = move || -> anyhow::Result<Client> {
            let stop = Arc::clone(&sleep_stop);
            Ok(Client::new(config.clone())
                .map_err(|e| anyhow::anyhow!("coursera: {e}"))?
                .with_sleep(move |wait| interruptible_sleep(wait, &stop)))
        };
        let mut client = Some(new_client()?);
        let stopping = stopping.clone();
        tasks.spawn(async move {
            tracing::info!(program = %program, every_minutes = every.as_secs() / 60, "The Coursera connector starts.");
            loop {
                let current = match client.take() {
                    Some(client) => client,
                    None => match new_client() {
                        Ok(client) => client,
                        Err(e) => {
                            tracing::error!(program = %program, error = %e, "The Coursera connector cannot make its client.");
                            return;
                        }
                    },
                };
                let (kept, report) = run_once(&ingestor, current, &program, Arc::clone(&stop)).await;
                client = kept;
                match report {
                    Ok(report) if report.error.is_none() => tracing::info!(
                        program = %program, pages = report.pages, rows = report.rows,
                        accepted = report.imported.events.accepted,
                        unmatched = report.imported.events.unmatched,
                        duplicate = report.imported.events.duplicate,
                        rejected_rows = report.imported.rejected_rows,
                        "The Coursera pull ran."
                    ),
                    Ok(report) => tracing::warn!(
                        program = %program, pages = report.pages, rows = report.rows,
                        error = report.error.as_deref().unwrap_or_default(),
                        "The Coursera pull stopped early; the next run resumes it."
                    ),
                    Err(e) => tracing::error!(program = %program, error = %e, "The Coursera pull failed."),
                }
                tokio::select! {
                    () = stopping.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
    }
    Ok(())
}

/// A flag the blocking pull can read: set once the server stops.
fn stopping_flag(stopping: &CancellationToken) -> Arc<std::sync::atomic::AtomicBool> {
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = Arc::clone(&flag);
    let token = stopping.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        set.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    flag
}

/// Sleeps `wait`, or less once `stop` is set.
fn interruptible_sleep(wait: Duration, stop: &std::sync::atomic::AtomicBool) {
    let until = Instant::now() + wait;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}
