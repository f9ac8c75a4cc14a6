//! The learner frame and the cells, kept current row by row.
//!
//! Rebuilding the frame and regrouping the cells from a million learners at every publish takes
//! about a third of a second, several times a second under ingest. A batch touches a few
//! thousand learners, so [`LiveFrame`] keeps each learner's figures in plain vectors, recomputes
//! only the touched rows, and re-adds only the cells those rows belong to (from their members,
//! so sums never drift). A publish then only copies the vectors into polars columns; the columns
//! that depend on the roster alone are built once per roster.

use std::collections::HashMap;

use polars::prelude::*;

use crate::definitions::{DAY_MICROS, Dimension};
use crate::frame::{QueryError, cell, columns};
use crate::state::{NEVER, Roster, States};

/// A row's code in a dimension.
fn dimension_code(roster: &Roster, dimension: Dimension, row: usize) -> u32 {
    match dimension {
        Dimension::Province => code(
            nigrani_domain::Province::ALL,
            roster.institutions[roster.institution[row] as usize].province,
        ),
        Dimension::Sector => code(
            nigrani_domain::Sector::ALL,
            roster.institutions[roster.institution[row] as usize].sector,
        ),
        Dimension::Institution => roster.institution[row],
        Dimension::Discipline => roster.discipline[row],
        Dimension::Track => roster.track[row],
        Dimension::Cohort => roster.cohort[row],
        Dimension::Gender => roster.gender[row],
        Dimension::Role => roster.role[row],
    }
}

/// Every learner's code of each dimension, in [`Dimension::ALL`] order.
fn dimension_codes(roster: &Roster) -> Vec<Vec<u32>> {
    Dimension::ALL
        .iter()
        .map(|d| {
            (0..roster.len())
                .map(|row| dimension_code(roster, *d, row))
                .collect()
        })
        .collect()
}

/// The columns that depend on the roster alone: the dimension codes, then whether the learner
/// is on the soft track and its record key (64 bits wide, so that sums of them do not wrap).
fn fixed_columns(codes: &[Vec<u32>], soft: &[bool], record_keys: &[u32]) -> Vec<Column> {
    let mut fixed: Vec<Column> = Dimension::ALL
        .iter()
        .zip(codes)
        .map(|(d, values)| Column::new(d.as_str().into(), values.clone()))
        .collect();
    fixed.push(Column::new(columns::SOFT.into(), soft.to_vec()));
    let keys: Vec<i64> = record_keys.iter().map(|k| i64::from(*k)).collect();
    fixed.push(Column::new(columns::RECORD_KEY.into(), keys));
    fixed
}

/// How many dimensions there are (a cell's key holds one code of each).
const DIMENSIONS: usize = 8;
const _: () = assert!(Dimension::ALL.len() == DIMENSIONS);

/// The position of a dimension in [`Dimension::ALL`] (and in a cell's key).
fn dimension_index(dimension: Dimension) -> usize {
    Dimension::ALL
        .iter()
        .position(|d| *d == dimension)
        .unwrap_or(0)
}

fn code<T: PartialEq>(all: &[T], value: T) -> u32 {
    all.iter().position(|v| *v == value).unwrap_or(0) as u32
}

fn at(value: i64) -> Option<i64> {
    (value != NEVER).then_some(value)
}

/// One learner's figures (see [`crate::definitions`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct RowFigures {
    enrolled_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    certified_at: Option<i64>,
    withdrawn_at: Option<i64>,
    last_activity: Option<i64>,
    progress: f64,
    score: Option<f64>,
    days_to_complete: Option<f64>,
}

impl RowFigures {
    fn of(roster: &Roster, states: &States, row: usize) -> Self {
        let learner = &states.learners[row];
        let completed_at = states.completed_at(roster, row);
        Self {
            enrolled_at: states.enrolled_at(roster, row),
            started_at: at(learner.started_at),
            completed_at,
            certified_at: at(learner.certified_at),
            withdrawn_at: at(learner.withdrawn_at),
            last_activity: (learner.last_activity != i64::MIN).then_some(learner.last_activity),
            progress: states.progress(roster, row),
            score: (!learner.best_score.is_nan()).then_some(learner.best_score),
            days_to_complete: completed_at
                .map(|c| (c - learner.first_event) as f64 / DAY_MICROS as f64),
        }
    }
}

/// Per cell (a combination of every dimension): its members and what they add up to.
struct Cells {
    /// Per dimension (in [`Dimension::ALL`] order), the cell's code.
    keys: Vec<Vec<u32>>,
    /// The cell of each key.
    index: HashMap<[u32; DIMENSIONS], u32>,
    /// Per learner row: its cell.
    cell_of: Vec<u32>,
    /// Per cell: its learner rows. A cell its last member moved out of stays, empty, and is
    /// left out of the cells frame.
    members: Vec<Vec<u32>>,
    /// Per cell: its members enrolled by the frame's moment.
    learners: Vec<i64>,
    started: Vec<i64>,
    completed: Vec<i64>,
    certified: Vec<i64>,
    trained: Vec<i64>,
    withdrawn: Vec<i64>,
    progress: Vec<f64>,
    score: Vec<f64>,
    scored: Vec<i64>,
    /// Per cell and count above: the sum of the counted members' record keys (the key of the
    /// set the count is of; see [`crate::record_key`]).
    key_sums: CellKeySums,
}

/// Per cell, the sums of record keys of the members each count counts.
#[derive(Default)]
struct CellKeySums {
    learners: Vec<i64>,
    started: Vec<i64>,
    completed: Vec<i64>,
    certified: Vec<i64>,
    trained: Vec<i64>,
    withdrawn: Vec<i64>,
    scored: Vec<i64>,
}

impl CellKeySums {
    /// The cells frame's column of each sum, in the order of [`CellKeySums::columns`].
    const NAMES: [&str; 7] = [
        cell::LEARNERS_KEY,
        cell::STARTED_KEY,
        cell::COMPLETED_KEY,
        cell::CERTIFIED_KEY,
        cell::TRAINED_KEY,
        cell::WITHDRAWN_KEY,
        cell::SCORED_KEY,
    ];

    fn columns(&self) -> [&Vec<i64>; 7] {
        [
            &self.learners,
            &self.started,
            &self.completed,
            &self.certified,
            &self.trained,
            &self.withdrawn,
            &self.scored,
        ]
    }

    fn push_empty(&mut self) {
        for column in self.columns_mut() {
            column.push(0);
        }
    }

    fn columns_mut(&mut self) -> [&mut Vec<i64>; 7] {
        [
            &mut self.learners,
            &mut self.started,
            &mut self.completed,
            &mut self.certified,
            &mut self.trained,
            &mut self.withdrawn,
            &mut self.scored,
        ]
    }
}

/// The learner frame's per-learner figures as vectors, and the cells over them.
pub struct LiveFrame {
    rows: usize,
    /// Per dimension, each row's code (kept, so that a roster change recodes only its rows).
    codes: Vec<Vec<u32>>,
    fixed: Vec<Column>,
    soft: Vec<bool>,
    record_keys: Vec<u32>,
    /// The moment the cells count enrolment as of: a learner whose enrolment is dated later
    /// (a cohort that has not started) is left out of them.
    moment: i64,
    enrolled_at: Vec<i64>,
    started_at: Vec<Option<i64>>,
    completed_at: Vec<Option<i64>>,
    certified_at: Vec<Option<i64>>,
    withdrawn_at: Vec<Option<i64>>,
    last_activity: Vec<Option<i64>>,
    progress: Vec<f64>,
    score: Vec<Option<f64>>,
    days_to_complete: Vec<Option<f64>>,
    cells: Option<Cells>,
}

impl LiveFrame {
    /// The frame of every learner; with `cells`, the cells too, counting the learners enrolled
    /// by `moment`.
    pub fn new(roster: &Roster, states: &States, cells: bool, moment: i64) -> Self {
        let rows = roster.len();
        let codes = dimension_codes(roster);
        let soft: Vec<bool> = (0..rows)
            .map(|row| roster.track_of(row) == nigrani_domain::Track::Soft)
            .collect();
        let fixed = fixed_columns(&codes, &soft, &roster.record_keys);
        let mut live = Self {
            rows,
            codes,
            fixed,
            soft,
            record_keys: roster.record_keys.clone(),
            moment,
            enrolled_at: vec![NEVER; rows],
            started_at: vec![None; rows],
            completed_at: vec![None; rows],
            certified_at: vec![None; rows],
            withdrawn_at: vec![None; rows],
            last_activity: vec![None; rows],
            progress: vec![0.0; rows],
            score: vec![None; rows],
            days_to_complete: vec![None; rows],
            cells: None,
        };
        for row in 0..rows {
            live.set(row, RowFigures::of(roster, states, row));
        }
        if cells {
            live.cells = Some(live.group_cells());
        }
        live
    }

    fn set(&mut self, row: usize, figures: RowFigures) {
        self.enrolled_at[row] = figures.enrolled_at;
        self.started_at[row] = figures.started_at;
        self.completed_at[row] = figures.completed_at;
        self.certified_at[row] = figures.certified_at;
        self.withdrawn_at[row] = figures.withdrawn_at;
        self.last_activity[row] = figures.last_activity;
        self.progress[row] = figures.progress;
        self.score[row] = figures.score;
        self.days_to_complete[row] = figures.days_to_complete;
    }

    /// Recomputes the given rows (after their states changed) and the cells they belong to,
    /// and moves the cells on to `moment`: the cells of a cohort that started meanwhile are
    /// added up again, since its members without an `enrolled` event enrol with it. Returns
    /// whether anything changed.
    pub fn update(&mut self, roster: &Roster, states: &States, rows: &[u32], moment: i64) -> bool {
        for &row in rows {
            self.set(row as usize, RowFigures::of(roster, states, row as usize));
        }
        let before = std::mem::replace(&mut self.moment, moment);
        let started: Vec<u32> = (0..roster.cohort_starts.len() as u32)
            .filter(|&c| {
                let start = roster.cohort_starts[c as usize];
                before < start && start <= moment
            })
            .collect();
        let Some(mut cells) = self.cells.take() else {
            return !rows.is_empty() || !started.is_empty();
        };
        let mut touched: Vec<u32> = rows.iter().map(|&r| cells.cell_of[r as usize]).collect();
        if !started.is_empty() {
            let cohort = dimension_index(Dimension::Cohort);
            touched.extend(
                (0..cells.members.len() as u32)
                    .filter(|&cell| started.contains(&cells.keys[cohort][cell as usize])),
            );
        }
        touched.sort_unstable();
        touched.dedup();
        for &cell in &touched {
            self.add_up(&mut cells, cell as usize);
        }
        self.cells = Some(cells);
        !touched.is_empty()
    }

    /// A row's cell key: its code in every dimension.
    fn cell_key(&self, row: usize) -> [u32; DIMENSIONS] {
        let mut key = [0u32; DIMENSIONS];
        for (value, column) in key.iter_mut().zip(&self.codes) {
            *value = column[row];
        }
        key
    }

    /// Groups every learner into its cell and adds the cells up.
    fn group_cells(&self) -> Cells {
        let mut cells = Cells::default();
        for row in 0..self.rows {
            let key = self.cell_key(row);
            let cell = cells.cell_for(key);
            cells.members[cell as usize].push(row as u32);
            cells.cell_of.push(cell);
        }
        for cell in 0..cells.members.len() {
            self.add_up(&mut cells, cell);
        }
        cells
    }

    /// Takes in roster changes: `rows` are the learners added (rows past the frame's end) or
    /// changed (dimensions, track or events) since, their states already current. Moves changed
    /// rows to their new cells and adds up the cells they left and joined; then as
    /// [`LiveFrame::update`].
    pub fn update_roster(
        &mut self,
        roster: &Roster,
        states: &States,
        rows: &[u32],
        moment: i64,
    ) -> bool {
        let n = roster.len();
        if n > self.rows {
            self.rows = n;
            self.soft.resize(n, false);
            self.enrolled_at.resize(n, NEVER);
            self.started_at.resize(n, None);
            self.completed_at.resize(n, None);
            self.certified_at.resize(n, None);
            self.withdrawn_at.resize(n, None);
            self.last_activity.resize(n, None);
            self.progress.resize(n, 0.0);
            self.score.resize(n, None);
            self.days_to_complete.resize(n, None);
        }
        for column in &mut self.codes {
            column.resize(n, 0);
        }
        for &row in rows {
            let row = row as usize;
            self.soft[row] = roster.track_of(row) == nigrani_domain::Track::Soft;
            for (column, dimension) in self.codes.iter_mut().zip(Dimension::ALL) {
                column[row] = dimension_code(roster, *dimension, row);
            }
        }
        self.record_keys.clone_from(&roster.record_keys);
        self.fixed = fixed_columns(&self.codes, &self.soft, &self.record_keys);
        if let Some(mut cells) = self.cells.take() {
            cells.cell_of.resize(n, NO_CELL);
            // Per cell, the rows leaving it: removed in one pass over its members.
            let mut leaving: HashMap<u32, Vec<u32>> = HashMap::new();
            for &row in rows {
                let cell = cells.cell_for(self.cell_key(row as usize));
                let before = std::mem::replace(&mut cells.cell_of[row as usize], cell);
                if before == cell {
                    continue;
                }
                if before != NO_CELL {
                    leaving.entry(before).or_default().push(row);
                }
                cells.members[cell as usize].push(row);
            }
            for (cell, mut gone) in leaving {
                gone.sort_unstable();
                cells.members[cell as usize].retain(|member| gone.binary_search(member).is_err());
                self.add_up(&mut cells, cell as usize);
            }
            self.cells = Some(cells);
        }
        self.update(roster, states, rows, moment)
    }
}

/// A row not in any cell yet.
const NO_CELL: u32 = u32::MAX;

impl Cells {
    /// The cell of a key, added (empty) when there is none.
    fn cell_for(&mut self, key: [u32; DIMENSIONS]) -> u32 {
        if let Some(&cell) = self.index.get(&key) {
            return cell;
        }
        let cell = self.members.len() as u32;
        self.index.insert(key, cell);
        for (d, value) in key.iter().enumerate() {
            self.keys[d].push(*value);
        }
        self.members.push(Vec::new());
        self.learners.push(0);
        self.started.push(0);
        self.completed.push(0);
        self.certified.push(0);
        self.trained.push(0);
        self.withdrawn.push(0);
        self.progress.push(0.0);
        self.score.push(0.0);
        self.scored.push(0);
        self.key_sums.push_empty();
        cell
    }
}

impl Default for Cells {
    fn default() -> Self {
        Self {
            keys: vec![Vec::new(); DIMENSIONS],
            index: HashMap::new(),
            cell_of: Vec::new(),
            members: Vec::new(),
            learners: Vec::new(),
            started: Vec::new(),
            completed: Vec::new(),
            certified: Vec::new(),
            trained: Vec::new(),
            withdrawn: Vec::new(),
            progress: Vec::new(),
            score: Vec::new(),
            scored: Vec::new(),
            key_sums: CellKeySums::default(),
        }
    }
}

impl LiveFrame {
    /// Adds up one cell from its members enrolled by the frame's moment.
    fn add_up(&self, cells: &mut Cells, cell: usize) {
        let (mut learners, mut started, mut completed, mut certified, mut trained) =
            (0, 0, 0, 0, 0);
        let mut withdrawn = 0;
        let (mut progress, mut score, mut scored) = (0.0, 0.0, 0);
        // Key sums in the order of `CellKeySums::columns_mut`.
        let mut key_sums = [0i64; 7];
        for &row in &cells.members[cell] {
            let row = row as usize;
            if self.enrolled_at[row] > self.moment {
                continue;
            }
            let record_key = i64::from(self.record_keys[row]);
            let is_completed = self.completed_at[row].is_some();
            let is_certified = self.certified_at[row].is_some();
            let is_scored = self.score[row].is_some();
            let counted = [
                true,
                self.started_at[row].is_some(),
                is_completed,
                is_certified,
                if self.soft[row] {
                    is_completed
                } else {
                    is_certified
                },
                self.withdrawn_at[row].is_some() && !is_completed,
                is_scored,
            ];
            for (sum, counted) in key_sums.iter_mut().zip(counted) {
                *sum += i64::from(counted) * record_key;
            }
            let [_, is_started, _, _, is_trained, is_withdrawn, _] = counted;
            learners += 1;
            started += i64::from(is_started);
            completed += i64::from(is_completed);
            certified += i64::from(is_certified);
            trained += i64::from(is_trained);
            withdrawn += i64::from(is_withdrawn);
            progress += self.progress[row];
            if let Some(s) = self.score[row] {
                score += s;
                scored += 1;
            }
        }
        for (column, sum) in cells.key_sums.columns_mut().into_iter().zip(key_sums) {
            column[cell] = sum;
        }
        cells.learners[cell] = learners;
        cells.started[cell] = started;
        cells.completed[cell] = completed;
        cells.certified[cell] = certified;
        cells.trained[cell] = trained;
        cells.withdrawn[cell] = withdrawn;
        cells.progress[cell] = progress;
        cells.score[cell] = score;
        cells.scored[cell] = scored;
    }

    /// The learner frame: one row per learner, dimension codes and the per-learner figures.
    pub fn frame(&self) -> Result<DataFrame, QueryError> {
        let mut all: Vec<Column> = self.fixed[..Dimension::ALL.len()].to_vec();
        all.extend([
            Column::new(columns::ENROLLED_AT.into(), self.enrolled_at.clone()),
            Column::new(columns::STARTED_AT.into(), self.started_at.clone()),
            Column::new(columns::COMPLETED_AT.into(), self.completed_at.clone()),
            Column::new(columns::CERTIFIED_AT.into(), self.certified_at.clone()),
            Column::new(columns::WITHDRAWN_AT.into(), self.withdrawn_at.clone()),
            Column::new(columns::LAST_ACTIVITY.into(), self.last_activity.clone()),
            Column::new(columns::PROGRESS.into(), self.progress.clone()),
            Column::new(columns::SCORE.into(), self.score.clone()),
            Column::new(
                columns::DAYS_TO_COMPLETE.into(),
                self.days_to_complete.clone(),
            ),
        ]);
        all.extend(self.fixed[Dimension::ALL.len()..].iter().cloned());
        Ok(DataFrame::new(self.rows, all)?)
    }

    /// The cells: per combination of every dimension, its learners and their sums (the columns
    /// [`crate::query::breakdown_from_cells`] reads). Empty without cells.
    pub fn cells(&self) -> Result<DataFrame, QueryError> {
        let Some(cells) = &self.cells else {
            return Ok(DataFrame::empty());
        };
        // Cells left empty by roster changes are not there for a rebuild either.
        let kept: Vec<usize> = (0..cells.members.len())
            .filter(|&cell| !cells.members[cell].is_empty())
            .collect();
        fn pick<T: Copy>(values: &[T], kept: &[usize]) -> Vec<T> {
            if kept.len() == values.len() {
                values.to_vec()
            } else {
                kept.iter().map(|&i| values[i]).collect()
            }
        }
        let mut all: Vec<Column> = Dimension::ALL
            .iter()
            .zip(&cells.keys)
            .map(|(d, codes)| Column::new(d.as_str().into(), pick(codes, &kept)))
            .collect();
        all.extend([
            Column::new(cell::LEARNERS.into(), pick(&cells.learners, &kept)),
            Column::new(cell::STARTED.into(), pick(&cells.started, &kept)),
            Column::new(cell::COMPLETED.into(), pick(&cells.completed, &kept)),
            Column::new(cell::CERTIFIED.into(), pick(&cells.certified, &kept)),
            Column::new(cell::TRAINED.into(), pick(&cells.trained, &kept)),
            Column::new(cell::WITHDRAWN.into(), pick(&cells.withdrawn, &kept)),
            Column::new(cell::PROGRESS.into(), pick(&cells.progress, &kept)),
            Column::new(cell::SCORE.into(), pick(&cells.score, &kept)),
            Column::new(cell::SCORED.into(), pick(&cells.scored, &kept)),
        ]);
        all.extend(
            CellKeySums::NAMES
                .iter()
                .zip(cells.key_sums.columns())
                .map(|(name, sums)| Column::new((*name).into(), pick(sums, &kept))),
        );
        Ok(DataFrame::new(kept.len(), all)?)
    }
}
