-- For a `learners` change: those of `learner_ids` whose analytics state must be read again from
-- their events (new to the roster, another track, other identities), as a JSON array; the
-- others only moved. NULL in rows logged before this column: every learner of the row is
-- restated. A separate column, so that a replica still on the previous version reads the rows
-- as it did.
ALTER TABLE roster_log ADD COLUMN restated_ids TEXT;
