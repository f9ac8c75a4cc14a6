//! A realistic, deterministic program to try nigrani on: cohorts of both tracks, learners across
//! universities in every province, and months of events with believable pacing, drop-off,
//! failed-then-passed assessments, certification and two cohorts that are stalling.
//!
//! Everything derives from `(seed, as_of)`: learner `i` gets a random stream of its own, seeded
//! from `seed` and `i`, so learners can be generated a chunk at a time (millions of learners
//! stream in constant memory) and the same seed and date give the same program.
//!
//! About one learner in a hundred is left off the roster, so their events arrive *unmatched*, as
//! happens when a platform reports someone before the roster upload does.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use nigrani_domain::{
    Cohort, Discipline, Gender, Institution, Learner, LearnerRef, Province, Role, Track, TrackPlan,
};
use serde_json::{Value, json};
use std::sync::Arc;

use nigrani_store::Store;

use crate::batch::{IngestError, Ingestor, OutcomeCounts};
use crate::native::Item;
use crate::roster::{self, RosterError, Rows};
use crate::seed;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct DemoConfig {
    /// Learners in the program.
    pub learners: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// The moment the program is generated up to; no event lies after it.
    pub as_of: DateTime<Utc>,
}

/// A small, fast, deterministic random stream (SplitMix64). Not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A stream for item `index` of a generation seeded with `seed`.
    pub fn for_item(seed: u64, index: u64) -> Self {
        let mut mixer = Self(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [low, high].
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = (high - low + 1).max(1) as u64;
        low + (self.next_u64() % span) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Picks an index by weight.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// How a cohort behaves in the demo.
#[derive(Debug, Clone)]
pub struct DemoCohort {
    /// The cohort as the roster holds it.
    pub cohort: Cohort,
    /// Share of the track's learners in it.
    pub weight: f64,
    /// Stalling: most of its learners stopped three weeks before `as_of`.
    pub stalling: bool,
}

/// The cohorts, relative to `as_of`: closed ones, open ones on pace, and two stalling.
pub fn cohorts(as_of: DateTime<Utc>) -> Vec<DemoCohort> {
    let today = as_of.date_naive();
    let day = |offset: i64| today + Duration::days(offset);
    let cohort = |id: &str, n: u32, track: Track, start: i64, end: i64, target: u32| Cohort {
        cohort_id: id.to_owned(),
        name: format!("{} cohort {n}", track.label_en()),
        name_ur: format!("{} گروپ {n}", track.label_ur()),
        track,
        starts_on: day(start),
        ends_on: day(end),
        target,
    };
    vec![
        DemoCohort {
            cohort: cohort("soft-c1", 1, Track::Soft, -300, -210, 300),
            weight: 0.28,
            stalling: false,
        },
        DemoCohort {
            cohort: cohort("soft-c2", 2, Track::Soft, -200, -110, 300),
            weight: 0.28,
            stalling: false,
        },
        DemoCohort {
            cohort: cohort("soft-c3", 3, Track::Soft, -90, 30, 250),
            weight: 0.24,
            stalling: false,
        },
        DemoCohort {
            cohort: cohort("soft-c4", 4, Track::Soft, -45, 50, 250),
            weight: 0.20,
            stalling: true,
        },
        DemoCohort {
            cohort: cohort("hard-c1", 1, Track::Hard, -280, -160, 100),
            weight: 0.34,
            stalling: false,
        },
        DemoCohort {
            cohort: cohort("hard-c2", 2, Track::Hard, -150, -30, 100),
            weight: 0.36,
            stalling: false,
        },
        DemoCohort {
            cohort: cohort("hard-c3", 3, Track::Hard, -70, 50, 150),
            weight: 0.30,
            stalling: true,
        },
    ]
}

/// The institutions learners are spread over: about a hundred for a faculty-sized program
/// (every province included), all of them once the program grows past ten thousand learners.
pub fn institutions(all: &[Institution], learners: usize, seed: u64) -> Vec<Institution> {
    let wanted = if learners > 10_000 {
        all.len()
    } else {
        100.min(all.len())
    };
    let mut shuffled: Vec<&Institution> = all.iter().collect();
    shuffled.sort_by_key(|i| {
        Rng::for_item(
            seed,
            i.hec_id
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31) + u64::from(b)),
        )
        .next_u64()
    });
    let mut chosen: Vec<Institution> = Vec::with_capacity(wanted);
    for province in Province::ALL {
        if let Some(first) = shuffled.iter().find(|i| i.province == *province) {
            chosen.push((*first).clone());
        }
    }
    for institution in shuffled {
        if chosen.len() >= wanted {
            break;
        }
        if !chosen.iter().any(|c| c.hec_id == institution.hec_id) {
            chosen.push(institution.clone());
        }
    }
    chosen.sort_by(|a, b| a.hec_id.cmp(&b.hec_id));
    chosen
}

/// One generated learner: the roster row (absent when this learner is left off the roster) and
/// the events, in the native wire format, in time order.
#[derive(Debug, Clone)]
pub struct DemoLearner {
    /// The roster row, or `None` when the learner is one of those not on the roster yet.
    pub roster: Option<Learner>,
    /// Events in the native wire format.
    pub events: Vec<Value>,
}

/// Everything fixed across learners.
pub struct Generator {
    config: DemoConfig,
    cohorts: Vec<DemoCohort>,
    institutions: Vec<Institution>,
    soft_disciplines: Vec<String>,
    hard_disciplines: Vec<String>,
    plans: Vec<TrackPlan>,
    pakistan: FixedOffset,
}

impl Generator {
    /// A generator over the given reference data.
    pub fn new(
        config: DemoConfig,
        institutions: &[Institution],
        disciplines: &[Discipline],
        plans: &[TrackPlan],
    ) -> Self {
        let pick = |stem: bool| {
            disciplines
                .iter()
                .filter(|d| d.stem == stem)
                .map(|d| d.code.clone())
                .collect()
        };
        Self {
            cohorts: cohorts(config.as_of),
            institutions: self::institutions(institutions, config.learners, config.seed),
            soft_disciplines: pick(false),
            hard_disciplines: pick(true),
            plans: plans.to_vec(),
            pakistan: FixedOffset::east_opt(5 * 3600).unwrap_or_else(|| Utc.fix()),
            config,
        }
    }

    /// A generator over the seed reference data (no store needed).
    pub fn from_seed(config: DemoConfig) -> Result<Self, RosterError> {
        let reference = seed::reference()?;
        Ok(Self::new(
            config,
            &reference.institutions,
            &reference.disciplines,
            &reference.plans,
        ))
    }

    /// A generator over the store's reference data (seeded first where empty), with the demo
    /// cohorts stored.
    pub async fn from_store(
        config: DemoConfig,
        store: &Arc<dyn Store>,
    ) -> Result<Self, RosterError> {
        seed::install_if_empty(store).await?;
        let generator = Self::new(
            config,
            &store.institutions().await?,
            &store.disciplines().await?,
            &store.track_plans().await?,
        );
        roster::apply(store, &Rows::Cohorts(generator.cohort_rows())).await?;
        Ok(generator)
    }

    /// The cohorts' roster rows.
    pub fn cohort_rows(&self) -> Vec<Cohort> {
        self.cohorts.iter().map(|c| c.cohort.clone()).collect()
    }

    /// How many learners the program has.
    pub fn learners(&self) -> usize {
        self.config.learners
    }

    /// Generates learner `index` (0-based).
    pub fn learner(&self, index: usize) -> DemoLearner {
        let mut rng = Rng::for_item(self.config.seed, index as u64);
        let track = if rng.chance(0.72) {
            Track::Soft
        } else {
            Track::Hard
        };
        let in_track: Vec<&DemoCohort> = self
            .cohorts
            .iter()
            .filter(|c| c.cohort.track == track)
            .collect();
        let weights: Vec<f64> = in_track.iter().map(|c| c.weight).collect();
        let cohort = in_track[rng.weighted(&weights)];
        // Bigger universities send more faculty: weight by position in a fixed shuffle.
        let institution_weights: Vec<f64> = (0..self.institutions.len())
            .map(|i| 1.0 / (1.0 + (i % 17) as f64 * 0.15))
            .collect();
        let institution = &self.institutions[rng.weighted(&institution_weights)];
        let disciplines = match track {
            Track::Soft => &self.soft_disciplines,
            Track::Hard => &self.hard_disciplines,
        };
        let discipline = disciplines[rng.between(0, disciplines.len() as i64 - 1) as usize].clone();
        let gender = match rng.unit() {
            x if x < 0.41 => Some(Gender::Female),
            x if x < 0.96 => Some(Gender::Male),
            x if x < 0.97 => Some(Gender::Other),
            _ => None,
        };
        let platform_id = format!("{:016x}", rng.next_u64());
        let coursera = LearnerRef::on_platform("coursera", &platform_id)
            .unwrap_or_else(|_| LearnerRef::from_email(&platform_id));
        let email = LearnerRef::from_email(&format!(
            "faculty{index}@{}.edu.pk",
            institution.hec_id.to_lowercase()
        ));
        let uses_email = rng.chance(0.1);
        let learner = Learner {
            learner_id: format!("L{index:07}"),
            identities: vec![coursera.clone(), email.clone()],
            institution: institution.hec_id.clone(),
            discipline,
            track,
            cohort: cohort.cohort.cohort_id.clone(),
            role: Role::Faculty,
            gender,
        };
        let on_roster = !rng.chance(0.01);
        let wire_learner = if uses_email {
            json!({ "email_sha256": email.as_str().trim_start_matches("email:") })
        } else {
            json!(coursera.as_str())
        };
        let events = self.events(&mut rng, index, cohort, track, &wire_learner);
        DemoLearner {
            roster: on_roster.then_some(learner),
            events,
        }
    }

    fn events(
        &self,
        rng: &mut Rng,
        index: usize,
        cohort: &DemoCohort,
        track: Track,
        learner: &Value,
    ) -> Vec<Value> {
        let as_of = self.config.as_of;
        let start = noon(cohort.cohort.starts_on);
        let end = noon(cohort.cohort.ends_on) + Duration::days(30);
        let stop_all = if cohort.stalling && rng.chance(0.85) {
            as_of - Duration::days(rng.between(20, 28))
        } else {
            as_of
        }
        .min(end);
        let courses: Vec<String> = self
            .plans
            .iter()
            .find(|p| p.track == track)
            .map(|p| p.required_courses.clone())
            .unwrap_or_default();

        let mut out = Vec::new();
        let mut n = 0;
        let mut emit =
            |kind: &str, course: &str, at: DateTime<Utc>, extra: Value, out: &mut Vec<Value>| {
                if at > stop_all {
                    return false;
                }
                let source = if kind == "session_attended" {
                    "hec-sessions"
                } else {
                    "coursera"
                };
                let mut event = json!({
                    "source": source,
                    "event_id": format!("demo-{index}-{n}"),
                    "learner": learner,
                    "course_id": course,
                    "kind": kind,
                    "occurred_at": at.with_timezone(&self.pakistan).to_rfc3339(),
                });
                if let (Value::Object(fields), Value::Object(more)) = (&mut event, extra) {
                    fields.extend(more);
                }
                n += 1;
                out.push(event);
                true
            };

        let mut t = start + Duration::hours(rng.between(0, 24 * 7));
        for course in &courses {
            emit("enrolled", course, t, json!({}), &mut out);
        }
        if !rng.chance(0.9) {
            return out; // enrolled, never started
        }
        let engagement = 0.35 + 0.65 * rng.unit();
        // Days until the learner gives up, if they do.
        let drops_after = if rng.chance(0.28 * (1.2 - engagement)) {
            Some(rng.between(5, 80))
        } else {
            None
        };
        let gives_up_at = drops_after.map(|d| t + Duration::days(d));
        let mut completed_all = true;
        'courses: for course in &courses {
            t += Duration::hours(rng.between(12, 96));
            if !emit("started", course, t, json!({ "progress": 0.02 }), &mut out) {
                completed_all = false;
                break;
            }
            let mut progress: f64 = 0.02;
            let mut module = 0;
            while progress < 1.0 {
                t += Duration::hours(rng.between(40, 200) * 10 / (5 + (engagement * 10.0) as i64));
                if gives_up_at.is_some_and(|g| t > g) {
                    completed_all = false;
                    if rng.chance(0.3) {
                        emit("withdrawn", course, t, json!({}), &mut out);
                    }
                    break 'courses;
                }
                progress = (progress + 0.08 + 0.17 * rng.unit()).min(1.0);
                let rounded = (progress * 100.0).round() / 100.0;
                let minutes = rng.between(15, 120);
                if !emit(
                    "progressed",
                    course,
                    t,
                    json!({ "progress": rounded, "duration_seconds": minutes * 60 }),
                    &mut out,
                ) {
                    completed_all = false;
                    break 'courses;
                }
                if progress >= (f64::from(module) + 1.0) / 3.0 && module < 3 {
                    module += 1;
                    emit(
                        "module_completed",
                        course,
                        t,
                        json!({ "progress": rounded }),
                        &mut out,
                    );
                }
                if track == Track::Soft && rng.chance(0.25) {
                    emit(
                        "session_attended",
                        course,
                        t - Duration::hours(30),
                        json!({ "duration_seconds": 5400 }),
                        &mut out,
                    );
                }
            }
            t += Duration::hours(rng.between(2, 48));
            if rng.chance(0.18) {
                let score = 0.3 + 0.25 * rng.unit();
                emit(
                    "assessment_failed",
                    course,
                    t,
                    json!({ "score": (score * 100.0).round() / 100.0 }),
                    &mut out,
                );
                t += Duration::days(rng.between(1, 6));
            }
            let score = 0.6 + 0.4 * rng.unit();
            if !emit(
                "assessment_passed",
                course,
                t,
                json!({ "score": (score * 100.0).round() / 100.0 }),
                &mut out,
            ) {
                completed_all = false;
                break;
            }
            if !emit(
                "course_completed",
                course,
                t + Duration::minutes(5),
                json!({ "progress": 1.0 }),
                &mut out,
            ) {
                completed_all = false;
                break;
            }
        }
        if completed_all && track == Track::Hard && rng.chance(0.78) {
            let at = t + Duration::days(rng.between(3, 14));
            if let Some(last) = courses.last() {
                emit(
                    "certificate_earned",
                    last,
                    at,
                    json!({ "score": 1.0 }),
                    &mut out,
                );
            }
        }
        out
    }
}

/// Stores the roster rows of generated learners (those on the roster); returns how many.
pub async fn store_roster(
    store: &Arc<dyn Store>,
    learners: &[DemoLearner],
) -> Result<usize, RosterError> {
    let rows: Vec<Learner> = learners.iter().filter_map(|l| l.roster.clone()).collect();
    let count = rows.len();
    if count > 0 {
        roster::apply(store, &Rows::Learners(rows)).await?;
    }
    Ok(count)
}

/// Sends events through the ingest pipeline in batches of `batch`; returns the outcome counts.
pub async fn ingest_events(
    ingestor: &Ingestor,
    events: &[Value],
    batch: usize,
) -> Result<OutcomeCounts, IngestError> {
    let mut totals = OutcomeCounts::default();
    for part in events.chunks(batch.max(1)) {
        let items = part.iter().cloned().map(Item::Json).collect();
        totals.add(ingestor.ingest_items(items, Utc::now()).await?.counts);
    }
    Ok(totals)
}

fn noon(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(7, 0, 0)
        .map_or_else(Utc::now, |t| Utc.from_utc_datetime(&t))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::native::parse_event;

    fn generator(learners: usize, seed: u64) -> Generator {
        let as_of = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        Generator::from_seed(DemoConfig {
            learners,
            seed,
            as_of,
        })
        .unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_program() {
        let a = generator(50, 7);
        let b = generator(50, 7);
        let c = generator(50, 8);
        for i in 0..50 {
            assert_eq!(a.learner(i).events, b.learner(i).events);
        }
        assert_ne!(a.learner(3).events, c.learner(3).events);
    }

    #[test]
    fn every_event_is_valid_and_none_lies_after_as_of() {
        let generator = generator(300, 42);
        let as_of = generator.config.as_of;
        let mut kinds = HashSet::new();
        let mut ids = HashSet::new();
        let mut institutions = HashSet::new();
        let mut off_roster = 0;
        for i in 0..300 {
            let learner = generator.learner(i);
            match &learner.roster {
                Some(l) => {
                    institutions.insert(l.institution.clone());
                }
                None => off_roster += 1,
            }
            for event in learner.events {
                let event = parse_event(event, as_of).unwrap();
                assert!(event.occurred_at <= as_of);
                assert!(ids.insert((event.source.clone(), event.event_id.clone())));
                kinds.insert(event.kind);
            }
        }
        assert!(kinds.len() >= 9, "{kinds:?}");
        assert!(institutions.len() > 50);
        assert!(off_roster < 15);
    }
}
