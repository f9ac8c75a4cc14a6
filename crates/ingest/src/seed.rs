//! The reference data nigrani ships with: HEC-recognised universities by province, disciplines,
//! and the two tracks' plans and targets. It goes through the same CSV parser as an admin's file.
//!
//! The track plans' course ids name the program's courses as nigrani tracks them; an admin
//! replaces them with the platforms' real course ids by uploading a tracks file.

use std::sync::Arc;

use nigrani_domain::{Discipline, Institution, TrackPlan};
use nigrani_store::Store;

use crate::roster::{self, RosterError, RosterKind, Rows};

/// HEC-recognised universities and degree-awarding institutions, by province.
pub const INSTITUTIONS_CSV: &str = include_str!("../seed/institutions.csv");
/// Disciplines, STEM or not.
pub const DISCIPLINES_CSV: &str = include_str!("../seed/disciplines.csv");
/// The two tracks: required courses and targets (soft: 1,000 trained; hard: 250 certified,
/// 500 stretch).
pub const TRACKS_CSV: &str = include_str!("../seed/tracks.csv");

/// The seed files, parsed.
pub fn rows() -> Result<Vec<Rows>, RosterError> {
    Ok(vec![
        roster::parse_csv(RosterKind::Institutions, INSTITUTIONS_CSV.as_bytes())?,
        roster::parse_csv(RosterKind::Disciplines, DISCIPLINES_CSV.as_bytes())?,
        roster::parse_csv(RosterKind::Tracks, TRACKS_CSV.as_bytes())?,
    ])
}

/// The seed reference data a demo program is generated over.
pub struct Reference {
    pub institutions: Vec<Institution>,
    pub disciplines: Vec<Discipline>,
    pub plans: Vec<TrackPlan>,
}

/// The seed reference data, parsed.
pub fn reference() -> Result<Reference, RosterError> {
    let mut reference = Reference {
        institutions: Vec::new(),
        disciplines: Vec::new(),
        plans: Vec::new(),
    };
    for rows in rows()? {
        match rows {
            Rows::Institutions(rows) => reference.institutions = rows,
            Rows::Disciplines(rows) => reference.disciplines = rows,
            Rows::Tracks(rows) => reference.plans = rows,
            Rows::Cohorts(_) | Rows::Learners(_) => {}
        }
    }
    Ok(reference)
}

/// Loads each kind of seed data whose table is still empty, so a fresh install has the
/// universities, disciplines and tracks without overwriting what an admin changed since.
/// Returns the kinds loaded.
pub async fn install_if_empty(store: &Arc<dyn Store>) -> Result<Vec<RosterKind>, RosterError> {
    let mut loaded = Vec::new();
    for rows in rows()? {
        let empty = match rows.kind() {
            RosterKind::Institutions => store.institutions().await?.is_empty(),
            RosterKind::Disciplines => store.disciplines().await?.is_empty(),
            RosterKind::Tracks => store.track_plans().await?.is_empty(),
            RosterKind::Cohorts | RosterKind::Learners => false,
        };
        if empty {
            roster::apply(store, &rows).await?;
            loaded.push(rows.kind());
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use nigrani_domain::Province;

    use super::*;

    #[test]
    fn seed_files_parse_and_cover_every_province() {
        let rows = rows().unwrap();
        let Rows::Institutions(institutions) = &rows[0] else {
            panic!("institutions first");
        };
        assert!(institutions.len() >= 200, "{}", institutions.len());
        let provinces: HashSet<Province> = institutions.iter().map(|i| i.province).collect();
        assert_eq!(provinces.len(), Province::ALL.len());
        let Rows::Tracks(tracks) = &rows[2] else {
            panic!("tracks third");
        };
        assert_eq!(tracks.len(), 2);
    }
}
