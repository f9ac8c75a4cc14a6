//! Learner state: what each learner on the roster has done, kept per learner and per required
//! course, so memory grows with learners, not with events.
//!
//! Every update is a minimum or a maximum (first start, last activity, best score, …), so events
//! can arrive in any order — Coursera's batches lag by hours, report pulls by days — and the state
//! comes out the same. The definitions it serves are in [`crate::definitions`].

use std::collections::HashMap;

use nigrani_domain::{Cohort, EventKind, Institution, Learner, Track, TrackPlan};
use nigrani_store::FeedEvent;

use crate::record_key::RecordSecret;

/// "No time": the state's timestamps are microseconds since the epoch, with these sentinels.
pub const NEVER: i64 = i64::MAX;
const NOT_YET: i64 = i64::MIN;

/// Pakistan Standard Time is UTC+5 all year: days, weeks and months are cut there.
pub const PAKISTAN_OFFSET_MICROS: i64 = 5 * 3_600_000_000;
/// The first day of the activity calendar (2025-01-01 in Pakistan), as days since 1970-01-01.
/// Earlier events count on this day; the program started after it.
pub const CALENDAR_EPOCH_DAY: i64 = 20_089;

/// The calendar day (in Pakistan) of a moment, as days since 1970-01-01.
pub fn pakistan_day(micros: i64) -> i64 {
    (micros + PAKISTAN_OFFSET_MICROS).div_euclid(crate::definitions::DAY_MICROS)
}

/// The roster as analytics sees it: learners by row, each dimension as a small code, and the
/// dictionaries that turn codes back into names.
///
/// Rows are stable: a roster change updates a learner's row in place and gives new learners
/// rows at the end (see the engine's `roster_sync`), so the state kept per row stays valid.
/// Dictionaries are in the store's order (by key), which is the order of rows in answers.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// Learner ids; a learner's position is its row. Sorted when the roster is read whole;
    /// learners added later follow.
    pub ids: LearnerIds,
    /// Rows ordered by learner id, for lookups.
    pub by_id: Vec<u32>,
    /// Per row: index into `institutions`.
    pub institution: Vec<u32>,
    /// Per row: index into `disciplines`.
    pub discipline: Vec<u32>,
    /// Per row: index into `cohorts`.
    pub cohort: Vec<u32>,
    /// Per row: index into `Track::ALL`.
    pub track: Vec<u32>,
    /// Per row: index into `Role::ALL`.
    pub role: Vec<u32>,
    /// Per row: index into `Gender::ALL`, or `Gender::ALL.len()` when not given.
    pub gender: Vec<u32>,
    /// Institutions, by code.
    pub institutions: Vec<Institution>,
    /// Discipline codes.
    pub disciplines: Vec<String>,
    /// Cohorts, by code.
    pub cohorts: Vec<Cohort>,
    /// Per cohort code: the moment it starts (its first day's start in Pakistan), in
    /// microseconds — the enrolment of members the events do not date.
    pub cohort_starts: Vec<i64>,
    /// Required courses per track (index into `Track::ALL`).
    pub required_courses: Vec<Vec<String>>,
    /// The program's target per track (index into `Track::ALL`): trained (soft), certified (hard).
    pub track_targets: Vec<u32>,
    /// A stretch target per track, where there is one.
    pub track_stretch_targets: Vec<Option<u32>>,
    /// Per row: the learner's record key (see [`crate::record_key`]).
    pub record_keys: Vec<u32>,
    /// What record keys are derived from.
    record_secret: RecordSecret,
}

/// Learner ids in one buffer. A roster change clones the roster (a snapshot still shares it):
/// a million ids then copy as two blocks rather than a million allocations.
#[derive(Debug, Clone, Default)]
pub struct LearnerIds {
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<usize>,
}

impl LearnerIds {
    /// Adds an id as the next row.
    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len());
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The ids in row order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|row| &self[row])
    }

    /// Bytes the ids take.
    pub fn heap_bytes(&self) -> usize {
        self.text.len() + self.ends.len() * std::mem::size_of::<usize>()
    }
}

impl std::ops::Index<usize> for LearnerIds {
    type Output = str;

    fn index(&self, row: usize) -> &str {
        let start = row.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[row]]
    }
}

impl Roster {
    /// Builds the roster from the store's rows, with record keys derived from `record_secret`
    /// (the store's). Learners naming unknown references are left out (the store's foreign keys
    /// prevent them).
    pub fn new(
        mut learners: Vec<Learner>,
        institutions: Vec<Institution>,
        disciplines: Vec<String>,
        cohorts: Vec<Cohort>,
        plans: &[TrackPlan],
        record_secret: RecordSecret,
    ) -> Self {
        learners.sort_by(|a, b| a.learner_id.cmp(&b.learner_id));
        let mut roster = Roster {
            record_secret,
            required_courses: Track::ALL
                .iter()
                .map(|track| {
                    plans
                        .iter()
                        .find(|p| p.track == *track)
                        .map(|p| p.required_courses.clone())
                        .unwrap_or_default()
                })
                .collect(),
            track_targets: Track::ALL
                .iter()
                .map(|track| {
                    plans
                        .iter()
                        .find(|p| p.track == *track)
                        .map_or(0, |p| p.target)
                })
                .collect(),
            track_stretch_targets: Track::ALL
                .iter()
                .map(|track| {
                    plans
                        .iter()
                        .find(|p| p.track == *track)
                        .and_then(|p| p.stretch_target)
                })
                .collect(),
            ..Roster::default()
        };
        roster.set_reference(institutions, disciplines, cohorts);
        let codes = roster.codes();
        for learner in &learners {
            if let Some(learner_codes) = codes.of(learner) {
                roster.push(&learner.learner_id, learner_codes);
            }
        }
        roster.by_id = (0..roster.len() as u32).collect();
        roster
    }

    fn set_reference(
        &mut self,
        institutions: Vec<Institution>,
        disciplines: Vec<String>,
        cohorts: Vec<Cohort>,
    ) {
        self.institutions = institutions;
        self.disciplines = disciplines;
        self.cohort_starts = cohorts
            .iter()
            .map(|c| crate::period::day_start_micros(c.starts_on))
            .collect();
        self.cohorts = cohorts;
    }

    /// Replaces the dictionaries (institutions, disciplines, cohorts) with the store's current
    /// ones and recodes every row. Returns false, changing nothing, when a row's institution,
    /// discipline or cohort is gone from them (the store's foreign keys prevent it).
    pub fn replace_reference(
        &mut self,
        institutions: Vec<Institution>,
        disciplines: Vec<String>,
        cohorts: Vec<Cohort>,
    ) -> bool {
        fn recode(old: &[&str], new: &HashMap<&str, u32>) -> Option<Vec<u32>> {
            old.iter().map(|key| new.get(key).copied()).collect()
        }
        let institution = recode(
            &self
                .institutions
                .iter()
                .map(|i| i.hec_id.as_str())
                .collect::<Vec<_>>(),
            &key_index(institutions.iter().map(|i| i.hec_id.as_str())),
        );
        let discipline = recode(
            &self
                .disciplines
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &key_index(disciplines.iter().map(String::as_str)),
        );
        let cohort = recode(
            &self
                .cohorts
                .iter()
                .map(|c| c.cohort_id.as_str())
                .collect::<Vec<_>>(),
            &key_index(cohorts.iter().map(|c| c.cohort_id.as_str())),
        );
        let (Some(institution), Some(discipline), Some(cohort)) = (institution, discipline, cohort)
        else {
            return false;
        };
        let remap = |codes: &mut Vec<u32>, map: &[u32]| {
            for code in codes.iter_mut() {
                *code = map[*code as usize];
            }
        };
        remap(&mut self.institution, &institution);
        remap(&mut self.discipline, &discipline);
        remap(&mut self.cohort, &cohort);
        self.set_reference(institutions, disciplines, cohorts);
        true
    }

    /// The codes of the roster's dictionaries, to code learners with.
    pub fn codes(&self) -> Codes {
        Codes {
            institution: key_index(self.institutions.iter().map(|i| i.hec_id.as_str()))
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            discipline: key_index(self.disciplines.iter().map(String::as_str))
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            cohort: key_index(self.cohorts.iter().map(|c| c.cohort_id.as_str()))
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }

    fn push(&mut self, learner_id: &str, codes: LearnerCodes) {
        self.record_keys.push(self.record_secret.key_of(learner_id));
        self.ids.push(learner_id);
        self.write(self.ids.len() - 1, codes);
    }

    /// Sets a row's codes; a row one past the end is added.
    fn write(&mut self, row: usize, codes: LearnerCodes) {
        let columns = [
            (&mut self.institution, codes.institution),
            (&mut self.discipline, codes.discipline),
            (&mut self.cohort, codes.cohort),
            (&mut self.track, codes.track),
            (&mut self.role, codes.role),
            (&mut self.gender, codes.gender),
        ];
        for (column, code) in columns {
            if row == column.len() {
                column.push(code);
            } else {
                column[row] = code;
            }
        }
    }

    /// Adds or updates learners (already coded, ids distinct), keeping rows stable: a learner on the roster
    /// keeps its row, new learners get rows at the end. Returns each learner's row.
    pub fn upsert(&mut self, learners: &[(&str, LearnerCodes)]) -> Vec<u32> {
        let mut rows = Vec::with_capacity(learners.len());
        let mut added: Vec<u32> = Vec::new();
        for (learner_id, codes) in learners {
            match self.row(learner_id) {
                Some(row) => {
                    self.write(row, *codes);
                    rows.push(row as u32);
                }
                None => {
                    self.push(learner_id, *codes);
                    let row = (self.len() - 1) as u32;
                    added.push(row);
                    rows.push(row);
                }
            }
        }
        if !added.is_empty() {
            added.sort_by(|a, b| self.ids[*a as usize].cmp(&self.ids[*b as usize]));
            let mut merged = Vec::with_capacity(self.by_id.len() + added.len());
            let (mut old, mut new) = (self.by_id.iter().peekable(), added.iter().peekable());
            while let (Some(&&a), Some(&&b)) = (old.peek(), new.peek()) {
                if self.ids[a as usize] <= self.ids[b as usize] {
                    merged.push(a);
                    old.next();
                } else {
                    merged.push(b);
                    new.next();
                }
            }
            merged.extend(old);
            merged.extend(new);
            self.by_id = merged;
        }
        rows
    }

    /// Learners on the roster.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the roster is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The row of a learner id.
    pub fn row(&self, learner_id: &str) -> Option<usize> {
        self.by_id
            .binary_search_by(|&row| self.ids[row as usize].cmp(learner_id))
            .ok()
            .map(|i| self.by_id[i] as usize)
    }

    /// The track of a row.
    pub fn track_of(&self, row: usize) -> Track {
        Track::ALL[self.track[row] as usize]
    }

    /// When the row's cohort starts (microseconds).
    pub fn cohort_start(&self, row: usize) -> i64 {
        self.cohort_starts
            .get(self.cohort[row] as usize)
            .copied()
            .unwrap_or(NEVER)
    }

    /// Bytes the roster's per-learner columns take (ids, dimension codes and record keys).
    pub fn heap_bytes(&self) -> usize {
        self.ids.heap_bytes() + 8 * 4 * self.len()
    }

    /// Most required courses of any track: the stride of per-course state.
    pub fn course_slots(&self) -> usize {
        self.required_courses
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
    }
}

/// Keys to their positions.
fn key_index<'a>(keys: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u32> {
    keys.enumerate().map(|(i, key)| (key, i as u32)).collect()
}

/// A learner's code in each dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerCodes {
    pub institution: u32,
    pub discipline: u32,
    pub cohort: u32,
    pub track: u32,
    pub role: u32,
    pub gender: u32,
}

/// The codes of a roster's dictionaries.
pub struct Codes {
    institution: HashMap<String, u32>,
    discipline: HashMap<String, u32>,
    cohort: HashMap<String, u32>,
}

impl Codes {
    /// A learner's codes; `None` when it names an institution, discipline or cohort the
    /// dictionaries do not hold.
    pub fn of(&self, learner: &Learner) -> Option<LearnerCodes> {
        Some(LearnerCodes {
            institution: *self.institution.get(&learner.institution)?,
            discipline: *self.discipline.get(&learner.discipline)?,
            cohort: *self.cohort.get(&learner.cohort)?,
            track: code_of(nigrani_domain::Track::ALL, learner.track),
            role: code_of(nigrani_domain::Role::ALL, learner.role),
            gender: match learner.gender {
                Some(g) => code_of(nigrani_domain::Gender::ALL, g),
                None => nigrani_domain::Gender::ALL.len() as u32,
            },
        })
    }
}

fn code_of<T: PartialEq>(all: &[T], value: T) -> u32 {
    all.iter().position(|v| *v == value).unwrap_or(0) as u32
}

/// One event reduced to what the state needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    /// Index of the course among the learner's track's required courses, if it is one.
    pub course: Option<u8>,
    /// What happened.
    pub kind: EventKind,
    /// Reported progress.
    pub progress: Option<f64>,
    /// Reported score.
    pub score: Option<f64>,
    /// When, in microseconds since the epoch.
    pub at: i64,
}

/// Per learner, what their events add up to (see [`crate::definitions`] for which events are
/// *learning* events).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnerState {
    /// The first event of any kind: where days to complete are counted from.
    pub first_event: i64,
    /// The first `enrolled` event.
    pub enrolled_at: i64,
    /// The last learning event.
    pub last_activity: i64,
    /// The first learning event.
    pub started_at: i64,
    pub certified_at: i64,
    pub withdrawn_at: i64,
    /// Best score; NaN when none.
    pub best_score: f64,
}

impl Default for LearnerState {
    fn default() -> Self {
        Self {
            first_event: NEVER,
            enrolled_at: NEVER,
            last_activity: NOT_YET,
            started_at: NEVER,
            certified_at: NEVER,
            withdrawn_at: NEVER,
            best_score: f64::NAN,
        }
    }
}

/// Per learner and required course.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CourseState {
    /// Highest progress reported; NaN when none.
    pub progress: f64,
    /// First completion.
    pub completed_at: i64,
}

impl Default for CourseState {
    fn default() -> Self {
        Self {
            progress: f64::NAN,
            completed_at: NEVER,
        }
    }
}

/// The state of every learner on a roster. Events of learners the roster does not know are not
/// here: when the roster learns them, the engine reads their events from the store, where the
/// roster's identities attribute them.
#[derive(Debug, Clone, Default)]
pub struct States {
    /// Per roster row.
    pub learners: Vec<LearnerState>,
    /// Per roster row × course slot.
    pub courses: Vec<CourseState>,
    /// Slots per learner.
    pub slots: usize,
    /// Per roster row × word: one bit per calendar day with a learning event, from
    /// [`CALENDAR_EPOCH_DAY`]. Bounded by the program's length, not by its events.
    pub activity_days: Vec<u64>,
    /// Words per learner in `activity_days`.
    pub day_words: usize,
    /// Latest `occurred_at` applied, over all learners.
    pub latest_event: i64,
    /// The state holds no event dated after this moment: a replay's `as_of`, or the moment the
    /// live state was last brought up to (events dated later wait, see [`crate::engine`]).
    pub held_until: i64,
}

impl States {
    /// Empty states for a roster.
    pub fn new(roster: &Roster) -> Self {
        let slots = roster.course_slots();
        Self {
            learners: vec![LearnerState::default(); roster.len()],
            courses: vec![CourseState::default(); roster.len() * slots],
            slots,
            activity_days: Vec::new(),
            day_words: 0,
            latest_event: NOT_YET,
            held_until: NEVER,
        }
    }

    /// Gives rows to learners added to the roster since (empty states).
    pub fn grow_to(&mut self, rows: usize) {
        if rows <= self.learners.len() {
            return;
        }
        self.learners.resize(rows, LearnerState::default());
        self.courses
            .resize(rows * self.slots, CourseState::default());
        self.activity_days.resize(rows * self.day_words, 0);
    }

    /// Forgets what a row's events added up to, before they are applied again.
    pub fn reset_row(&mut self, row: usize) {
        self.learners[row] = LearnerState::default();
        self.courses[row * self.slots..(row + 1) * self.slots].fill(CourseState::default());
        self.activity_days[row * self.day_words..(row + 1) * self.day_words].fill(0);
    }

    /// Turns a stored event into an effect for the row's learner.
    pub fn effect(roster: &Roster, row: usize, event: &FeedEvent) -> Effect {
        let track = roster.track[row] as usize;
        let course = roster.required_courses[track]
            .iter()
            .position(|c| *c == event.course_id)
            .map(|i| i as u8);
        Effect {
            course,
            kind: event.kind,
            progress: event.progress,
            score: event.score,
            at: event.occurred_at.timestamp_micros(),
        }
    }

    /// Applies one effect to a row.
    pub fn apply(&mut self, row: usize, effect: &Effect) {
        let at = effect.at;
        self.latest_event = self.latest_event.max(at);
        let learning = crate::definitions::is_learning(effect.kind);
        if learning {
            self.mark_active_day(row, at);
        }
        let learner = &mut self.learners[row];
        learner.first_event = learner.first_event.min(at);
        if learning {
            learner.last_activity = learner.last_activity.max(at);
            learner.started_at = learner.started_at.min(at);
        }
        if let Some(score) = effect.score
            && (learner.best_score.is_nan() || score > learner.best_score)
        {
            learner.best_score = score;
        }
        match effect.kind {
            EventKind::Enrolled => learner.enrolled_at = learner.enrolled_at.min(at),
            EventKind::CertificateEarned => learner.certified_at = learner.certified_at.min(at),
            EventKind::Withdrawn => learner.withdrawn_at = learner.withdrawn_at.min(at),
            _ => {}
        }
        if let Some(slot) = effect.course {
            let course = &mut self.courses[row * self.slots + usize::from(slot)];
            if let Some(progress) = effect.progress
                && (course.progress.is_nan() || progress > course.progress)
            {
                course.progress = progress;
            }
            if effect.kind == EventKind::CourseCompleted {
                course.completed_at = course.completed_at.min(at);
            }
        }
    }

    /// Bytes the state takes: per learner, per course slot, and the activity calendar.
    pub fn heap_bytes(&self) -> usize {
        self.learners.len() * std::mem::size_of::<LearnerState>()
            + self.courses.len() * std::mem::size_of::<CourseState>()
            + self.activity_days.len() * 8
    }

    fn mark_active_day(&mut self, row: usize, at: i64) {
        let day = (pakistan_day(at) - CALENDAR_EPOCH_DAY).max(0) as usize;
        let word = day / 64;
        if word >= self.day_words {
            self.grow_calendar(word + 1);
        }
        self.activity_days[row * self.day_words + word] |= 1 << (day % 64);
    }

    /// Widens the calendar to at least `words` words per learner (doubling, to keep it rare).
    fn grow_calendar(&mut self, words: usize) {
        let new_words = words.max(self.day_words * 2).max(8);
        let rows = self.learners.len();
        let mut grown = vec![0u64; rows * new_words];
        for row in 0..rows {
            let old = &self.activity_days[row * self.day_words..(row + 1) * self.day_words];
            grown[row * new_words..row * new_words + self.day_words].copy_from_slice(old);
        }
        self.activity_days = grown;
        self.day_words = new_words;
    }

    /// Whether the row's learner had a learning event on any calendar day in `[first_day, last_day]`
    /// (days since 1970-01-01, in Pakistan).
    pub fn active_between(&self, row: usize, first_day: i64, last_day: i64) -> bool {
        let first = (first_day - CALENDAR_EPOCH_DAY).max(0);
        let last = last_day - CALENDAR_EPOCH_DAY;
        if last < first || self.day_words == 0 {
            return false;
        }
        let words = &self.activity_days[row * self.day_words..(row + 1) * self.day_words];
        let last = last.min(self.day_words as i64 * 64 - 1);
        (first..=last).any(|day| words[day as usize / 64] & (1 << (day % 64)) != 0)
    }

    /// When the row's learner counts as enrolled (see [`crate::definitions`]): their first
    /// `enrolled` event, else their cohort's start — or their first learning event if that came
    /// earlier.
    pub fn enrolled_at(&self, roster: &Roster, row: usize) -> i64 {
        let learner = &self.learners[row];
        let enrolment = if learner.enrolled_at == NEVER {
            roster.cohort_start(row)
        } else {
            learner.enrolled_at
        };
        enrolment.min(learner.started_at)
    }

    /// When the row's learner completed every required course, if they did.
    pub fn completed_at(&self, roster: &Roster, row: usize) -> Option<i64> {
        let required = roster.required_courses[roster.track[row] as usize].len();
        if required == 0 {
            return None;
        }
        let courses = &self.courses[row * self.slots..row * self.slots + required];
        courses
            .iter()
            .map(|c| (c.completed_at != NEVER).then_some(c.completed_at))
            .try_fold(i64::MIN, |latest, at| at.map(|at| latest.max(at)))
    }

    /// The row's learner's progress: mean over required courses (1 once completed).
    pub fn progress(&self, roster: &Roster, row: usize) -> f64 {
        let required = roster.required_courses[roster.track[row] as usize].len();
        if required == 0 {
            return 0.0;
        }
        let courses = &self.courses[row * self.slots..row * self.slots + required];
        let total: f64 = courses
            .iter()
            .map(|c| {
                if c.completed_at != NEVER {
                    1.0
                } else if c.progress.is_nan() {
                    0.0
                } else {
                    c.progress
                }
            })
            .sum();
        total / required as f64
    }
}
