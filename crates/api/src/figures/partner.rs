//! The partner view: what a partner key may see of the figures. Counts below the suppression
//! threshold `k` (other than 0) are hidden, and with a target's attained count go the figures that
//! follow from it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::render::to_json;
use crate::ApiError;

/// The cells a partner may not see, hidden in `result` (none for other callers).
pub(crate) fn suppressed(
    result: &mut nigrani_analytics::Breakdown,
    partner: bool,
    k: u64,
) -> BTreeSet<(usize, usize)> {
    if partner {
        nigrani_analytics::suppress::apply(result, k)
    } else {
        BTreeSet::new()
    }
}

/// Target fields that hang on the attained count, hidden with it.
const TARGET_FIELDS: &[&str] = &[
    "attained",
    "attainment",
    "pace_per_day",
    "projected_date",
    "projected_stretch_date",
    "on_track",
];

/// Hides a target's attained count and what follows from it.
pub(crate) fn hide_attained(target: &mut Value) {
    for field in TARGET_FIELDS {
        if target.get(*field).is_some() {
            target[*field] = Value::Null;
        }
    }
}

/// A track's or cohort's target status as JSON; for partners, hidden when `attained` is a small
/// cell.
pub(crate) fn target_json(
    target: &nigrani_analytics::targets::TargetStatus,
    partner: bool,
    k: u64,
) -> Result<Value, ApiError> {
    let mut value = to_json(target)?;
    if partner && partner_count(Some(target.attained as f64), k).is_none() {
        hide_attained(&mut value);
    }
    Ok(value)
}

/// A count a partner may see: 0, or at least `k`.
pub(crate) fn partner_count(value: Option<f64>, k: u64) -> Option<f64> {
    value.filter(|v| *v == 0.0 || *v >= k as f64)
}
