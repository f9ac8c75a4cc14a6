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

/// The breakdown `query` asks (of the latest data) and the target statuses as of its `as_of`.
pub(crate) fn summary(snapshot: &Snapshot, query: &BreakdownQuery) -> Result<Summary, QueryError> {
    Ok(Summary {
        breakdown: snapshot.breakdown(query)?,
        targets: targets::targets(
            &snapshot.frame,
            &snapshot.roster,
            query.as_of,
            snapshot.held_until,
        )?,
    })
}
