//! Figures with their targets, from one snapshot: the summary per track and a cohort's page.

use crate::query::{Breakdown, BreakdownQuery, QueryError};
use crate::snapshot::Snapshot;
use crate::targets::{self, TargetStatus};

/// A breakdown and every target status, from one snapshot ([`crate::Engine::summary_stamped`]).
#[derive(Debug, Clone)]
pub struct Summary {
    pub breakdown: Breakdown,
    pub targets: Vec<TargetStatus>,
}

/// The breakdown `query` asks (of the latest data) and the target statuses as of its `as_of`:
/// every one, or only `cohort_id`'s.
pub(crate) fn summary(
    snapshot: &Snapshot,
    query: &BreakdownQuery,
    cohort_id: Option<&str>,
) -> Result<Summary, QueryError> {
    let (frame, roster) = (&snapshot.frame, &snapshot.roster);
    let targets = match cohort_id {
        Some(id) => targets::cohort_target(frame, roster, query.as_of, snapshot.held_until, id)?,
        None => targets::targets(frame, roster, query.as_of, snapshot.held_until)?,
    };
    Ok(Summary {
        breakdown: snapshot.breakdown(query)?,
        targets,
    })
}
