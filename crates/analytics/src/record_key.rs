//! Record keys: every learner's permanent random number, from which the key of a published cell
//! is derived (the cell key method; see [`crate::perturbation`] and [`crate::disclosure`]).
//!
//! A learner's record key is the first 32 bits of SHA-256 over the deployment's secret (drawn
//! once, when the database is made, and kept there) and the learner id. It is as random as a key
//! drawn per learner and stored beside them, and needs no column: it is the same after a
//! re-ingest, a restart or a rebuild, and on every replica, and no export carries it.
//!
//! A cell's key is the sum of its members' record keys modulo 2³², so that it depends only on
//! which learners the cell holds — not on the query that produced it — and adding or removing
//! one learner moves it to an unrelated value.

use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The secret record keys are derived from.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RecordSecret(Arc<str>);

impl RecordSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into().into())
    }

    /// A learner's record key.
    pub fn key_of(&self, learner_id: &str) -> u32 {
        let mut hash = Sha256::new();
        hash.update(self.0.as_bytes());
        // A separator, so that no (secret, id) pair reads as another.
        hash.update([0u8]);
        hash.update(learner_id.as_bytes());
        let digest = hash.finalize();
        u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
    }
}

/// Not printed, so that logs never carry it.
impl std::fmt::Debug for RecordSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSecret(…)")
    }
}

/// The key of a cell whose members' record keys add up to `sum` (as polars adds them up, in
/// 64 bits: a million 32-bit keys stay far below its limit).
pub fn cell_key(sum: i64) -> u32 {
    sum.rem_euclid(1 << 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_secret_and_the_id_only() {
        let a = RecordSecret::new("one secret");
        assert_eq!(
            a.key_of("L-1"),
            RecordSecret::new("one secret").key_of("L-1")
        );
        assert_ne!(a.key_of("L-1"), a.key_of("L-2"));
        assert_ne!(a.key_of("L-1"), RecordSecret::new("another").key_of("L-1"));
        assert_eq!(format!("{a:?}"), "RecordSecret(…)");
    }

    #[test]
    fn a_cell_key_is_its_members_sum_modulo_two_to_the_32() {
        let keys = [u32::MAX, 7, 1 << 31];
        let sum: i64 = keys.iter().map(|k| i64::from(*k)).sum();
        let wrapped = keys.iter().fold(0u32, |acc, k| acc.wrapping_add(*k));
        assert_eq!(cell_key(sum), wrapped);
        assert_eq!(cell_key(0), 0);
    }

    #[test]
    fn keys_spread_evenly() {
        let secret = RecordSecret::new("spread");
        let mut buckets = [0u32; 16];
        for i in 0..16_000 {
            buckets[(secret.key_of(&format!("L-{i}")) >> 28) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (850..1150).contains(b)),
            "{buckets:?}"
        );
    }
}
