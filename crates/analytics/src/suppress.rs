//! Small-cell suppression for partner views.
//!
//! - **Primary**: a count between 1 and `k − 1` is suppressed; so are a row's rates and averages
//!   when the row has fewer than `k` learners, and its group size (`learners`) then too.
//! - **Complementary**: where a response holds a total or subtotal and the rows that add up to it,
//!   a single suppressed row could be recovered by subtraction, so the smallest other row of the
//!   same group is suppressed as well (or the total, when the group has one row); this repeats
//!   until no group has exactly one suppressed row under a published total.
//! - A row with a suppressed count has its rates suppressed too, since rate × learners would
//!   give the count back.
//!
//! A pure function of the table, so it can be tested on random tables (see the property tests).

use std::collections::BTreeSet;

use crate::definitions::MetricKind;
use crate::query::Breakdown;

/// Default threshold: counts below it are suppressed for partners.
pub const DEFAULT_K: u64 = 5;

/// A cell of a breakdown: `(row, column)`, where column 0 is the row's `learners` and column
/// `i + 1` is metric `i`.
pub type Cell = (usize, usize);

/// Which cells to hide.
pub fn suppressed_cells(table: &Breakdown, k: u64) -> BTreeSet<Cell> {
    let kinds: Vec<MetricKind> = std::iter::once(MetricKind::Count)
        .chain(table.metrics.iter().map(|m| m.kind()))
        .collect();
    let value = |row: usize, column: usize| -> Option<f64> {
        let r = &table.rows[row];
        if column == 0 {
            Some(r.learners as f64)
        } else {
            r.values[column - 1]
        }
    };
    let small = |v: f64| v > 0.0 && v < k as f64;
    let mut hidden = BTreeSet::new();

    // Primary.
    for (row, r) in table.rows.iter().enumerate() {
        for (column, kind) in kinds.iter().enumerate() {
            let hide = match kind {
                MetricKind::Count => value(row, column).is_some_and(small),
                MetricKind::Ratio => r.learners < k,
            };
            if hide {
                hidden.insert((row, column));
            }
        }
    }

    // Complementary, per count column, to a fixed point.
    let groups = groups(table);
    loop {
        let mut changed = false;
        for (column, kind) in kinds.iter().enumerate() {
            if *kind != MetricKind::Count {
                continue;
            }
            for (parent, children) in &groups {
                if hidden.contains(&(*parent, column)) {
                    continue;
                }
                let hidden_children = children
                    .iter()
                    .filter(|c| hidden.contains(&(**c, column)))
                    .count();
                if hidden_children != 1 {
                    continue;
                }
                let partner = children
                    .iter()
                    .filter(|c| !hidden.contains(&(**c, column)))
                    .min_by(|a, b| {
                        let (va, vb) = (value(**a, column), value(**b, column));
                        va.partial_cmp(&vb).unwrap_or(std::cmp::Ordering::Equal)
                    });
                match partner {
                    Some(partner) => hidden.insert((*partner, column)),
                    // The only row of its group equals its total: hide the total.
                    None => hidden.insert((*parent, column)),
                };
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // Rates would give a hidden count back.
    let rows_with_hidden_counts: Vec<usize> = hidden
        .iter()
        .filter(|(_, column)| kinds[*column] == MetricKind::Count)
        .map(|(row, _)| *row)
        .collect();
    for row in rows_with_hidden_counts {
        for (column, kind) in kinds.iter().enumerate() {
            if *kind == MetricKind::Ratio {
                hidden.insert((row, column));
            }
        }
    }
    hidden
}

/// Total rows and the rows that add up to them: a row with `j` defined leading keys is the total
/// of the rows of the same period that agree on those and define exactly one more.
fn groups(table: &Breakdown) -> Vec<(usize, Vec<usize>)> {
    let depth = |row: usize| table.rows[row].keys.iter().filter(|k| k.is_some()).count();
    let mut out = Vec::new();
    for parent in 0..table.rows.len() {
        let level = depth(parent);
        if level >= table.by.len() {
            continue;
        }
        let prefix = &table.rows[parent].keys[..level];
        let children: Vec<usize> = (0..table.rows.len())
            .filter(|&c| {
                depth(c) == level + 1
                    && table.rows[c].keys[..level] == *prefix
                    && table.rows[c].period == table.rows[parent].period
            })
            .collect();
        if !children.is_empty() {
            out.push((parent, children));
        }
    }
    out
}

/// Hides the suppressed cells (sets them to `None`) and returns them.
pub fn apply(table: &mut Breakdown, k: u64) -> BTreeSet<Cell> {
    let hidden = suppressed_cells(table, k);
    for &(row, column) in &hidden {
        if column > 0 {
            table.rows[row].values[column - 1] = None;
        }
    }
    hidden
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::definitions::{Dimension, Metric};
    use crate::query::BreakdownRow;

    /// A consistent two-level table with totals: leaf counts, subtotals per first key, a total.
    fn table(leaves: &[Vec<(u64, u64)>]) -> Breakdown {
        let mut rows = Vec::new();
        for (a, children) in leaves.iter().enumerate() {
            for (b, (learners, completed)) in children.iter().enumerate() {
                rows.push(row(Some(a), Some(b), *learners, *completed));
            }
        }
        for (a, children) in leaves.iter().enumerate() {
            let learners = children.iter().map(|c| c.0).sum();
            let completed = children.iter().map(|c| c.1).sum();
            rows.push(row(Some(a), None, learners, completed));
        }
        let learners = leaves.iter().flatten().map(|c| c.0).sum();
        let completed = leaves.iter().flatten().map(|c| c.1).sum();
        rows.push(row(None, None, learners, completed));
        Breakdown {
            period: None,
            by: vec![Dimension::Province, Dimension::Track],
            metrics: vec![Metric::Completed, Metric::CompletionRate],
            rows,
        }
    }

    fn row(a: Option<usize>, b: Option<usize>, learners: u64, completed: u64) -> BreakdownRow {
        BreakdownRow {
            period: None,
            keys: vec![a.map(|a| format!("a{a}")), b.map(|b| format!("b{b}"))],
            learners,
            values: vec![
                Some(completed as f64),
                (learners > 0).then(|| completed as f64 / learners as f64),
            ],
        }
    }

    fn leaves() -> impl Strategy<Value = Vec<Vec<(u64, u64)>>> {
        prop::collection::vec(
            prop::collection::vec(
                (0u64..40).prop_flat_map(|learners| (Just(learners), 0..=learners)),
                1..5,
            ),
            1..5,
        )
    }

    proptest! {
        #[test]
        fn no_small_count_is_published(leaves in leaves(), k in 2u64..8) {
            let t = table(&leaves);
            let hidden = suppressed_cells(&t, k);
            for (i, r) in t.rows.iter().enumerate() {
                if !hidden.contains(&(i, 0)) {
                    prop_assert!(r.learners == 0 || r.learners >= k);
                }
                if let Some(completed) = r.values[0]
                    && !hidden.contains(&(i, 1)) {
                        prop_assert!(completed == 0.0 || completed >= k as f64);
                    }
                if r.learners < k {
                    prop_assert!(hidden.contains(&(i, 2)), "rates over fewer than k are hidden");
                }
            }
        }

        #[test]
        fn no_hidden_count_can_be_recovered_from_a_published_total(leaves in leaves(), k in 2u64..8) {
            let t = table(&leaves);
            let hidden = suppressed_cells(&t, k);
            for (parent, children) in groups(&t) {
                for column in [0, 1] {
                    if hidden.contains(&(parent, column)) {
                        continue;
                    }
                    let hidden_children = children.iter().filter(|c| hidden.contains(&(**c, column))).count();
                    prop_assert_ne!(hidden_children, 1, "a lone hidden row under a published total");
                }
            }
        }

        #[test]
        fn a_hidden_count_hides_the_rates_of_its_row(leaves in leaves(), k in 2u64..8) {
            let t = table(&leaves);
            let hidden = suppressed_cells(&t, k);
            for &(row, column) in &hidden {
                if column == 1 {
                    prop_assert!(hidden.contains(&(row, 2)));
                }
            }
        }
    }

    #[test]
    fn a_lone_small_cell_takes_its_smallest_sibling_with_it() {
        let t = table(&[vec![(3, 1), (20, 10), (12, 6)]]);
        let hidden = suppressed_cells(&t, 5);
        // Learners: row 0 (3) is small; its smallest published sibling is row 2 (12).
        assert!(hidden.contains(&(0, 0)) && hidden.contains(&(2, 0)));
        assert!(!hidden.contains(&(1, 0)));
        let mut applied = t.clone();
        apply(&mut applied, 5);
        assert_eq!(applied.rows[0].values, vec![None, None]);
    }
}
