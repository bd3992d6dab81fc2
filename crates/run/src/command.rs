//! Running the command: stdin and stdout inherited, stderr passed through
//! to ours while its last lines are kept for the failure report.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// The most bytes of stderr kept in memory (the tail is cut from them).
const KEPT_BYTES: usize = 64 * 1024;
/// The longest tail reported, in bytes.
pub const MAX_TAIL_BYTES: usize = 4096;
/// How long to wait, once the command has exited, for its stderr to close
/// (a background process it started may hold it open for ever).
const STDERR_GRACE: Duration = Duration::from_millis(300);

/// How the command ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// The last lines it wrote to stderr, when captured and not empty.
    pub stderr_tail: Option<String>,
}

/// A started command.
pub struct Running {
    child: Child,
    tail: Option<Tail>,
}

struct Tail {
    kept: Arc<Mutex<VecDeque<u8>>>,
    closed: mpsc::Receiver<()>,
    lines: usize,
}

/// Starts `program` with `args` and the extra environment `env`. With
/// `tail_lines` > 0 stderr goes through a pipe: every byte is written on to
/// our stderr as it arrives, and the last bytes are kept.
pub fn spawn(
    program: &OsString,
    args: &[OsString],
    env: &[(&str, String)],
    tail_lines: usize,
) -> io::Result<Running> {
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    if tail_lines > 0 {
        command.stderr(Stdio::piped());
    }
    let mut child = command.spawn()?;
    let tail = child.stderr.take().map(|stderr| {
        let kept = Arc::new(Mutex::new(VecDeque::with_capacity(8 * 1024)));
        let (done, closed) = mpsc::channel();
        let sink = Arc::clone(&kept);
        let spawned = thread::Builder::new()
            .name("stderr-tee".into())
            .spawn(move || {
                tee(stderr, io::stderr(), &sink);
                let _ = done.send(());
            });
        if spawned.is_err() {
            // No thread, no pipe reader: the command would block once the
            // pipe fills. Nothing better to do than to say so.
            eprintln!("jobsight-run: cannot start the stderr thread; stderr is not captured");
        }
        Tail {
            kept,
            closed,
            lines: tail_lines,
        }
    });
    Ok(Running { child, tail })
}

impl Running {
    /// The command's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command to exit, then (briefly) for its stderr to
    /// close, and returns how it ended.
    pub fn wait(mut self) -> io::Result<Finished> {
        let status = self.child.wait()?;
        let stderr_tail = self.tail.and_then(|tail| {
            let _ = tail.closed.recv_timeout(STDERR_GRACE);
            let kept = tail.kept.lock().unwrap_or_else(PoisonError::into_inner);
            let bytes: Vec<u8> = kept.iter().copied().collect();
            last_lines(&bytes, tail.lines, MAX_TAIL_BYTES)
        });
        Ok(Finished {
            status,
            stderr_tail,
        })
    }
}

/// Copies `stderr` to `out` (our stderr) until it closes, keeping the last
/// [`KEPT_BYTES`]. A closed or failing `out` does not stop the reading (the
/// command must never block on a full pipe).
fn tee(mut stderr: impl Read, out: impl Write, kept: &Mutex<VecDeque<u8>>) {
    let mut buf = [0u8; 8192];
    let mut ours = Some(out);
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let chunk = &buf[..n];
        if let Some(out) = &mut ours
            && out.write_all(chunk).is_err()
        {
            ours = None;
        }
        let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.extend(chunk);
        let excess = kept.len().saturating_sub(KEPT_BYTES);
        kept.drain(..excess);
    }
}

/// The last `lines` lines of `bytes` (lossy UTF-8, without the final line
/// break), cut to their last `max_bytes` bytes; `None` when empty.
pub fn last_lines(bytes: &[u8], lines: usize, max_bytes: usize) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() || lines == 0 {
        return None;
    }
    let start = text
        .rmatch_indices('\n')
        .nth(lines - 1)
        .map_or(0, |(i, _)| i + 1);
    let tail = &text[start..];
    let mut cut = tail.len().saturating_sub(max_bytes);
    while !tail.is_char_boundary(cut) {
        cut += 1;
    }
    Some(tail[cut..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        let text = b"one\ntwo\nthree\nfour\n";
        assert_eq!(last_lines(text, 2, 100).as_deref(), Some("three\nfour"));
        assert_eq!(
            last_lines(text, 10, 100).as_deref(),
            Some("one\ntwo\nthree\nfour")
        );
        assert_eq!(
            last_lines(b"no newline", 3, 100).as_deref(),
            Some("no newline")
        );
        assert_eq!(last_lines(b"\n\n", 3, 100), None);
        assert_eq!(last_lines(b"", 3, 100), None);
        assert_eq!(last_lines(text, 0, 100), None);
    }

    #[test]
    fn cuts_to_the_byte_limit_from_the_end() {
        let long = format!("{}\n{}", "a".repeat(50), "é".repeat(100));
        let tail = last_lines(long.as_bytes(), 5, 41).unwrap();
        assert!(tail.len() <= 41);
        assert!(tail.chars().all(|c| c == 'é'));
        let invalid = b"ok\n\xff\xfe broken";
        assert_eq!(
            last_lines(invalid, 1, 100).as_deref(),
            Some("\u{fffd}\u{fffd} broken")
        );
    }

    #[test]
    fn tee_keeps_only_the_last_bytes() {
        let mut out = Vec::new();
        let kept = Mutex::new(VecDeque::new());
        tee(&b"0123456789abcdef"[..], &mut out, &kept);
        assert_eq!(kept.lock().unwrap().len(), 16);
        assert_eq!(out, b"0123456789abcdef");
        let kept = Mutex::new(VecDeque::new());
        tee(
            io::repeat(b'y').take((KEPT_BYTES * 2) as u64),
            io::sink(),
            &kept,
        );
        assert_eq!(kept.lock().unwrap().len(), KEPT_BYTES);
        // A writer that fails does not stop the reading.
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let kept = Mutex::new(VecDeque::new());
        tee(io::repeat(b'z').take(100_000), Broken, &kept);
        assert_eq!(kept.lock().unwrap().len(), KEPT_BYTES);
    }
}
