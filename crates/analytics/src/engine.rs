//! The engine: a learner-state snapshot kept current from the store's change feed, and queries
//! over it.
//!
//! At start it reads the roster and replays every event. Then [`Engine::refresh`] (run every few
//! hundred milliseconds by [`Engine::spawn_follower`]) applies only the events committed since —
//! touching only the learners they concern — and publishes a new learner frame. A change to the
//! roster (a new learner, a move, an identity, a cohort or institution) is read from the store's
//! roster log and applied to the learners it names ([`crate::roster_sync`]); only a change of
//! track plans, or a log that no longer reaches back, rebuilds the state from the store. Queries as of a moment before the latest event replay the events up
//! to that moment instead of using the snapshot.
//!
//! The live state is *as of now*. Ingest accepts events dated up to a day ahead (platforms'
//! clocks drift); such an event waits outside the state, in a small list, until its time comes,
//! and the first refresh after that applies it and publishes — no new event needs to arrive. So
//! the state holds every event dated up to the moment of its last refresh and none dated later,
//! and every route, whether it answers from the state or from a replay, counts an event only
//! once the moment asked is at or after its date. A refresh also publishes when a cohort starts,
//! since its members enrol with it ([`crate::definitions`]). The checkpoint records events as
//! they arrive, due or not; resuming from it holds back the ones still ahead.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nigrani_domain::Learner;
use nigrani_store::{FeedEvent, Page, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answers::{Answers, Stamped};
use crate::checkpoint::Checkpoint;
use crate::compute::Computations;
pub use crate::error::AnalyticsError;
use crate::funnel::{self, FunnelQuery, FunnelRow};
use crate::live::LiveFrame;
use crate::query::{self, Breakdown, BreakdownQuery, QueryError};
use crate::record_key::RecordSecret;
use crate::roster_sync::{self, RosterDelta};
use crate::series::{self, Series, SeriesQuery};
pub use crate::snapshot::Snapshot;
use crate::state::{Effect, LearnerCodes, Roster, States};
use crate::summary::{self, Summary};
use crate::targets::{self, TargetStatus};

/// Events read from the change feed per call.
const FEED_PAGE: usize = 10_000;
/// Learners read from the roster per call.
const ROSTER_PAGE: usize = 50_000;

/// The mutable side, owned by whoever refreshes.
struct Follower {
    roster: Arc<Roster>,
    states: States,
    /// The frame and cells kept current (the live follower only; replays have none).
    live: Option<LiveFrame>,
    /// The checkpoint being appended to, when the engine keeps one.
    checkpoint: Option<Checkpoint>,
    /// Events dated after `states.held_until`, not yet applied.
    waiting: Waiting,
    last_seq: i64,
    roster_version: i64,
}

/// Events dated in the future, held out of the live state until their time comes. Ingest
/// accepts at most a day ahead, so there are few; a linear pass over them is cheap.
struct Waiting {
    events: Vec<(u32, Effect)>,
    /// The earliest `at` among them; `i64::MAX` when there are none.
    from: i64,
}

impl Waiting {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            from: i64::MAX,
        }
    }

    fn hold(&mut self, row: usize, effect: Effect) {
        self.from = self.from.min(effect.at);
        self.events.push((row as u32, effect));
    }

    /// Drops the events of these rows (sorted), whose events are being read again.
    fn forget(&mut self, rows: &[u32]) {
        self.events
            .retain(|(row, _)| rows.binary_search(row).is_err());
        self.from = self
            .events
            .iter()
            .map(|(_, e)| e.at)
            .min()
            .unwrap_or(i64::MAX);
    }

    /// Takes out the events dated at or before `moment`.
    fn due(&mut self, moment: i64) -> Vec<(u32, Effect)> {
        if self.from > moment {
            return Vec::new();
        }
        let (due, later): (Vec<_>, Vec<_>) =
            self.events.drain(..).partition(|(_, e)| e.at <= moment);
        self.events = later;
        self.from = self
            .events
            .iter()
            .map(|(_, e)| e.at)
            .min()
            .unwrap_or(i64::MAX);
        due
    }
}

/// Where the engine reads "now": the system clock, or one a test sets.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>>);

impl Clock {
    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(now)))
    }

    /// The current moment.
    pub fn now(&self) -> DateTime<Utc> {
        self.0.as_ref().map_or_else(Utc::now, |now| now())
    }
}

impl From<nigrani_domain::SharedClock> for Clock {
    /// The engine reads the same clock as the rest of the server.
    fn from(clock: nigrani_domain::SharedClock) -> Self {
        Self::from_fn(move || clock.now())
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(set)"
        } else {
            "Clock(system)"
        })
    }
}

/// How an engine runs.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// How long an answer to a polled query may lag the newest data while its successor is
    /// computed in the background ([`crate::answers`]); zero: answers are always exact.
    pub max_staleness: Duration,
    /// Where to keep the analytics checkpoint ([`crate::checkpoint`]); none: every start reads
    /// every event from the store.
    pub checkpoint: Option<std::path::PathBuf>,
    /// What "now" is: events dated later wait outside the live state.
    pub clock: Clock,
}

/// Figures of the program, kept current.
pub struct Engine {
    store: Arc<dyn Store>,
    /// Refreshes done, and how long the last one took (microseconds), for monitoring.
    refreshes: std::sync::atomic::AtomicU64,
    last_refresh_micros: std::sync::atomic::AtomicU64,
    rebuilds: std::sync::atomic::AtomicU64,
    published: RwLock<Arc<Snapshot>>,
    /// The latest answer per breakdown query ([`Answers`]).
    breakdowns: Answers<BreakdownQuery, Breakdown>,
    /// The latest target statuses.
    targets: Answers<(), Vec<TargetStatus>>,
    /// The latest summary per breakdown shape: its breakdown and the targets together.
    summaries: Answers<BreakdownQuery, Summary>,
    /// The same for cohorts' pages (apart, so that many cohorts do not crowd the summary out).
    cohort_pages: Answers<BreakdownQuery, Summary>,
    /// Where polars work and replays run.
    computations: Computations,
    follower: Arc<tokio::sync::Mutex<Follower>>,
    /// Where the checkpoint is kept, if anywhere.
    checkpoint: Option<std::path::PathBuf>,
    clock: Clock,
    /// How the state was built at start.
    started: Started,
    /// Wakes the follower before its tick ([`Engine::roster_changed`]).
    wake: tokio::sync::Notify,
}

/// How an engine's state was built at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Started {
    /// Events read from the checkpoint.
    pub from_checkpoint: usize,
    /// Events read from the store's change feed.
    pub from_store: usize,
}

/// Where one learner stands, most advanced first: certified, completed, withdrawn (and not
/// completed), started, or only enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LearnerStatus {
    Enrolled,
    Started,
    Withdrawn,
    Completed,
    Certified,
}

/// One cohort member's state, for managers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemberStatus {
    pub learner_id: String,
    pub status: LearnerStatus,
    /// Mean progress over the track's required courses, 0 to 1.
    pub progress: f64,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub certified_at: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// Events applied.
    pub events: usize,
    /// Whether the roster changed and the state was rebuilt.
    pub rebuilt: bool,
    /// Roster changes taken in without a rebuild (learners whose rows were written).
    pub roster_learners: usize,
}

impl Engine {
    /// Builds the state from the store. Answers are always exact; no checkpoint is kept.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Self>, AnalyticsError> {
        Self::start_with(store, EngineOptions::default()).await
    }

    /// Builds the state — from the checkpoint and the store's events since, when a usable
    /// checkpoint is there; from the store alone otherwise.
    pub async fn start_with(
        store: Arc<dyn Store>,
        options: EngineOptions,
    ) -> Result<Arc<Self>, AnalyticsError> {
        let EngineOptions {
            max_staleness,
            checkpoint,
            clock,
        } = options;
        let started = Instant::now();
        let computations = Computations::default();
        let now = clock.now().timestamp_micros();
        let (follower, started_from) = build(&store, None, checkpoint.as_deref(), now).await?;
        let snapshot = publish(&follower)?;
        tracing::info!(
            learners = follower.roster.len(),
            last_seq = follower.last_seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Analytics state built."
        );
        Ok(Arc::new(Self {
            store,
            refreshes: std::sync::atomic::AtomicU64::new(0),
            rebuilds: std::sync::atomic::AtomicU64::new(0),
            last_refresh_micros: std::sync::atomic::AtomicU64::new(0),
            published: RwLock::new(Arc::new(snapshot)),
            breakdowns: Answers::new(max_staleness, computations.clone()),
            targets: Answers::new(max_staleness, computations.clone()),
            summaries: Answers::new(max_staleness, computations.clone()),
            cohort_pages: Answers::new(max_staleness, computations.clone()),
            computations,
            follower: Arc::new(tokio::sync::Mutex::new(follower)),
            checkpoint,
            clock,
            started: started_from,
            wake: tokio::sync::Notify::new(),
        }))
    }

    /// How the state was built at start: events from the checkpoint, and from the store.
    pub fn started(&self) -> Started {
        self.started
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.published.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Applies what the store committed since the last refresh and publishes a new snapshot if
    /// anything changed.
    pub async fn refresh(&self) -> Result<Refresh, AnalyticsError> {
        let started = Instant::now();
        let outcome = self.refresh_inner().await;
        if matches!(outcome, Ok(Refresh { rebuilt: true, .. })) {
            self.rebuilds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.last_refresh_micros.store(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        outcome
    }

    /// Refreshes that rebuilt the state from the store (a track plan changed, or the roster
    /// log no longer reached back), since start.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refreshes done so far, and how long the last one took.
    pub fn refresh_stats(&self) -> (u64, Duration) {
        (
            self.refreshes.load(std::sync::atomic::Ordering::Relaxed),
            Duration::from_micros(
                self.last_refresh_micros
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
        )
    }

    async fn refresh_inner(&self) -> Result<Refresh, AnalyticsError> {
        let mut follower = self.follower.lock().await;
        let version = self.store.roster_version().await?;
        let now = self.clock.now().timestamp_micros();
        let mut outcome = Refresh {
            events: 0,
            rebuilt: false,
            roster_learners: 0,
        };
        let mut changed = false;
        if version != follower.roster_version {
            let reading = Instant::now();
            let delta = roster_sync::read_delta(
                self.store.as_ref(),
                &follower.roster,
                follower.roster_version,
                follower.last_seq,
            )
            .await?;
            let read_ms = reading.elapsed().as_millis() as u64;
            let events_read = delta.as_ref().map_or(0, |delta| delta.events.len());
            let taking = Instant::now();
            match delta.and_then(|delta| take_in(&mut follower, delta)) {
                Some(learners) => {
                    tracing::info!(
                        learners,
                        events_read,
                        read_ms,
                        apply_ms = taking.elapsed().as_millis() as u64,
                        "Roster change taken into the analytics state."
                    );
                    outcome.roster_learners = learners;
                    changed = true;
                }
                None => {
                    // Drop the old checkpoint's writer before a new file replaces it.
                    follower.checkpoint = None;
                    let (rebuilt, _) =
                        build(&self.store, None, self.checkpoint.as_deref(), now).await?;
                    *follower = rebuilt;
                    outcome.rebuilt = true;
                }
            }
        }
        if !outcome.rebuilt {
            let Follower {
                roster,
                states,
                live,
                checkpoint,
                waiting,
                last_seq,
                ..
            } = &mut *follower;
            // Events whose time has come since the last refresh, then what was committed since.
            let mut touched = Vec::new();
            for (row, effect) in waiting.due(now) {
                states.apply(row as usize, &effect);
                touched.push(row);
            }
            states.held_until = states.held_until.max(now);
            loop {
                let page = self.store.feed_after(*last_seq, FEED_PAGE).await?;
                let Some(last) = page.last() else { break };
                *last_seq = last.seq;
                outcome.events += page.len();
                let cutoff = states.held_until;
                touched.extend(apply_page(
                    roster,
                    states,
                    &page,
                    cutoff,
                    Some(waiting),
                    checkpoint,
                ));
                if page.len() < FEED_PAGE {
                    break;
                }
            }
            if let Some(live) = live {
                touched.sort_unstable();
                touched.dedup();
                changed |= live.update(roster, states, &touched, states.held_until);
            }
        }
        if outcome.events > 0 {
            flush(&mut follower.checkpoint);
        }
        if outcome.rebuilt || outcome.events > 0 || changed {
            let snapshot = publish(&follower)?;
            match self.published.write() {
                Ok(mut guard) => *guard = Arc::new(snapshot),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(snapshot),
            }
        }
        Ok(outcome)
    }

    /// Asks the follower to refresh now rather than at its next tick: the roster changed in this
    /// process. (Another server on the same database sees the change at its own next tick.) A
    /// wake-up during a refresh is kept, so the change is taken in by the next one.
    pub fn roster_changed(&self) {
        self.wake.notify_one();
    }

    /// Refreshes every `every`, and when woken by [`Engine::roster_changed`], on a task of
    /// `tasks`, until `stopping` is cancelled; a refresh under way finishes first. Errors are
    /// logged and retried.
    pub fn spawn_follower(
        self: &Arc<Self>,
        every: Duration,
        tasks: &TaskTracker,
        stopping: CancellationToken,
    ) {
        let engine = Arc::clone(self);
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    _ = ticker.tick() => {}
                    () = engine.wake.notified() => ticker.reset(),
                }
                let started = Instant::now();
                match engine.refresh().await {
                    Ok(refresh) if refresh.events > 0 || refresh.rebuilt => tracing::debug!(
                        events = refresh.events,
                        rebuilt = refresh.rebuilt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "Analytics refreshed."
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "Analytics refresh failed; retrying."),
                }
            }
        });
    }

    /// Answers a breakdown. Queries as of now (or after the latest event) use the snapshot;
    /// queries as of an earlier moment replay the store's events up to it.
    pub async fn breakdown(&self, query: &BreakdownQuery) -> Result<Breakdown, AnalyticsError> {
        Ok(self.breakdown_stamped(query).await?.value.clone())
    }

    /// A breakdown with the data it reflects. Breakdowns of the latest data that need only
    /// counts, rates and averages group the snapshot's cells instead of every learner.
    pub async fn breakdown_stamped(
        &self,
        query: &BreakdownQuery,
    ) -> Result<Arc<Stamped<Breakdown>>, AnalyticsError> {
        query.validate()?;
        let mut query = query.clone();
        (query.as_of, query.latest) = self.not_after_now(query.as_of, query.latest);
        query.from = query.from.map(|from| from.min(query.as_of));
        let query = &query;
        let snapshot = self.snapshot();
        let stamp = |value: Breakdown| {
            Arc::new(Stamped {
                value,
                data_as_of: snapshot.published_at,
                last_seq: snapshot.last_seq,
                as_of: query.as_of,
            })
        };
        if query.period.is_some() {
            let query = query.clone();
            let answer = self
                .with_state(query.as_of, query.latest, move |roster, states| {
                    series::period_breakdown(roster, states, &query)
                })
                .await?;
            return Ok(stamp(answer));
        }
        let as_of = query.as_of.timestamp_micros();
        if query.latest || snapshot.holds_all_until(as_of) {
            // Queries of the latest data differ only by "now" from one poll to the next: one
            // answer per shape, so that the previous one can stand in while the next is computed.
            let mut shape = query.clone();
            if shape.latest {
                shape.as_of = DateTime::UNIX_EPOCH;
            }
            let query = query.clone();
            return self
                .breakdowns
                .get(shape, Arc::clone(&snapshot), query.as_of, move |snapshot| {
                    snapshot.breakdown(&query)
                })
                .await;
        }
        let replayed = query.clone();
        let answer = self
            .with_state(query.as_of, false, move |roster, states| {
                query::breakdown(
                    &query::learner_frame(roster, states)?,
                    roster,
                    &replayed,
                    states.held_until,
                )
            })
            .await?;
        Ok(stamp(answer))
    }
}

impl Engine {
    /// A moment after now has no figures yet — counting the events already dated before it would
    /// count them before their time — so a query as of one is answered as of now, on the latest
    /// data. Returns the moment to answer as of and whether that is the latest data.
    fn not_after_now(&self, as_of: DateTime<Utc>, latest: bool) -> (DateTime<Utc>, bool) {
        let now = self.clock.now();
        if as_of > now {
            (now, true)
        } else {
            (as_of, latest)
        }
    }

    /// Runs `work` on the state as of `as_of`: the live state when it holds every event up to
    /// `as_of` and none after (refreshes wait meanwhile), otherwise a replay of the events up to
    /// `as_of`.
    async fn with_state<R: Send + 'static>(
        &self,
        as_of: DateTime<Utc>,
        latest: bool,
        work: impl FnOnce(&Roster, &States) -> Result<R, QueryError> + Send + 'static,
    ) -> Result<R, AnalyticsError> {
        let as_of = as_of.timestamp_micros();
        let follower = Arc::clone(&self.follower).lock_owned().await;
        if latest || (follower.states.latest_event <= as_of && as_of < follower.waiting.from) {
            return self
                .computations
                .run(move || work(&follower.roster, &follower.states))
                .await;
        }
        drop(follower);
        // A replay reads every event up to `as_of` and holds a whole state: one at a time.
        let _replaying = self.computations.replay_slot().await?;
        let (replayed, _) = build(&self.store, Some(as_of), None, as_of).await?;
        self.computations
            .run(move || work(&replayed.roster, &replayed.states))
            .await
    }

    /// A time series of one metric.
    pub async fn series(&self, query: &SeriesQuery) -> Result<Series, AnalyticsError> {
        query.periods()?;
        let mut query = query.clone();
        (query.as_of, query.latest) = self.not_after_now(query.as_of, query.latest);
        query.from = query.from.min(query.as_of);
        self.with_state(query.as_of, query.latest, move |roster, states| {
            series::series(roster, states, &query)
        })
        .await
    }

    /// The funnel per slice, as of a moment (`None`: the latest data).
    pub async fn funnel(
        &self,
        query: &FunnelQuery,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Vec<FunnelRow>, AnalyticsError> {
        let snapshot = self.snapshot();
        let query = query.clone();
        let as_of = as_of.filter(|&as_of| !self.not_after_now(as_of, false).1);
        let Some(as_of) = as_of else {
            let until = snapshot.held_until;
            return self
                .computations
                .run(move || funnel::funnel(&snapshot.frame, &snapshot.roster, &query, until))
                .await;
        };
        let as_of = as_of.timestamp_micros();
        if snapshot.holds_all_until(as_of) {
            return self
                .computations
                .run(move || funnel::funnel(&snapshot.frame, &snapshot.roster, &query, as_of))
                .await;
        }
        let moment = DateTime::from_timestamp_micros(as_of).unwrap_or_default();
        self.with_state(moment, false, move |roster, states| {
            funnel::funnel(
                &query::learner_frame(roster, states)?,
                roster,
                &query,
                as_of,
            )
        })
        .await
    }

    /// Every track's and cohort's target status, as of `now` (callers round it, so that pollers
    /// share answers).
    pub async fn targets(&self, now: DateTime<Utc>) -> Result<Vec<TargetStatus>, AnalyticsError> {
        Ok(self.targets_stamped(now).await?.value.clone())
    }

    /// The target statuses with the data they reflect.
    pub async fn targets_stamped(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Arc<Stamped<Vec<TargetStatus>>>, AnalyticsError> {
        self.targets
            .get((), self.snapshot(), now, move |snapshot| {
                targets::targets(&snapshot.frame, &snapshot.roster, now, snapshot.held_until)
            })
            .await
    }

    /// A breakdown of the latest data and the target statuses as of `query.as_of`, both from
    /// one snapshot (the summary): asked separately, either may be an answer kept from an
    /// earlier snapshot (see [`crate::answers`]), and a count would disagree with its target.
    /// Only queries of the latest data, without `from` or periods, are answered.
    pub async fn summary_stamped(
        &self,
        query: &BreakdownQuery,
    ) -> Result<Arc<Stamped<Summary>>, AnalyticsError> {
        self.summary_in(&self.summaries, query, None).await
    }

    /// As [`Engine::summary_stamped`], with only `cohort_id`'s target (a cohort's page).
    pub async fn cohort_summary_stamped(
        &self,
        query: &BreakdownQuery,
        cohort_id: &str,
    ) -> Result<Arc<Stamped<Summary>>, AnalyticsError> {
        self.summary_in(&self.cohort_pages, query, Some(cohort_id.to_owned()))
            .await
    }

    async fn summary_in(
        &self,
        answers: &Answers<BreakdownQuery, Summary>,
        query: &BreakdownQuery,
        cohort_id: Option<String>,
    ) -> Result<Arc<Stamped<Summary>>, AnalyticsError> {
        query.validate()?;
        if !query.latest || query.from.is_some() || query.period.is_some() {
            return Err(QueryError::Invalid(
                "a summary is of the latest data, without `from` or periods".into(),
            )
            .into());
        }
        let mut query = query.clone();
        query.as_of = self.not_after_now(query.as_of, true).0;
        let mut shape = query.clone();
        shape.as_of = DateTime::UNIX_EPOCH;
        answers
            .get(shape, self.snapshot(), query.as_of, move |snapshot| {
                summary::summary(snapshot, &query, cohort_id.as_deref())
            })
            .await
    }

    /// Every member of a cohort with where they stand, on the latest data; `None` when there is
    /// no such cohort.
    pub fn cohort_members(&self, cohort_id: &str) -> Option<Vec<MemberStatus>> {
        let snapshot = self.snapshot();
        let roster = &snapshot.roster;
        let code = roster
            .cohorts
            .iter()
            .position(|c| c.cohort_id == cohort_id)? as u32;
        let column = |name: &str| {
            snapshot
                .frame
                .column(name)
                .ok()
                .and_then(|c| c.as_materialized_series().i64().ok().cloned())
        };
        let started = column(crate::frame::columns::STARTED_AT)?;
        let completed = column(crate::frame::columns::COMPLETED_AT)?;
        let certified = column(crate::frame::columns::CERTIFIED_AT)?;
        let withdrawn = column(crate::frame::columns::WITHDRAWN_AT)?;
        let last = column(crate::frame::columns::LAST_ACTIVITY)?;
        let progress = snapshot
            .frame
            .column(crate::frame::columns::PROGRESS)
            .ok()?
            .as_materialized_series()
            .f64()
            .ok()?
            .clone();
        let moment = |v: Option<i64>| v.and_then(DateTime::from_timestamp_micros);
        let members = roster
            .by_id
            .iter()
            .map(|&row| row as usize)
            .filter(|&row| roster.cohort[row] == code)
            .map(|row| {
                let completed_at = moment(completed.get(row));
                let certified_at = moment(certified.get(row));
                let withdrawn_at = moment(withdrawn.get(row));
                let started_at = moment(started.get(row));
                let status = if certified_at.is_some() {
                    LearnerStatus::Certified
                } else if completed_at.is_some() {
                    LearnerStatus::Completed
                } else if withdrawn_at.is_some() {
                    LearnerStatus::Withdrawn
                } else if started_at.is_some() {
                    LearnerStatus::Started
                } else {
                    LearnerStatus::Enrolled
                };
                MemberStatus {
                    learner_id: roster.ids[row].to_string(),
                    status,
                    progress: progress.get(row).unwrap_or(0.0),
                    started_at,
                    completed_at,
                    certified_at,
                    last_activity: moment(last.get(row)),
                }
            })
            .collect();
        Some(members)
    }

    /// The first day of the earliest cohort, where `since_start` begins.
    pub fn program_start(&self) -> Option<chrono::NaiveDate> {
        self.snapshot()
            .roster
            .cohorts
            .iter()
            .map(|c| c.starts_on)
            .min()
    }
}

fn publish(follower: &Follower) -> Result<Snapshot, QueryError> {
    let held_until = follower.states.held_until;
    let (frame, cells) = match &follower.live {
        Some(live) => (live.frame()?, live.cells()?),
        None => {
            let frame = query::learner_frame(&follower.roster, &follower.states)?;
            let cells = query::cells(&frame, held_until)?;
            (frame, cells)
        }
    };
    Ok(Snapshot {
        cells,
        frame,
        roster: Arc::clone(&follower.roster),
        last_seq: follower.last_seq,
        latest_event: follower.states.latest_event,
        held_until,
        waiting_from: follower.waiting.from,
        published_at: Utc::now(),
    })
}

/// Applies a page of the feed up to `cutoff`: events dated later go to `waiting` (the live
/// follower) or are skipped (a replay). Appends every event of a known learner to the
/// checkpoint, due or not. Returns the rows it touched (with repeats).
fn apply_page(
    roster: &Roster,
    states: &mut States,
    page: &[FeedEvent],
    cutoff: i64,
    mut waiting: Option<&mut Waiting>,
    checkpoint: &mut Option<Checkpoint>,
) -> Vec<u32> {
    let mut touched = Vec::with_capacity(page.len());
    for event in page {
        // Events of learners the roster does not know yet wait in the store; the roster change
        // that names their learner reads them then.
        let Some(row) = event.learner_id.as_deref().and_then(|id| roster.row(id)) else {
            continue;
        };
        let effect = States::effect(roster, row, event);
        if let Some(writer) = checkpoint
            && let Err(e) = writer.append(event.seq, row, &effect)
        {
            stop_checkpoint(checkpoint, &e);
        }
        if effect.at > cutoff {
            if let Some(waiting) = waiting.as_deref_mut() {
                waiting.hold(row, effect);
            }
            continue;
        }
        states.apply(row, &effect);
        touched.push(row as u32);
    }
    touched
}

/// Takes a roster delta into the live follower, changing only the learners it names (see
/// [`crate::roster_sync`]); returns how many, or `None` when the delta needs a rebuild (which
/// replaces the follower, whatever this left of it).
fn take_in(follower: &mut Follower, delta: RosterDelta) -> Option<usize> {
    let Follower {
        roster,
        states,
        live,
        checkpoint,
        waiting,
        roster_version,
        ..
    } = follower;
    let roster = Arc::make_mut(roster);
    let regroup = delta.reference.is_some();
    if let Some(reference) = delta.reference
        && !roster.replace_reference(
            reference.institutions,
            reference.disciplines,
            reference.cohorts,
        )
    {
        return None;
    }
    let codes = roster.codes();
    // A learner the dictionaries cannot place (the store's foreign keys prevent it) is left to
    // a rebuild rather than left out.
    let coded: Vec<(&str, LearnerCodes)> = delta
        .learners
        .iter()
        .map(|learner| Some((learner.learner_id.as_str(), codes.of(learner)?)))
        .collect::<Option<_>>()?;
    let mut rows = roster.upsert(&coded);
    // The learners whose state is read again from their events; the others only moved.
    let mut reset: Vec<u32> = rows
        .iter()
        .zip(&delta.learners)
        .filter(|(_, learner)| delta.restated.contains(&learner.learner_id))
        .map(|(&row, _)| row)
        .collect();
    rows.sort_unstable();
    reset.sort_unstable();
    states.grow_to(roster.len());
    for &row in &reset {
        states.reset_row(row as usize);
    }
    waiting.forget(&reset);
    let cutoff = states.held_until;
    for event in &delta.events {
        let Some(row) = event.learner_id.as_deref().and_then(|id| roster.row(id)) else {
            continue;
        };
        let effect = States::effect(roster, row, event);
        if effect.at > cutoff {
            waiting.hold(row, effect);
        } else {
            states.apply(row, &effect);
        }
    }
    if let Some(live) = live {
        if regroup {
            *live = LiveFrame::new(roster, states, true, cutoff);
        } else {
            live.update_roster(roster, states, &rows, cutoff);
        }
    }
    // The checkpoint's rows and header are those of the roster it was written for; a restart
    // reads the store instead, and writes a new one.
    if let Some(writer) = checkpoint.take() {
        tracing::info!(path = %writer.path().display(),
            "The roster changed: the analytics checkpoint is set aside until the next restart.");
    }
    *roster_version = delta.version;
    Some(rows.len())
}

/// Hands the checkpoint's appends to the operating system.
fn flush(checkpoint: &mut Option<Checkpoint>) {
    if let Some(writer) = checkpoint
        && let Err(e) = writer.flush()
    {
        stop_checkpoint(checkpoint, &e);
    }
}

/// A checkpoint that cannot be written is given up (until the next rebuild); the figures do not
/// depend on it.
fn stop_checkpoint(checkpoint: &mut Option<Checkpoint>, error: &std::io::Error) {
    if let Some(writer) = checkpoint.take() {
        tracing::warn!(path = %writer.path().display(), %error,
            "The analytics checkpoint cannot be written; carrying on without it.");
    }
}

/// Reads the checkpoint into `states` (events dated after `states.held_until` into `waiting`)
/// when it is usable: written for this roster, and ending with an event the store holds at the
/// same position.
async fn resume(
    store: &Arc<dyn Store>,
    path: &std::path::Path,
    roster_version: i64,
    roster: &Roster,
    states: &mut States,
    waiting: &mut Waiting,
) -> Result<Option<(Checkpoint, i64, usize)>, AnalyticsError> {
    let cutoff = states.held_until;
    let resumed = match Checkpoint::resume(path, roster_version, roster, |row, effect| {
        if effect.at > cutoff {
            waiting.hold(row, effect);
        } else {
            states.apply(row, &effect);
        }
    }) {
        Ok(Some(resumed)) => resumed,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "The analytics checkpoint cannot be read; reading the store instead.");
            return Ok(None);
        }
    };
    let (writer, last, events) = resumed;
    let in_store = store.feed_after(last.seq - 1, 1).await?;
    if !in_store.first().is_some_and(|event| last.matches(event)) {
        tracing::info!("The analytics checkpoint does not match the store; reading the store.");
        return Ok(None);
    }
    Ok(Some((writer, last.seq, events)))
}

/// Reads the roster and replays the change feed up to `as_of` (a replay), or else for the live
/// follower up to `now` (holding later events back), from the checkpoint and the feed since
/// when a usable checkpoint is there.
async fn build(
    store: &Arc<dyn Store>,
    as_of: Option<i64>,
    checkpoint: Option<&std::path::Path>,
    now: i64,
) -> Result<(Follower, Started), AnalyticsError> {
    let started = Instant::now();
    // Read the version first: a change after this point makes the next refresh rebuild again.
    let roster_version = store.roster_version().await?;
    let mut learners: Vec<Learner> = Vec::new();
    loop {
        let page = store
            .learner_dimensions(Page {
                after: learners.last().map(|l| l.learner_id.clone()),
                limit: ROSTER_PAGE,
            })
            .await?;
        if page.is_empty() {
            break;
        }
        learners.extend(page);
    }
    let roster = Roster::new(
        learners,
        store.institutions().await?,
        store
            .disciplines()
            .await?
            .into_iter()
            .map(|d| d.code)
            .collect(),
        store.cohorts().await?,
        &store.track_plans().await?,
        RecordSecret::new(store.record_key_secret().await?),
    );
    let roster_read = started.elapsed();
    let cutoff = as_of.unwrap_or(now);
    let fresh = || {
        let mut states = States::new(&roster);
        states.held_until = cutoff;
        states
    };
    let mut states = fresh();
    let mut waiting = Waiting::new();
    let mut last_seq = 0;
    let mut events = 0;
    // Only the live follower keeps a checkpoint; a replay reads the store.
    let mut writer = None;
    let mut from_checkpoint = 0;
    if let (Some(path), None) = (checkpoint, as_of) {
        match resume(
            store,
            path,
            roster_version,
            &roster,
            &mut states,
            &mut waiting,
        )
        .await?
        {
            Some((resumed, seq, read)) => {
                tracing::info!(
                    events = read,
                    last_seq = seq,
                    "Resumed from the analytics checkpoint."
                );
                writer = Some(resumed);
                last_seq = seq;
                from_checkpoint = read;
            }
            None => {
                states = fresh();
                waiting = Waiting::new();
                match Checkpoint::create(path, roster_version, &roster) {
                    Ok(created) => writer = Some(created),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e,
                        "The analytics checkpoint cannot be created; carrying on without it."),
                }
            }
        }
    }
    let checkpoint_read = started.elapsed();
    loop {
        let page = store.feed_after(last_seq, FEED_PAGE).await?;
        let Some(last) = page.last() else { break };
        last_seq = last.seq;
        events += page.len();
        let waiting = as_of.is_none().then_some(&mut waiting);
        apply_page(&roster, &mut states, &page, cutoff, waiting, &mut writer);
    }
    flush(&mut writer);
    let feed_read = started.elapsed();
    // The live follower keeps its frame current; a replay answers one query and is dropped.
    let live = as_of
        .is_none()
        .then(|| LiveFrame::new(&roster, &states, true, cutoff));
    let millis = |d: Duration| d.as_millis() as u64;
    tracing::debug!(
        roster_ms = millis(roster_read),
        checkpoint_ms = millis(checkpoint_read - roster_read),
        store_ms = millis(feed_read - checkpoint_read),
        frame_ms = millis(started.elapsed() - feed_read),
        "Analytics state read."
    );
    Ok((
        Follower {
            roster: Arc::new(roster),
            live,
            checkpoint: writer,
            states,
            waiting,
            last_seq,
            roster_version,
        },
        Started {
            from_checkpoint,
            from_store: events,
        },
    ))
}
