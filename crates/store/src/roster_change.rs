//! What a learner upload touches, as the roster log records it (one rule for both backends).
//!
//! A learner's figures depend on their row (institution, discipline, cohort, role, gender), their
//! track and their events — which their identities name. Every learner upserted, and every
//! learner an identity moves away from, has **changed**. Among them, those whose *state* must be
//! read again from their events are **restated**: learners new to the roster, given another
//! track, whose set of identities is not what it was, or who lose an identity to another
//! learner. A learner only moved (another institution, cohort, …) keeps their state, so a reader
//! of the log need not read their events again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nigrani_domain::Learner;

/// What the store held, before the upload, about the learners and identities it names.
#[derive(Debug, Default)]
pub(crate) struct Before {
    /// Each upserted learner already on the roster, and its track.
    pub(crate) tracks: HashMap<String, String>,
    /// `(learner_id, learner_ref)`: the identities the upserted learners had.
    pub(crate) identities: Vec<(String, String)>,
    /// `(learner_ref, learner_id)`: who had each identity of the upload that was known.
    pub(crate) owners: Vec<(String, String)>,
}

/// The learners an upload touches (see the module's header), each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Touched {
    pub(crate) changed: Vec<String>,
    pub(crate) restated: Vec<String>,
}

/// What uploading `upload` over `before` touches.
pub(crate) fn touched(upload: &[Learner], before: &Before) -> Touched {
    // Who holds each identity after the upload: the last learner of the upload naming it.
    let mut owner_after: HashMap<&str, &str> = HashMap::new();
    for learner in upload {
        for identity in &learner.identities {
            owner_after.insert(identity.as_str(), learner.learner_id.as_str());
        }
    }
    let mut had: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (learner_id, identity) in &before.identities {
        had.entry(learner_id.as_str())
            .or_default()
            .insert(identity.as_str());
    }
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    let mut restated: BTreeSet<&str> = BTreeSet::new();
    for learner in upload {
        let id = learner.learner_id.as_str();
        changed.insert(id);
        let holds: BTreeSet<&str> = learner
            .identities
            .iter()
            .map(|r| r.as_str())
            .filter(|r| owner_after.get(r) == Some(&id))
            .collect();
        let same_track = before
            .tracks
            .get(id)
            .is_some_and(|track| track == learner.track.as_str());
        let same_identities = had.get(id).cloned().unwrap_or_default() == holds;
        if !(same_track && same_identities) {
            restated.insert(id);
        }
    }
    for (identity, owner) in &before.owners {
        changed.insert(owner.as_str());
        if owner_after.get(identity.as_str()) != Some(&owner.as_str()) {
            restated.insert(owner.as_str());
        }
    }
    Touched {
        changed: changed.into_iter().map(str::to_owned).collect(),
        restated: restated.into_iter().map(str::to_owned).collect(),
    }
}

impl Touched {
    /// These learners, each to be read again from their events (after a voiding statement
    /// retracted one of them): sorted, without repeats.
    pub(crate) fn restating(mut learners: Vec<String>) -> Self {
        learners.sort();
        learners.dedup();
        Self {
            changed: learners.clone(),
            restated: learners,
        }
    }

    /// The log's `learner_ids` and `restated_ids` columns: JSON arrays.
    pub(crate) fn columns(&self) -> (String, String) {
        let array = |ids: &[String]| serde_json::Value::from(ids.to_vec()).to_string();
        (array(&self.changed), array(&self.restated))
    }

    /// Reads the log's columns back; rows logged before `restated_ids` was (NULL there)
    /// restate every learner they name.
    pub(crate) fn from_columns(
        changed: &str,
        restated: Option<&str>,
    ) -> Result<Self, serde_json::Error> {
        let changed: Vec<String> = serde_json::from_str(changed)?;
        let restated = match restated {
            Some(restated) => serde_json::from_str(restated)?,
            None => changed.clone(),
        };
        Ok(Self { changed, restated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nigrani_domain::{LearnerRef, Role, Track};

    fn learner(id: &str, track: Track, identities: &[&str]) -> Learner {
        Learner {
            learner_id: id.to_owned(),
            identities: identities
                .iter()
                .map(|r| LearnerRef::parse(r).unwrap())
                .collect(),
            institution: "PK-PB-001".to_owned(),
            discipline: "law".to_owned(),
            track,
            cohort: "c1".to_owned(),
            role: Role::Faculty,
            gender: None,
        }
    }

    fn before() -> Before {
        Before {
            tracks: [("A", "soft"), ("B", "soft"), ("C", "hard")]
                .map(|(id, track)| (id.to_owned(), track.to_owned()))
                .into(),
            identities: [("A", "x:a"), ("B", "x:b"), ("C", "x:c"), ("C", "x:c2")]
                .map(|(id, r)| (id.to_owned(), r.to_owned()))
                .to_vec(),
            owners: Vec::new(),
        }
    }

    #[test]
    fn a_learner_only_moved_keeps_their_state() {
        let upload = [learner("A", Track::Soft, &["x:a"])];
        let before = Before {
            owners: vec![("x:a".into(), "A".into())],
            ..before()
        };
        let touched = touched(&upload, &before);
        assert_eq!(touched.changed, ["A"]);
        assert!(touched.restated.is_empty());
    }

    #[test]
    fn new_learners_other_tracks_and_other_identities_are_restated() {
        let upload = [
            learner("N", Track::Soft, &["x:n"]),
            learner("A", Track::Hard, &["x:a"]),
            learner("B", Track::Soft, &["x:b", "x:b2"]),
            learner("C", Track::Hard, &["x:c"]),
        ];
        let before = Before {
            owners: ["x:a", "x:b", "x:c"]
                .map(|r| (r.to_owned(), r[2..].to_uppercase()))
                .to_vec(),
            ..before()
        };
        let touched = touched(&upload, &before);
        assert_eq!(touched.changed, ["A", "B", "C", "N"]);
        assert_eq!(touched.restated, ["A", "B", "C", "N"]);
    }

    #[test]
    fn a_learner_losing_an_identity_to_another_is_restated() {
        let upload = [learner("B", Track::Soft, &["x:b", "x:a"])];
        let before = Before {
            owners: vec![("x:b".into(), "B".into()), ("x:a".into(), "A".into())],
            ..before()
        };
        let touched = touched(&upload, &before);
        assert_eq!(touched.changed, ["A", "B"]);
        assert_eq!(touched.restated, ["A", "B"]);
        // Two learners of one upload naming one identity: the last holds it; both restated.
        let upload = [
            learner("A", Track::Soft, &["x:a"]),
            learner("B", Track::Soft, &["x:b", "x:a"]),
        ];
        let touched = super::touched(&upload, &before);
        assert_eq!(touched.restated, ["A", "B"]);
    }

    #[test]
    fn old_log_rows_restate_every_learner_they_name() {
        let old = Touched::from_columns(r#"["L-1","L-2"]"#, None).unwrap();
        assert_eq!(old.changed, ["L-1", "L-2"]);
        assert_eq!(old.restated, ["L-1", "L-2"]);
        let new = Touched {
            changed: vec!["L-1".into(), "L-2".into()],
            restated: vec!["L-2".into()],
        };
        let (changed, restated) = new.columns();
        assert_eq!(changed, r#"["L-1","L-2"]"#, "a plain array, as before");
        assert_eq!(
            Touched::from_columns(&changed, Some(&restated)).unwrap(),
            new
        );
        assert!(Touched::from_columns("{", None).is_err());
    }
}
