//! The command's output: passed through unchanged while its last bytes are
//! kept for the outcome ping and the failed span.
//!
//! - With an output limit of 0, the command gets this program's stdout and
//!   stderr themselves: nothing is kept, nothing is copied.
//! - Otherwise each of stdout and stderr goes through a pipe that a thread
//!   passes on to this program's stream as it arrives, keeping the last
//!   `limit` bytes of both, in the order they arrived. On Linux the bytes
//!   are not copied: `tee(2)` and `splice(2)` move page references (see
//!   [`crate::side_tail`]); where the stream does not take `splice` (a
//!   terminal), they are copied. When this program's
//!   stdout and stderr are the same open file (`2>&1`, or a terminal), the
//!   command gets **one** pipe for both, so the order of its writes is kept
//!   exactly, in the file and in the kept bytes.
//! - When a stream's reader has gone (`| head -1`), the pipe of that stream
//!   is closed: the command's next write gets `SIGPIPE`/`EPIPE`, as it
//!   would without this program. Other write errors (a full disk) drop the
//!   rest of that stream's output and keep the command running.
//! - Once the command has exited, what it wrote is passed on to the end,
//!   however slow the reader; a pipe that stays open but silent for
//!   [`CLOSE_GRACE`] after the exit (a background process the command
//!   started holds it) is left behind.

use std::fs::File;
use std::io::{self, PipeReader, Read, Write};

use crate::side_tail::SideTail;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long a pipe may stay open and silent, once the command has exited,
/// before it is left behind.
pub const CLOSE_GRACE: Duration = Duration::from_millis(300);
/// Bytes copied per read.
const CHUNK: usize = 128 * 1024;
/// The pipe size asked for (Linux; the default is 64 KiB): fewer switches
/// between the command and the copying thread.
#[cfg(target_os = "linux")]
const PIPE_SIZE: libc::c_int = 1024 * 1024;

/// The last bytes written, up to a limit.
#[derive(Debug)]
pub struct Tail {
    bytes: std::collections::VecDeque<u8>,
    limit: usize,
}

impl Tail {
    /// An empty tail keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Tail {
            bytes: std::collections::VecDeque::with_capacity(limit.min(64 * 1024)),
            limit,
        }
    }

    /// Appends `chunk`, forgetting the oldest bytes beyond the limit.
    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.limit)..];
        let excess = (self.bytes.len() + chunk.len()).saturating_sub(self.limit);
        self.bytes.drain(..excess);
        self.bytes.extend(chunk);
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Forgets the `n` oldest bytes.
    pub fn drop_front(&mut self, n: usize) {
        self.bytes.drain(..n.min(self.bytes.len()));
    }

    /// The bytes kept, oldest first.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }
}

/// The kept output as text: lossy UTF-8, a character cut by the limit left
/// out, trailing line breaks removed; `None` when only white space.
pub fn text(bytes: &[u8]) -> Option<String> {
    // A tail may start inside a multi-byte character: skip its
    // continuation bytes.
    let start = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
        .count();
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = text.trim_end_matches(['\n', '\r']);
    (!text.trim().is_empty()).then(|| text.to_owned())
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub fn last_bytes(text: &str, max: usize) -> &str {
    let mut cut = text.len().saturating_sub(max);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

/// A started command whose output is being passed through.
pub struct Running {
    child: Child,
    tail: Arc<Mutex<SideTail>>,
    relays: Vec<Arc<Progress>>,
}

/// What a copying thread is doing, for the wait after the command's exit.
#[derive(Debug)]
struct Progress {
    /// Set when the pipe reached its end (or the copying stopped).
    done: AtomicBool,
    /// Set while waiting for the command to write.
    reading: AtomicBool,
    /// When the last read returned, in ms since `epoch`.
    last_read: AtomicU64,
    epoch: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            done: AtomicBool::new(false),
            reading: AtomicBool::new(false),
            last_read: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Finished, or waiting for input that has not come for `grace` since
    /// `since` (ms since `epoch`).
    fn settled(&self, since: u64, grace: u64) -> bool {
        self.done.load(Ordering::Acquire)
            || (self.reading.load(Ordering::Acquire)
                && self
                    .now()
                    .saturating_sub(self.last_read.load(Ordering::Acquire).max(since))
                    >= grace)
    }
}

/// How the command ended, and what it wrote last.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// The last bytes of its stdout and stderr, as written.
    pub output: Vec<u8>,
}

/// Starts `command` with its output passed through, keeping the last
/// `limit` bytes (0: inherit this program's streams, keep nothing).
pub fn spawn(mut command: Command, limit: usize) -> io::Result<Running> {
    let tail = Arc::new(Mutex::new(SideTail::new(limit, limit > 0)));
    let mut relays = Vec::new();
    if limit > 0 {
        let stdout = io::stdout().as_fd().try_clone_to_owned().ok();
        let stderr = io::stderr().as_fd().try_clone_to_owned().ok();
        match (stdout, stderr) {
            (Some(out), Some(err)) if same_file(&out, &err) => {
                let (reader, writer) = pipe()?;
                command.stdout(writer.try_clone()?).stderr(writer);
                relays.push((reader, out));
            }
            (out, err) => {
                if let Some(out) = out {
                    let (reader, writer) = pipe()?;
                    command.stdout(writer);
                    relays.push((reader, out));
                }
                if let Some(err) = err {
                    let (reader, writer) = pipe()?;
                    command.stderr(writer);
                    relays.push((reader, err));
                }
            }
        }
    }
    let child = command.spawn()?;
    // The write ends now live in the child only: the pipes end with it.
    drop(command);
    let mut progress = Vec::new();
    for (reader, out) in relays {
        let tail = Arc::clone(&tail);
        let state = Arc::new(Progress::new());
        let shared = Arc::clone(&state);
        let spawned = thread::Builder::new().name("output".into()).spawn(move || {
            relay(reader, File::from(out), &tail, &shared);
            shared.done.store(true, Ordering::Release);
        });
        // Without a thread the reader is dropped with the closure: the
        // command gets EPIPE on this stream rather than blocking.
        if spawned.is_ok() {
            progress.push(state);
        }
    }
    Ok(Running {
        child,
        tail,
        relays: progress,
    })
}

impl Running {
    /// The command's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command to exit, then for its output to be passed
    /// through (see the module docs).
    pub fn wait(mut self) -> io::Result<Finished> {
        let status = self.child.wait()?;
        let grace = u64::try_from(CLOSE_GRACE.as_millis()).unwrap_or(u64::MAX);
        let exited: Vec<u64> = self.relays.iter().map(|p| p.now()).collect();
        let mut pause = Duration::from_micros(100);
        while !self
            .relays
            .iter()
            .zip(&exited)
            .all(|(p, since)| p.settled(*since, grace))
        {
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        let output = self
            .tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish();
        Ok(Finished { status, output })
    }
}

/// A pipe, made larger where the system allows it.
fn pipe() -> io::Result<(PipeReader, io::PipeWriter)> {
    let (reader, writer) = io::pipe()?;
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a descriptor we own; a refusal (EPERM above the
    // system's limit) only leaves the default size.
    unsafe {
        libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
    Ok((reader, writer))
}

/// Whether two descriptors are the same open file (device and inode).
fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
    let stat = |fd: &OwnedFd| {
        // SAFETY: fstat writes into the zeroed struct; the fd is open.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(fd.as_raw_fd(), &mut st) == 0).then_some((st.st_dev, st.st_ino))
        }
    };
    matches!((stat(a), stat(b)), (Some(x), Some(y)) if x == y)
}

/// Passes `from` on to `to` until the end, keeping the tail: without
/// copying where the system allows it, else by copying. A reader that has
/// gone (EPIPE) closes `from`; another write error stops the passing on but
/// not the reading (the command must never block on a full pipe).
fn relay(from: PipeReader, to: File, tail: &Mutex<SideTail>, progress: &Progress) {
    #[cfg(target_os = "linux")]
    let Some((from, to)) = spliced(from, to, tail, progress) else {
        return;
    };
    #[cfg(not(target_os = "linux"))]
    let to = Some(to);
    copied(from, to, tail, progress);
}

fn lock(tail: &Mutex<SideTail>) -> std::sync::MutexGuard<'_, SideTail> {
    tail.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The zero-copy relay; `None` when the stream is done with, or what is
/// left for the copying relay.
#[cfg(target_os = "linux")]
fn spliced(
    from: PipeReader,
    to: File,
    tail: &Mutex<SideTail>,
    progress: &Progress,
) -> Option<(PipeReader, Option<File>)> {
    use crate::side_tail::Teed;
    if !lock(tail).zero_copy() {
        return Some((from, Some(to)));
    }
    let fd = from.as_raw_fd();
    loop {
        progress.reading.store(true, Ordering::Release);
        let ready = wait_for(fd, libc::POLLIN);
        progress.last_read.store(progress.now(), Ordering::Release);
        progress.reading.store(false, Ordering::Release);
        if ready.is_err() {
            return Some((from, Some(to)));
        }
        let mut left = match lock(tail).tee_from(fd, CHUNK) {
            Ok(Teed::Bytes(n)) => n,
            Ok(Teed::End) => return None,
            Ok(Teed::Empty) => continue,
            Err(_) => return Some((from, Some(to))),
        };
        while left > 0 {
            // SAFETY: splice(2) from the command's pipe to our stream, both
            // open for the relay's lifetime.
            let moved = unsafe {
                libc::splice(
                    fd,
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                    libc::SPLICE_F_MOVE,
                )
            };
            if moved > 0 {
                left -= moved.unsigned_abs();
                continue;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                _ if moved == 0 => return None,
                io::ErrorKind::Interrupted => {}
                // Dropping `from` closes the only read end.
                io::ErrorKind::BrokenPipe => return None,
                io::ErrorKind::WouldBlock => {
                    let _ = wait_for(to.as_raw_fd(), libc::POLLOUT);
                }
                // The stream takes no splice (a terminal), or failed: the
                // bytes already kept are passed on by copying, and so is
                // the rest.
                _ => {
                    let mut from = from;
                    let to = copy_exact(&mut from, to, left)?;
                    return Some((from, to));
                }
            }
        }
    }
}

/// Waits until `fd` is ready for `events` (or hung up).
#[cfg(target_os = "linux")]
fn wait_for(fd: std::os::fd::RawFd, events: libc::c_short) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: poll(2) on one open descriptor.
        let n = unsafe { libc::poll(&mut poll, 1, -1) };
        if n >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Passes exactly `n` bytes on by copying (they are kept already). `None`
/// when the reader has gone; the stream, or `None` for a stream that
/// failed otherwise.
#[cfg(target_os = "linux")]
fn copy_exact(from: &mut PipeReader, mut to: File, mut n: usize) -> Option<Option<File>> {
    let mut buf = vec![0u8; CHUNK.min(n)];
    let mut out = Some(&mut to);
    while n > 0 {
        let want = buf.len().min(n);
        let got = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        n -= got;
        if let Some(file) = &mut out {
            match file.write_all(&buf[..got]) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return None,
                Err(_) => out = None,
            }
        }
    }
    let failed = out.is_none();
    Some((!failed).then_some(to))
}

/// The copying relay.
fn copied(mut from: PipeReader, to: Option<File>, tail: &Mutex<SideTail>, progress: &Progress) {
    let mut buf = vec![0u8; CHUNK];
    let mut out = to;
    loop {
        progress.reading.store(true, Ordering::Release);
        let read = from.read(&mut buf);
        progress.last_read.store(progress.now(), Ordering::Release);
        progress.reading.store(false, Ordering::Release);
        let n = match read {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let chunk = &buf[..n];
        if let Some(file) = &mut out {
            match file.write_all(chunk) {
                Ok(()) => {}
                // Dropping `from` closes the only read end.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return,
                Err(_) => out = None,
            }
        }
        lock(tail).push(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut tail = Tail::new(8);
        tail.push(b"0123");
        tail.push(b"4567");
        tail.push(b"89");
        assert_eq!(tail.to_vec(), b"23456789");
        tail.push(b"abcdefghijkl");
        assert_eq!(tail.to_vec(), b"efghijkl");
        let mut none = Tail::new(0);
        none.push(b"x");
        assert!(none.to_vec().is_empty());
    }

    #[test]
    fn text_of_a_cut_tail() {
        assert_eq!(text(b"ok\n\n").as_deref(), Some("ok"));
        assert_eq!(text(b" \n"), None);
        // "é" is C3 A9: a tail that starts at A9 skips it.
        assert_eq!(text(b"\xa9abc").as_deref(), Some("abc"));
        assert_eq!(text(b"\xffx").as_deref(), Some("\u{fffd}x"));
        assert_eq!(last_bytes("aéé", 3), "é");
        assert_eq!(last_bytes("abc", 10), "abc");
    }
}
