//! The perturbation table of the cell key method: what a partner sees of a count.
//!
//! A published count is a function of the true count `n` and the cell's key — a number derived
//! from the permanent random keys of the learners in the cell — so the same cell gives the same
//! answer in every query, and two cells that differ by a few learners differ by noise, not by
//! the truth. The table holds, per true count, a distribution over published counts:
//!
//! - a true zero stays zero;
//! - no count is published between 1 and `k − 1`: a small count goes to 0 or to at least `k`;
//! - the published count lies within `max_noise` of the truth;
//! - it is right on average: each row's mean is its true count (to within [`BIAS_BOUND`], the
//!   rounding of probabilities to 32 bits);
//! - within those rules, counts near the truth are likelier, as a normal curve of width
//!   `spread` (tilted, for small counts, until the mean is the truth).
//!
//! From `k + max_noise` on every row is the same curve, centred on the truth. The cell key
//! picks a published count by where it falls among the row's cumulative probabilities.

use serde::{Deserialize, Serialize};

/// Most a row's mean may differ from its true count (quantizing probabilities to 2⁻³² costs
/// less than this).
pub const BIAS_BOUND: f64 = 1e-6;

/// The table's parameters (the `disclosure` settings).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerturbationSettings {
    /// Counts from 1 to `k − 1` are never published.
    pub k: u32,
    /// The most a published count differs from the truth.
    pub max_noise: u32,
    /// The width (standard deviation, before tilting) of the noise.
    pub spread: f64,
}

impl Default for PerturbationSettings {
    fn default() -> Self {
        Self {
            k: 5,
            max_noise: 5,
            spread: 2.0,
        }
    }
}

impl PerturbationSettings {
    /// Checks that a table with zero bias exists for these parameters.
    pub fn validate(&self) -> Result<(), String> {
        if self.k < 2 {
            return Err(format!("`k` must be at least 2, not {}", self.k));
        }
        // A true count `k` needs a value below it to average out: only 0 is, so 0 must be in
        // reach.
        if self.max_noise < self.k || self.max_noise > 100 {
            return Err(format!(
                "`max_noise` must lie between `k` ({}) and 100, not {}",
                self.k, self.max_noise
            ));
        }
        if !(self.spread.is_finite() && self.spread >= 0.5 && self.spread <= 50.0) {
            return Err(format!(
                "`spread` must lie between 0.5 and 50, not {}",
                self.spread
            ));
        }
        Ok(())
    }
}

/// One row: published counts as offsets from the truth, and their cumulative probabilities
/// scaled to 2³² (the last is 2³²).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    offsets: Vec<i64>,
    thresholds: Vec<u64>,
}

impl Row {
    fn pick(&self, position: u32) -> i64 {
        let at = self
            .thresholds
            .partition_point(|t| *t <= u64::from(position));
        self.offsets[at.min(self.offsets.len() - 1)]
    }

    /// The row's distribution: `(offset, probability)`.
    fn distribution(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        let mut before = 0;
        self.offsets
            .iter()
            .zip(&self.thresholds)
            .map(move |(offset, t)| {
                let p = (*t - before) as f64 / SCALE as f64;
                before = *t;
                (*offset, p)
            })
    }
}

const SCALE: u64 = 1 << 32;

/// Mixed into a set's key to draw the noise of a magnitude over the set.
const MAGNITUDE_SALT: u32 = 0x5bd1_e995;

/// The perturbation table.
#[derive(Debug, Clone, PartialEq)]
pub struct PerturbationTable {
    settings: PerturbationSettings,
    /// Rows for true counts `1 ..= k + max_noise` (index `n − 1`); the last serves every larger
    /// count.
    rows: Vec<Row>,
}

impl PerturbationTable {
    /// Builds the table; the settings must be valid.
    pub fn new(settings: PerturbationSettings) -> Result<Self, String> {
        settings.validate()?;
        let last = u64::from(settings.k + settings.max_noise);
        let rows = (1..=last).map(|n| row(settings, n)).collect();
        Ok(Self { settings, rows })
    }

    pub fn settings(&self) -> PerturbationSettings {
        self.settings
    }

    fn row(&self, n: u64) -> &Row {
        let i = (n.min(self.rows.len() as u64) - 1) as usize;
        &self.rows[i]
    }

    /// The published count of a cell with `n` learners and key `key`.
    pub fn perturb(&self, n: u64, key: u32) -> u64 {
        if n == 0 {
            return 0;
        }
        let offset = self.row(n).pick(mix(key));
        (n as i64 + offset).max(0) as u64
    }

    /// Noise for a magnitude (a sum) over the set of key `key`: an offset from the table's last
    /// row (centred on 0, within `max_noise`), drawn from the key mixed otherwise than for the
    /// set's count, so that the two do not move together.
    pub fn noise(&self, key: u32) -> i64 {
        let last = &self.rows[self.rows.len() - 1];
        last.pick(mix(key ^ MAGNITUDE_SALT))
    }

    /// The distribution of the published count of a true count `n`: `(published, probability)`.
    pub fn distribution(&self, n: u64) -> Vec<(u64, f64)> {
        if n == 0 {
            return vec![(0, 1.0)];
        }
        self.row(n)
            .distribution()
            .filter(|(_, p)| *p > 0.0)
            .map(|(offset, p)| ((n as i64 + offset) as u64, p))
            .collect()
    }
}

/// Spreads a cell key over 32 bits, so that keys that differ in a few bits (or by a few
/// learners' keys) land far apart in the row.
fn mix(key: u32) -> u32 {
    let mut x = u64::from(key).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u32
}

/// The row of true count `n`: the allowed published counts, weighted by a normal curve around
/// `n` tilted by `exp(θ·j)`, with θ chosen so that the mean is `n`.
fn row(settings: PerturbationSettings, n: u64) -> Row {
    let (k, d) = (u64::from(settings.k), u64::from(settings.max_noise));
    let values: Vec<u64> = (n.saturating_sub(d)..=n + d)
        .filter(|j| *j == 0 || *j >= k)
        .collect();
    let weights = |theta: f64| -> Vec<f64> {
        let centre = (values[0] + values[values.len() - 1]) as f64 / 2.0;
        values
            .iter()
            .map(|j| {
                let off = *j as f64 - n as f64;
                (-off * off / (2.0 * settings.spread * settings.spread)
                    + theta * (*j as f64 - centre))
                    .exp()
            })
            .collect()
    };
    let mean = |w: &[f64]| -> f64 {
        let total: f64 = w.iter().sum();
        values
            .iter()
            .zip(w)
            .map(|(j, w)| *j as f64 * w)
            .sum::<f64>()
            / total
    };
    // The mean grows with θ; bisect for the θ that makes it `n`.
    let (mut lo, mut hi) = (-20.0f64, 20.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if mean(&weights(mid)) < n as f64 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let w = weights((lo + hi) / 2.0);
    let total: f64 = w.iter().sum();
    let mut thresholds = Vec::with_capacity(w.len());
    let mut sum = 0.0;
    for weight in &w {
        sum += weight / total;
        thresholds.push(((sum * SCALE as f64).round() as u64).min(SCALE));
    }
    if let Some(last) = thresholds.last_mut() {
        *last = SCALE;
    }
    Row {
        offsets: values.iter().map(|j| *j as i64 - n as i64).collect(),
        thresholds,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn table() -> PerturbationTable {
        PerturbationTable::new(PerturbationSettings::default()).expect("defaults are valid")
    }

    #[test]
    fn every_row_is_unbiased_bounded_and_skips_small_counts() {
        for settings in [
            PerturbationSettings::default(),
            PerturbationSettings {
                k: 3,
                max_noise: 3,
                spread: 1.0,
            },
            PerturbationSettings {
                k: 10,
                max_noise: 12,
                spread: 4.0,
            },
        ] {
            let table = PerturbationTable::new(settings).unwrap();
            let (k, d) = (u64::from(settings.k), u64::from(settings.max_noise));
            for n in 0..=(k + d + 20) {
                let dist = table.distribution(n);
                let total: f64 = dist.iter().map(|(_, p)| p).sum();
                assert!((total - 1.0).abs() < 1e-9, "n={n}: total {total}");
                let mean: f64 = dist.iter().map(|(j, p)| *j as f64 * p).sum();
                assert!(
                    (mean - n as f64).abs() < BIAS_BOUND,
                    "{settings:?} n={n}: mean {mean}"
                );
                for (j, _) in &dist {
                    assert!(*j == 0 || *j >= k, "n={n} publishes {j}");
                    assert!(j.abs_diff(n) <= d, "n={n} publishes {j}");
                    assert!(n > 0 || *j == 0, "a true zero stays zero");
                }
                // Noise is real: no row but zero's is a certainty.
                assert!(n == 0 || dist.len() > 1, "n={n}: {dist:?}");
            }
        }
    }

    #[test]
    fn settings_without_an_unbiased_table_are_refused() {
        let bad = PerturbationSettings {
            k: 5,
            max_noise: 4,
            spread: 2.0,
        };
        assert!(
            PerturbationTable::new(bad)
                .unwrap_err()
                .contains("max_noise")
        );
        let bad = PerturbationSettings {
            spread: f64::NAN,
            ..Default::default()
        };
        assert!(PerturbationTable::new(bad).is_err());
    }

    #[test]
    fn published_counts_follow_the_table_over_keys() {
        // Keys of cells are sums of uniform random keys: uniform. Over many keys the published
        // counts have the row's mean.
        let table = table();
        for n in [1u64, 2, 4, 5, 7, 30] {
            let draws = 200_000u64;
            let sum: u64 = (0..draws)
                .map(|i| table.perturb(n, (i as u32).wrapping_mul(2_654_435_761)))
                .sum();
            let mean = sum as f64 / draws as f64;
            assert!((mean - n as f64).abs() < 0.02, "n={n}: mean {mean}");
        }
    }

    proptest! {
        #[test]
        fn the_same_cell_always_gets_the_same_answer(n in 0u64..100_000, key in any::<u32>()) {
            let (a, b) = (table(), table());
            prop_assert_eq!(a.perturb(n, key), b.perturb(n, key));
            prop_assert_eq!(a.perturb(n, key), a.perturb(n, key));
        }

        #[test]
        fn no_small_count_is_published(n in 0u64..100_000, key in any::<u32>()) {
            let published = table().perturb(n, key);
            prop_assert!(published == 0 || published >= 5);
            prop_assert!(published.abs_diff(n) <= 5);
            prop_assert!(n != 0 || published == 0);
        }
    }
}
