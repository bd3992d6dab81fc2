//! Deleting the Redis keys of a test's apalis-redis queue.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The Redis the tests use.
pub const REDIS_ADDR: &str = "127.0.0.1:6379";

/// Deletes every key of one apalis-redis queue (`{queue}:*`) and its entry in
/// `core:apalis:queues:list`, with one `EVAL` over a plain RESP connection
/// (no Redis client crate needed). Runs on drop, so a failing test cleans
/// up too.
pub struct RedisKeys {
    queue: String,
    done: bool,
}

const CLEANUP_SCRIPT: &str = r#"
local n = 0
local cursor = "0"
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    redis.call('DEL', k)
    n = n + 1
  end
until cursor == "0"
redis.call('ZREM', 'core:apalis:queues:list', ARGV[2])
return n
"#;

impl RedisKeys {
    /// Keys of `queue`, deleted on drop; `queue` must be made of ASCII
    /// letters, digits, `-` and `_` (so that `{queue}:*` matches only its keys).
    pub fn new(queue: &str) -> Self {
        // Only characters that are not glob syntax, so `{queue}:*` matches just ours.
        assert!(
            queue
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{queue}"
        );
        Self {
            queue: queue.to_owned(),
            done: false,
        }
    }

    /// Deletes the keys; returns how many there were.
    pub fn delete(&mut self) -> Result<i64, String> {
        self.done = true;
        let pattern = format!("{}:*", self.queue);
        let workers = format!("{}:workers", self.queue);
        resp_command(&["EVAL", CLEANUP_SCRIPT, "0", &pattern, &workers])
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = self.delete()
        {
            eprintln!("could not delete the Redis keys of {}: {e}", self.queue);
        }
    }
}

/// Sends one command to Redis and reads an integer reply.
fn resp_command(args: &[&str]) -> Result<i64, String> {
    let mut stream = TcpStream::connect_timeout(
        &REDIS_ADDR
            .parse()
            .map_err(|e| format!("{REDIS_ADDR}: {e}"))?,
        Duration::from_secs(2),
    )
    .map_err(|e| format!("connect {REDIS_ADDR}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let line = line.trim_end();
    match line.split_at_checked(1) {
        Some((":", n)) => n.parse().map_err(|e| format!("{line}: {e}")),
        _ => Err(format!("unexpected reply {line:?}")),
    }
}
