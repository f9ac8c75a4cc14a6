//! The analytics checkpoint: the events the engine has applied, reduced to what the learner state
//! needs, in a compact local file — so that a restart, or a cold computation, reads them at disk
//! speed instead of through the database (a million learners' thirty million events take about
//! a minute through SQLite, seconds from here).
//!
//! The store stays the truth. The file is a cache the engine appends to as it follows the change
//! feed; it is only used when it was written for the same roster (same roster version and the
//! same learners and courses: the state's rows and course slots come from them) and when the
//! store still holds, at the checkpoint's last position, the event the file says. Otherwise it
//! is ignored and written anew. Nothing is synced to disk: after a crash a torn last record is
//! dropped and the feed is read again from the last whole one.
//!
//! One process writes a checkpoint at a time: it holds an exclusive lock on the file, and a
//! second process (say, the next version starting during a rolling restart) goes without.
//!
//! Layout (little-endian): a header — magic, roster version, fingerprint (of the roster, the
//! format and the event kinds) — then one fixed-size record per event: `seq`, row, course slot
//! (255: none), kind, progress and score (NaN: none), and `occurred_at` in microseconds.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use nigrani_domain::EventKind;
use nigrani_store::FeedEvent;

use crate::state::{Effect, Roster};

const MAGIC: &[u8; 8] = b"NGRNCKP1";
const HEADER: usize = 8 + 8 + 64;
const RECORD: usize = 8 + 4 + 1 + 1 + 8 + 8 + 8;
/// Course slot of an event on a course that is not required of the learner.
const NO_COURSE: u8 = u8::MAX;

/// The meaning of a record; changing how events reduce to records changes it, so that files of
/// an earlier meaning are not read.
const FORMAT: &str = "records v1";

/// What a checkpoint's records depend on: a hash of the format, the event kinds (records store
/// their index), the learner ids in row order with each learner's track, and each track's
/// required courses (records store course slots).
/// It is the hex SHA-256 of all that, as the header stores it.
pub(crate) fn fingerprint(roster: &Roster) -> String {
    let mut text = Vec::with_capacity(roster.len() * 12);
    text.extend_from_slice(FORMAT.as_bytes());
    for kind in EventKind::ALL {
        text.push(b' ');
        text.extend_from_slice(kind.as_str().as_bytes());
    }
    text.push(b'\n');
    for (id, track) in roster.ids.iter().zip(&roster.track) {
        text.extend_from_slice(id.as_bytes());
        text.push(b'/');
        text.extend_from_slice(&track.to_le_bytes());
        text.push(b'\n');
    }
    for courses in &roster.required_courses {
        text.extend_from_slice(courses.join(",").as_bytes());
        text.push(b'\n');
    }
    nigrani_domain::roster::sha256_hex(&text)
}

/// The last event a checkpoint holds, to check against the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LastEvent {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) kind: EventKind,
}

impl LastEvent {
    /// Whether the store's event is the one the checkpoint ends with.
    pub(crate) fn matches(&self, event: &FeedEvent) -> bool {
        event.seq == self.seq
            && event.occurred_at.timestamp_micros() == self.at
            && event.kind == self.kind
    }
}

/// A checkpoint being written.
pub(crate) struct Checkpoint {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Checkpoint {
    /// Starts a new, empty checkpoint for a roster (replacing any file there).
    pub(crate) fn create(path: &Path, roster_version: i64, roster: &Roster) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        lock(&file)?;
        file.set_len(0)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC)?;
        out.write_all(&roster_version.to_le_bytes())?;
        out.write_all(fingerprint(roster).as_bytes())?;
        Ok(Self {
            path: path.to_owned(),
            out,
        })
    }

    /// Hands each event of the checkpoint at `path` to `apply` (a row and its effect) if it was
    /// written for this roster; returns its last event and how many events it held, and the
    /// checkpoint opened to append to. `None` when there is no usable checkpoint: what `apply`
    /// was given must then be dropped and the state started afresh.
    pub(crate) fn resume(
        path: &Path,
        roster_version: i64,
        roster: &Roster,
        mut apply: impl FnMut(usize, Effect),
    ) -> io::Result<Option<(Self, LastEvent, usize)>> {
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        lock(&file)?;
        let mut input = BufReader::with_capacity(1 << 22, &mut file);
        let mut header = [0u8; HEADER];
        if input.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        let version = i64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        if &header[..8] != MAGIC
            || version != roster_version
            || header[16..HEADER] != *fingerprint(roster).as_bytes()
        {
            return Ok(None);
        }
        let mut record = [0u8; RECORD];
        let mut whole = 0usize;
        let mut last: Option<LastEvent> = None;
        loop {
            match input.read_exact(&mut record) {
                Ok(()) => {}
                // The end, or a torn last record.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let (seq, row, effect) = decode(&record);
            let in_order = last.is_none_or(|l| seq > l.seq);
            if !in_order || !plausible(roster, record[13], row, &effect) {
                return Ok(None);
            }
            apply(row, effect);
            last = Some(LastEvent {
                seq,
                at: effect.at,
                kind: effect.kind,
            });
            whole += 1;
        }
        drop(input);
        let Some(last) = last else {
            return Ok(None);
        };
        // Drop a torn last record so that appends stay aligned.
        file.set_len((HEADER + whole * RECORD) as u64)?;
        file.seek(io::SeekFrom::End(0))?;
        Ok(Some((
            Self {
                path: path.to_owned(),
                out: BufWriter::with_capacity(1 << 20, file),
            },
            last,
            whole,
        )))
    }

    /// Appends one applied event.
    pub(crate) fn append(&mut self, seq: i64, row: usize, effect: &Effect) -> io::Result<()> {
        let mut record = [0u8; RECORD];
        record[..8].copy_from_slice(&seq.to_le_bytes());
        record[8..12].copy_from_slice(&(row as u32).to_le_bytes());
        record[12] = effect.course.unwrap_or(NO_COURSE);
        record[13] = EventKind::ALL
            .iter()
            .position(|k| *k == effect.kind)
            .unwrap_or(0) as u8;
        record[14..22].copy_from_slice(&effect.progress.unwrap_or(f64::NAN).to_le_bytes());
        record[22..30].copy_from_slice(&effect.score.unwrap_or(f64::NAN).to_le_bytes());
        record[30..38].copy_from_slice(&effect.at.to_le_bytes());
        self.out.write_all(&record)
    }

    /// Hands what was appended to the operating system.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Where the checkpoint is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the file for this process alone, or fails when another process has it.
fn lock(file: &File) -> io::Result<()> {
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => io::Error::new(
            io::ErrorKind::WouldBlock,
            "another nigrani process is writing this checkpoint",
        ),
        std::fs::TryLockError::Error(e) => e,
    })
}

/// Whether a record can be what this roster's engine wrote: a known kind, a learner row, and a
/// course slot of that learner's track.
fn plausible(roster: &Roster, kind: u8, row: usize, effect: &Effect) -> bool {
    let Some(&track) = roster.track.get(row) else {
        return false;
    };
    let slots = roster
        .required_courses
        .get(track as usize)
        .map_or(0, Vec::len);
    usize::from(kind) < EventKind::ALL.len()
        && effect.course.is_none_or(|slot| usize::from(slot) < slots)
}

fn decode(record: &[u8]) -> (i64, usize, Effect) {
    let i64_at = |at: usize| i64::from_le_bytes(record[at..at + 8].try_into().unwrap_or_default());
    let f64_at = |at: usize| f64::from_le_bytes(record[at..at + 8].try_into().unwrap_or_default());
    let optional = |v: f64| (!v.is_nan()).then_some(v);
    let row = u32::from_le_bytes(record[8..12].try_into().unwrap_or_default()) as usize;
    let effect = Effect {
        course: (record[12] != NO_COURSE).then_some(record[12]),
        kind: EventKind::ALL
            .get(usize::from(record[13]))
            .copied()
            .unwrap_or(EventKind::ALL[0]),
        progress: optional(f64_at(14)),
        score: optional(f64_at(22)),
        at: i64_at(30),
    };
    (i64_at(0), row, effect)
}
