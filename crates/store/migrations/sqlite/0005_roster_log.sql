-- What each roster change touched, one row per roster version, so that a reader holding the
-- roster at version N can apply the changes after N instead of reading the whole roster again.
-- `part` names the table that changed; for `learners`, `learner_ids` is a JSON array of the
-- learners whose row or events changed (those upserted, and those an identity moved away from).
-- Only the latest versions are kept (see ROSTER_LOG_KEPT); a reader further behind rebuilds.
CREATE TABLE roster_log (
    version     INTEGER PRIMARY KEY,
    part        TEXT NOT NULL,
    learner_ids TEXT
) STRICT;
