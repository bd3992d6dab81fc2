//! The watchdog's connection to Redis, and its clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::Mutex;

use super::judge::{from_time, ms};

/// Where the watchdog's "now" comes from.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// Redis's own clock (`TIME`): one clock for the whole fleet, so skew
    /// between the workers' wall clocks does not matter. The default.
    #[default]
    Redis,
    /// This machine's wall clock.
    System,
    /// A clock that moves only when told (tests).
    Manual(ManualClock),
}

/// A clock for tests: starts where it is set and moves with
/// [`ManualClock::advance`].
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `unix_ms`.
    pub fn new(unix_ms: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(unix_ms)))
    }

    /// A clock showing this machine's time now.
    pub fn now() -> Self {
        Self::new(from_time(std::time::SystemTime::now()))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(ms(by), Ordering::SeqCst);
    }

    /// The time shown, in unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A lazily (re)connected multiplexed connection.
pub(crate) struct Link {
    client: Client,
    config: AsyncConnectionConfig,
    conn: Mutex<Option<MultiplexedConnection>>,
    pub(crate) prefix: String,
    pub(crate) clock: Clock,
}

impl Link {
    pub(crate) fn new(client: Client, timeout: Duration, prefix: String, clock: Clock) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Link {
            client,
            config,
            conn: Mutex::new(None),
            prefix,
            clock,
        }
    }

    pub(crate) async fn conn(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after an error: the next use reconnects.
    pub(crate) async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    /// Now, in unix milliseconds, on the configured clock.
    pub(crate) async fn now(&self, conn: &mut MultiplexedConnection) -> Result<i64, RedisError> {
        match &self.clock {
            Clock::Redis => {
                let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
                Ok(secs * 1000 + micros / 1000)
            }
            Clock::System => Ok(from_time(std::time::SystemTime::now())),
            Clock::Manual(clock) => Ok(clock.unix_ms()),
        }
    }

    pub(crate) fn key(&self, monitor: &str, what: &str) -> String {
        format!("{}:{monitor}:{what}", self.prefix)
    }
}
