//! The name of the machine this process runs on, as the operating system
//! reports it: the pod's name in Kubernetes, the container's id under
//! Docker, the machine's name elsewhere.
//!
//! `jobsight-otel` puts it in the resource as `host.name`, and
//! `jobsight-apalis`'s `worker_name` puts it in worker names, so that two
//! processes on two machines never look like one.

use std::sync::OnceLock;

/// The host name, read once per process (`gethostname` on Unix,
/// `COMPUTERNAME` on Windows); `None` when the system gives none or an
/// empty one. Invalid UTF-8 is replaced.
pub fn host_name() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        let name = read()?;
        let name = name.trim();
        (!name.is_empty()).then(|| name.to_owned())
    })
    .as_deref()
}

#[cfg(unix)]
fn read() -> Option<String> {
    // POSIX host names are at most 255 bytes; one more for the terminator.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and
    // `gethostname` writes at most that many.
    let status = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if status != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(not(unix))]
fn read() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn matches_the_kernels_host_name() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(host_name(), Some(kernel.trim()));
    }

    #[test]
    fn is_read_once() {
        assert_eq!(host_name().map(str::as_ptr), host_name().map(str::as_ptr));
    }
}
