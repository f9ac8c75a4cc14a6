"""The peer of `nigrani-bench analytics`: DuckDB computes the same two breakdowns from the same
events, exported to Parquet, with the same metric definitions (see crates/analytics/src/definitions.rs).

Usage: python3 duckdb_groupbys.py EXPORT_DIR AS_OF_RFC3339
EXPORT_DIR holds events.csv (learner_id, course_id, kind, progress, score, occurred_at),
learners.csv (learner_id, province, institution, discipline, track, cohort) and
required.csv (track, course_id). The CSVs are converted to Parquet first (not timed); then each
breakdown is timed cold, reading the Parquet files. Prints one JSON object.
"""
import json
import os
import sys
import time

import duckdb

export, as_of = sys.argv[1], sys.argv[2]
con = duckdb.connect()
for name in ("events", "learners", "required"):
    csv = os.path.join(export, f"{name}.csv")
    parquet = os.path.join(export, f"{name}.parquet")
    con.execute(f"COPY (SELECT * FROM read_csv_auto('{csv}', header=true)) TO '{parquet}' (FORMAT parquet)")

PER_LEARNER = """
WITH ev AS (
    SELECT * FROM read_parquet('{d}/events.parquet') WHERE occurred_at <= TIMESTAMPTZ '{as_of}'
), req AS (SELECT * FROM read_parquet('{d}/required.parquet')
), l AS (SELECT * FROM read_parquet('{d}/learners.parquet')
), per_course AS (
    SELECT l.learner_id, r.course_id, max(ev.progress) AS progress,
           min(ev.occurred_at) FILTER (WHERE ev.kind = 'course_completed') AS completed_at
    FROM l JOIN req r ON r.track = l.track
    LEFT JOIN ev ON ev.learner_id = l.learner_id AND ev.course_id = r.course_id
    GROUP BY l.learner_id, r.course_id
), courses AS (
    SELECT learner_id,
           avg(CASE WHEN completed_at IS NOT NULL THEN 1.0 ELSE coalesce(progress, 0) END) AS progress,
           CASE WHEN bool_and(completed_at IS NOT NULL) THEN max(completed_at) END AS completed_at
    FROM per_course GROUP BY learner_id
), acts AS (
    SELECT learner_id,
           min(occurred_at) FILTER (WHERE kind IN ('started', 'course_completed') OR progress > 0) AS started_at,
           min(occurred_at) FILTER (WHERE kind = 'certificate_earned') AS certified_at
    FROM ev GROUP BY learner_id
), per AS (
    SELECT l.*, coalesce(c.progress, 0) AS progress, c.completed_at, a.started_at, a.certified_at
    FROM l LEFT JOIN courses c USING (learner_id) LEFT JOIN acts a USING (learner_id)
)
SELECT {keys}, count(*) AS enrolled, count(started_at) AS started, count(completed_at) AS completed,
       count(certified_at) AS certified, count(completed_at) / count(*) AS completion_rate,
       avg(progress) AS avg_progress
FROM per GROUP BY {keys}
"""

results = {}
for name, keys in (("province_track_discipline", "province, track, discipline"),
                   ("institution_cohort", "institution, cohort")):
    fresh = duckdb.connect()
    started = time.perf_counter()
    rows = fresh.execute(PER_LEARNER.format(d=export, as_of=as_of, keys=keys)).fetchall()
    results[name] = {"seconds": time.perf_counter() - started, "rows": len(rows)}
print(json.dumps(results))
