#!/usr/bin/env bash
# Poll cost of PostgresQueueStats's query on a big apalis.jobs table.
#
# Builds the database `jobsight_bench` (dropped first) with the schema the
# Postgres tests left in `jobsight_tests` (run `cargo test --test
# postgres_e2e` once before), fills one queue with 1 000 000 rows and one
# with 10 000 (97 % Done, the rest pending, scheduled, retrying, dead,
# queued and running), then prints EXPLAIN (ANALYZE, BUFFERS) of the poll
# for each queue and the median of 11 timed polls.
set -euo pipefail
cd "$(dirname "$0")/.."
psql_() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q "$@"; }

psql_ -d postgres -c "DROP DATABASE IF EXISTS jobsight_bench" -c "CREATE DATABASE jobsight_bench"
pg_dump -h 127.0.0.1 -U postgres -s -n apalis jobsight_tests \
  | psql_ -d jobsight_bench -c "CREATE EXTENSION IF NOT EXISTS hstore" -f - >/dev/null
psql_ -d jobsight_bench <<'SQL'
ALTER TABLE apalis.jobs DISABLE TRIGGER notify_workers;
INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
VALUES ('bench-worker', 'big', 'PgStorage', '', now());
CREATE FUNCTION pg_temp.fill(queue text, n int) RETURNS void LANGUAGE sql AS $$
  INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, done_at, lock_by, lock_at, priority)
  SELECT 'null'::bytea, queue || '-' || i, queue,
         CASE WHEN i % 1000 < 970 THEN 'Done'
              WHEN i % 1000 < 980 THEN 'Pending'
              WHEN i % 1000 < 985 THEN 'Pending'
              WHEN i % 1000 < 990 THEN 'Failed'
              WHEN i % 1000 < 995 THEN 'Failed'
              WHEN i % 1000 < 997 THEN 'Queued'
              ELSE 'Running' END,
         CASE WHEN i % 1000 BETWEEN 990 AND 994 THEN 25 ELSE 1 END,
         25,
         CASE WHEN i % 1000 BETWEEN 980 AND 984 THEN now() + interval '1 hour'
              ELSE now() - make_interval(secs => i % 3600) END,
         CASE WHEN i % 1000 < 970 OR i % 1000 BETWEEN 985 AND 994 THEN now() - make_interval(secs => i % 600) END,
         CASE WHEN i % 1000 >= 995 OR i % 1000 < 970 THEN 'bench-worker' END,
         now(), 0
  FROM generate_series(1, n) AS i
$$;
SELECT pg_temp.fill('big', 1000000);
SELECT pg_temp.fill('small', 10000);
ALTER TABLE apalis.jobs ENABLE TRIGGER notify_workers;
VACUUM ANALYZE apalis.jobs;
SQL

# The query, as crates/apalis-layer/src/backend/postgres.rs sends it.
query=$(sed -n '/^pub const STATS_QUERY: &str = r"/,/^ORDER BY q.pos";/p' crates/apalis-layer/src/backend/postgres.rs \
  | sed '1s/.*r"//; $s/";$//')
for queues in '{small}' '{big}' '{big,small}'; do
  echo "== queues $queues"
  psql_ -d jobsight_bench -c "PREPARE poll(text[]) AS $query" \
    -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE poll('$queues')"
  for _ in $(seq 1 11); do
    psql_ -d jobsight_bench -At -c '\timing on' -c "PREPARE poll(text[]) AS $query" \
      -c "EXECUTE poll('$queues')" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
  done | sort -n | sed -n '6p' | sed 's/^/median ms: /'
done
