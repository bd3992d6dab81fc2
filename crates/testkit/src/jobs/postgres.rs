//! The PostgreSQL the tests use (feature `postgres`) (127.0.0.1:5432, trust auth; `.ci/run`
//! starts one), apalis's schema in a database of the tests' own, and the
//! rows of one test's queue deleted when the guard drops (also when the
//! test fails).

use apalis_postgres::{PgPool, PostgresStorage};

/// The database the Postgres tests share; each test uses queues of its own.
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/jobsight_tests";
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A pool on [`PG_URL`] with apalis's migrations and jobsight's index
/// applied; creates the database when it is missing.
pub async fn pool() -> PgPool {
    if PgPool::connect(PG_URL).await.is_err() {
        let admin = PgPool::connect(ADMIN_URL)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (the tests need it; .ci/run starts one)");
        // Two test binaries may race here: the loser's error is harmless.
        let _ = sqlx::query("CREATE DATABASE jobsight_tests")
            .execute(&admin)
            .await;
    }
    let pool = PgPool::connect(PG_URL)
        .await
        .expect("jobsight_tests database");
    // apalis's migrations take an advisory lock: concurrent runs wait.
    PostgresStorage::setup(&pool)
        .await
        .expect("apalis migrations");
    jobsight_apalis::PostgresQueueStats::create_index(&pool)
        .await
        .expect("jobsight index");
    pool
}

/// Deletes the jobs of `queue` and the workers named in it on drop.
pub struct PgQueue {
    /// The pool the rows are deleted through.
    pub pool: PgPool,
    /// The queue (`job_type`, and `worker_type` of its workers).
    pub queue: String,
}

impl Drop for PgQueue {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        let queue = self.queue.clone();
        // A runtime of its own on a thread of its own: drop may run inside
        // the test's runtime, which must not block.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let _ = sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1")
                    .bind(&queue)
                    .execute(&pool)
                    .await;
                let _ = sqlx::query("DELETE FROM apalis.workers WHERE worker_type = $1")
                    .bind(&queue)
                    .execute(&pool)
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}
