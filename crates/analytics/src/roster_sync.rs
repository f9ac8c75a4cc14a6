//! Roster changes taken into the live state without reading the whole roster again.
//!
//! Enrolling a cohort is routine, and reading a million learners and replaying every event
//! takes about a minute, during which the figures stand still. The store logs what each roster
//! change touched ([`nigrani_store::RosterLogEntry`]); the engine reads the log since its
//! version and changes only that:
//!
//! - **learners** added, moved (institution, discipline, cohort, role, gender), given another
//!   track, or given or losing identities: their rows are written (new learners get rows at the
//!   end). The state of those the log *restates* — added, given another track, or with other
//!   identities, the learners an identity moved away from too, so that events are never counted
//!   twice — is read again from their own events; a learner only moved keeps their state, and
//!   none of their events is read;
//! - **institutions, disciplines, cohorts**: the dictionaries are read again (they are small)
//!   and every row recoded; the learner state stays, and the frame and cells are regrouped from
//!   it, since a province, sector or cohort start can move every member;
//! - **track plans** change what every course slot of the state means: that one rebuilds, as
//!   does a log that no longer reaches back to the engine's version.
//!
//! Each step is idempotent (rows are written, and a learner's state is replaced, not added to),
//! so a change committed while the delta is read is simply applied again at the next refresh.
//! Learners are read after the log, so they may already carry a later change: one whose track
//! the roster does not hold is restated whatever the log says; one given other identities
//! meanwhile keeps the previous state until the next refresh restates them, as the later log
//! entry says. A learner naming an institution, discipline or cohort the roster does not know yet
//! has the dictionaries read again; one the dictionaries still cannot place rebuilds.

use std::collections::{BTreeSet, HashSet};

use nigrani_domain::{Cohort, Institution, Learner};
use nigrani_store::{FeedEvent, RosterPart, Store};

use crate::error::AnalyticsError;
use crate::state::Roster;

/// What changed on the roster since a version, read from the store.
pub(crate) struct RosterDelta {
    /// The version the delta brings the roster to.
    pub(crate) version: i64,
    /// The dictionaries, when any of them changed (or a learner names an entry the roster's
    /// dictionaries do not hold yet).
    pub(crate) reference: Option<Reference>,
    /// The changed learners as the store holds them now, by id.
    pub(crate) learners: Vec<Learner>,
    /// Those of `learners` whose state is read again from `events` (see the module's header);
    /// the others keep theirs.
    pub(crate) restated: HashSet<String>,
    /// Every event of the restated learners, up to the engine's feed position.
    pub(crate) events: Vec<FeedEvent>,
}

/// The roster's dictionaries as the store holds them.
pub(crate) struct Reference {
    pub(crate) institutions: Vec<Institution>,
    pub(crate) disciplines: Vec<String>,
    pub(crate) cohorts: Vec<Cohort>,
}

/// Learners read per store call.
const LEARNERS_PER_READ: usize = 5_000;

/// Reads what changed after `version` of `roster`, with the events up to `last_seq` of the
/// learners whose state must be read again; `None` when only a rebuild can apply it (track
/// plans changed, or the log no longer reaches back to `version`).
pub(crate) async fn read_delta(
    store: &dyn Store,
    roster: &Roster,
    version: i64,
    last_seq: i64,
) -> Result<Option<RosterDelta>, AnalyticsError> {
    let Some(log) = store.roster_log_after(version).await? else {
        return Ok(None);
    };
    let Some(latest) = log.last().map(|entry| entry.version) else {
        return Ok(None);
    };
    if log.iter().any(|entry| entry.part == RosterPart::TrackPlans) {
        return Ok(None);
    }
    let changed: BTreeSet<&String> = log.iter().flat_map(|entry| &entry.learner_ids).collect();
    let changed: Vec<String> = changed.into_iter().cloned().collect();
    let logged: HashSet<&str> = log
        .iter()
        .flat_map(|entry| &entry.restated)
        .map(String::as_str)
        .collect();
    // Learners first, then the dictionaries, as a full read does: the store's foreign keys then
    // make the dictionaries name everything the learners do.
    let mut learners = Vec::with_capacity(changed.len());
    for ids in changed.chunks(LEARNERS_PER_READ) {
        learners.extend(store.learners_by_id(ids).await?);
    }
    // Besides those the log restates, a learner the roster does not hold on the track the store
    // now gives them: the store may have moved on since the log was read, and a state is only
    // kept for the track it was built for.
    let restated: HashSet<String> = learners
        .iter()
        .filter(|learner| {
            logged.contains(learner.learner_id.as_str())
                || roster
                    .row(&learner.learner_id)
                    .is_none_or(|row| roster.track_of(row) != learner.track)
        })
        .map(|learner| learner.learner_id.clone())
        .collect();
    let codes = roster.codes();
    let unknown_reference = learners.iter().any(|learner| codes.of(learner).is_none());
    let reference = if unknown_reference || log.iter().any(|e| e.part != RosterPart::Learners) {
        Some(Reference {
            institutions: store.institutions().await?,
            disciplines: store
                .disciplines()
                .await?
                .into_iter()
                .map(|d| d.code)
                .collect(),
            cohorts: store.cohorts().await?,
        })
    } else {
        None
    };
    let mut to_read: Vec<String> = restated.iter().cloned().collect();
    to_read.sort_unstable();
    let mut events = Vec::new();
    for ids in to_read.chunks(LEARNERS_PER_READ) {
        events.extend(store.feed_of_learners(ids, last_seq).await?);
    }
    Ok(Some(RosterDelta {
        version: latest,
        reference,
        learners,
        restated,
        events,
    }))
}
