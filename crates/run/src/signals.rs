//! Passing termination signals on to the command, so that `kill`, `timeout`,
//! `docker stop` or systemd stopping `jobsight-run` stop the command too —
//! and `jobsight-run` lives on to record how it ended and flush.
//!
//! `jobsight-run` catches SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
//! SIGUSR2. A signal another process sent (`kill`, `si_code` ≤ 0 on Linux)
//! is forwarded to the command. A signal the kernel generated for the whole
//! foreground process group — Ctrl-C, Ctrl-\ or a hang-up at a terminal — is
//! not forwarded: the command got it already. Either way `jobsight-run`
//! keeps waiting for the command to exit. (A signal sent by a process to the
//! whole group reaches the command twice: once directly, once forwarded.)
//! SIGKILL cannot be caught: the command then outlives `jobsight-run`
//! unrecorded.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals caught and forwarded.
#[cfg(unix)]
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The command's pid once started; 0 before and after.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before the command started, to forward then.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Installs the forwarding handlers.
#[cfg(unix)]
pub fn install() -> io::Result<()> {
    for signal in FORWARDED {
        // SAFETY: `action` is fully initialized (zeroed, then the fields
        // sigaction reads are set); `forward` is async-signal-safe: it only
        // touches atomics and calls kill(2).
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if installed != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Nothing to install where there are no signals.
#[cfg(not(unix))]
pub fn install() -> io::Result<()> {
    Ok(())
}

/// Forwards signals to `pid` from now on, including one that arrived before.
pub fn set_child(pid: u32) {
    let pid = i32::try_from(pid).unwrap_or(0);
    CHILD.store(pid, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    #[cfg(unix)]
    if pending != 0 && pid > 0 {
        // SAFETY: kill(2) with a positive pid and a valid signal number.
        unsafe {
            libc::kill(pid, pending);
        }
    }
    #[cfg(not(unix))]
    let _ = pending;
}

/// Stops forwarding (the command has exited).
pub fn clear_child() {
    CHILD.store(0, Ordering::SeqCst);
}

#[cfg(unix)]
extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if !sent_by_a_process(info) {
        return;
    }
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; the pid is positive, so it
        // names one process, never a group.
        unsafe {
            libc::kill(pid, signal);
        }
    } else {
        PENDING.store(signal, Ordering::SeqCst);
    }
}

/// Whether the signal came from kill(2)/sigqueue(3) rather than from the
/// kernel (a terminal's Ctrl-C is sent to the whole foreground group).
#[cfg(target_os = "linux")]
fn sent_by_a_process(info: *const libc::siginfo_t) -> bool {
    if info.is_null() {
        return true;
    }
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let code = unsafe { (*info).si_code };
    code <= 0
}

/// Elsewhere the codes differ: forward everything.
#[cfg(all(unix, not(target_os = "linux")))]
fn sent_by_a_process(_info: *const libc::siginfo_t) -> bool {
    true
}

/// The conventional name of signal `number` (`SIGKILL`), or `SIG<n>`.
pub fn name(number: i32) -> String {
    #[cfg(unix)]
    {
        let known = [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGQUIT, "SIGQUIT"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGTRAP, "SIGTRAP"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGUSR1, "SIGUSR1"),
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGPIPE, "SIGPIPE"),
            (libc::SIGALRM, "SIGALRM"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGXCPU, "SIGXCPU"),
            (libc::SIGXFSZ, "SIGXFSZ"),
            (libc::SIGSYS, "SIGSYS"),
        ];
        if let Some((_, name)) = known.iter().find(|(n, _)| *n == number) {
            return (*name).to_owned();
        }
    }
    format!("SIG{number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(name(9), "SIGKILL");
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(64), "SIG64");
    }
}
