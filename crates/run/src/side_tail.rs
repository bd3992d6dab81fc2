//! Keeping the last bytes of the command's output without copying it, on
//! Linux: each chunk is duplicated with `tee(2)` into a side pipe (page
//! references, no copy), then moved on with `splice(2)`. The side pipe
//! holds the newest bytes; older ones are dropped into `/dev/null` (again
//! without a copy) once more than the limit is kept. Only when the side
//! pipe is full of small writes are its bytes read out, into a ring of at
//! most the limit.
//!
//! Elsewhere, or when the side pipe cannot be made, the bytes are kept by
//! copying them into the ring ([`SideTail::push`]).

use std::fs::File;
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::output::Tail;

/// The last bytes of the output: older ones in a ring, newer ones in the
/// side pipe.
pub struct SideTail {
    ring: Tail,
    limit: usize,
    #[cfg(target_os = "linux")]
    side: Option<SidePipe>,
}

#[cfg(target_os = "linux")]
struct SidePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe.
    len: usize,
    null: File,
}

/// What [`SideTail::tee_from`] found.
#[cfg(target_os = "linux")]
pub enum Teed {
    /// This many bytes at the head of the pipe are now also kept.
    Bytes(usize),
    /// The pipe has no writer left and is empty.
    End,
    /// Nothing to read yet.
    Empty,
}

impl SideTail {
    /// Keeps at most `limit` bytes; with `zero_copy`, in a side pipe where
    /// the system allows it.
    pub fn new(limit: usize, zero_copy: bool) -> Self {
        #[cfg(target_os = "linux")]
        let side = if zero_copy {
            SidePipe::new(limit).ok()
        } else {
            None
        };
        #[cfg(not(target_os = "linux"))]
        let _ = zero_copy;
        SideTail {
            ring: Tail::new(limit),
            limit,
            #[cfg(target_os = "linux")]
            side,
        }
    }

    /// Whether chunks are kept with [`SideTail::tee_from`].
    pub fn zero_copy(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.side.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Keeps a chunk that was read (the copying path).
    pub fn push(&mut self, chunk: &[u8]) {
        self.drain_side();
        self.ring.push(chunk);
    }

    /// Duplicates up to `max` bytes at the head of the pipe `from` into the
    /// side pipe, without consuming them.
    #[cfg(target_os = "linux")]
    pub fn tee_from(&mut self, from: RawFd, max: usize) -> io::Result<Teed> {
        let mut made_room = false;
        loop {
            let Some(side) = &mut self.side else {
                return Err(io::Error::from(io::ErrorKind::Unsupported));
            };
            // SAFETY: tee(2) on two open pipe descriptors.
            let n =
                unsafe { libc::tee(from, side.write.as_raw_fd(), max, libc::SPLICE_F_NONBLOCK) };
            if n > 0 {
                let n = n.unsigned_abs();
                side.len += n;
                return Ok(Teed::Bytes(n));
            }
            if n == 0 {
                return Ok(Teed::End);
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if writable(side.write.as_raw_fd()) || made_room => {
                    return Ok(Teed::Empty);
                }
                io::ErrorKind::WouldBlock => {
                    self.make_room()?;
                    made_room = true;
                }
                _ => return Err(error),
            }
        }
    }

    /// Frees the side pipe: first by dropping what is beyond the limit,
    /// then, if it is still full, by reading it into the ring.
    #[cfg(target_os = "linux")]
    fn make_room(&mut self) -> io::Result<()> {
        let limit = self.limit;
        let ring = &mut self.ring;
        let Some(side) = &mut self.side else {
            return Ok(());
        };
        let excess = (ring.len() + side.len).saturating_sub(limit);
        let from_ring = excess.min(ring.len());
        ring.drop_front(from_ring);
        let mut from_side = excess - from_ring;
        while from_side > 0 {
            // SAFETY: splice(2) from our side pipe into /dev/null.
            let n = unsafe {
                libc::splice(
                    side.read.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::os::fd::AsRawFd::as_raw_fd(&side.null),
                    std::ptr::null_mut(),
                    from_side,
                    libc::SPLICE_F_NONBLOCK,
                )
            };
            if n <= 0 {
                break;
            }
            let n = n.unsigned_abs();
            side.len -= n;
            from_side -= n;
        }
        if !writable(side.write.as_raw_fd()) {
            self.drain_side();
        }
        Ok(())
    }

    /// Reads what the side pipe holds into the ring.
    fn drain_side(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(side) = &mut self.side {
            let mut buf = [0u8; 16 * 1024];
            while side.len > 0 {
                // SAFETY: read(2) into a buffer of the length given.
                let n = unsafe {
                    libc::read(side.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                };
                if n <= 0 {
                    break;
                }
                let n = n.unsigned_abs();
                side.len = side.len.saturating_sub(n);
                self.ring.push(&buf[..n]);
            }
        }
    }

    /// The bytes kept, oldest first.
    pub fn finish(&mut self) -> Vec<u8> {
        self.drain_side();
        self.ring.to_vec()
    }
}

#[cfg(target_os = "linux")]
impl SidePipe {
    fn new(limit: usize) -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2(2) writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just made and are ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Room for the limit and a chunk in flight; the default 64 KiB
        // when the system refuses more.
        let size = (limit + 256 * 1024).min(1024 * 1024);
        let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size);
        }
        let null = File::options().write(true).open("/dev/null")?;
        Ok(SidePipe {
            read,
            write,
            len: 0,
            null,
        })
    }
}

/// Whether a pipe has room for at least one more buffer.
#[cfg(target_os = "linux")]
fn writable(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll(2) on one descriptor, without waiting.
    unsafe { libc::poll(&mut poll, 1, 0) == 1 && poll.revents & libc::POLLOUT != 0 }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    /// Tees everything written to a pipe through a side tail (draining the
    /// pipe as the relay does) and returns what was kept.
    fn keep(limit: usize, writes: &[&[u8]]) -> Vec<u8> {
        let mut tail = SideTail::new(limit, true);
        assert!(tail.zero_copy());
        let (reader, mut writer) = io::pipe().expect("pipe");
        let null = File::options().write(true).open("/dev/null").expect("null");
        for w in writes {
            writer.write_all(w).expect("write");
            let mut left = w.len();
            while left > 0 {
                let Ok(Teed::Bytes(n)) = tail.tee_from(reader.as_raw_fd(), left) else {
                    panic!("nothing teed")
                };
                // SAFETY: splice(2) between open descriptors.
                let moved = unsafe {
                    libc::splice(
                        reader.as_raw_fd(),
                        std::ptr::null_mut(),
                        null.as_raw_fd(),
                        std::ptr::null_mut(),
                        n,
                        0,
                    )
                };
                assert_eq!(moved.unsigned_abs(), n);
                left -= n;
            }
        }
        drop(writer);
        assert!(matches!(
            tail.tee_from(reader.as_raw_fd(), 10),
            Ok(Teed::End)
        ));
        tail.finish()
    }

    #[test]
    fn keeps_the_last_bytes_of_big_and_small_writes() {
        let big = vec![b'x'; 60_000];
        let mut writes: Vec<&[u8]> = vec![&big; 30];
        writes.push(b"the end");
        let kept = keep(1000, &writes);
        assert_eq!(kept.len(), 1000);
        assert!(kept.ends_with(b"xxthe end"));
        // Many small writes: more buffers than the side pipe has slots.
        let lines: Vec<Vec<u8>> = (0..20_000).map(|i| format!("{i}\n").into_bytes()).collect();
        let writes: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let kept = keep(50, &writes);
        let all: Vec<u8> = lines.concat();
        assert_eq!(kept, all[all.len() - 50..]);
    }
}
