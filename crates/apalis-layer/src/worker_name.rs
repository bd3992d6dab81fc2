//! Worker names that are unique per process.
//!
//! apalis-redis keys a worker's heartbeat and its set of jobs in flight by
//! the worker's name: a second process that registers a name already
//! heart-beating is refused, and two processes that end up with one name
//! share one in-flight set, so the death of one re-queues the jobs the other
//! is running. A fixed name (`"email-sender"`), or one made of the process id
//! alone (`1` in every container), is therefore only safe for a single
//! process.

/// `{base}@{host}/{pid}`, e.g. `emails@worker-7d9f-x2kq/1`: `base`, the
/// host name (the pod's name in Kubernetes, the container's id under Docker)
/// and the process id, which together are unique among the processes that
/// run at the same time. Without a host name: `{base}/{pid}`.
///
/// ```
/// let name = jobsight_apalis::worker_name("emails");
/// assert!(name.starts_with("emails"));
/// assert!(name.ends_with(&format!("/{}", std::process::id())));
/// ```
pub fn worker_name(base: &str) -> String {
    let pid = std::process::id();
    match jobsight_core::host::host_name() {
        Some(host) => format!("{base}@{host}/{pid}"),
        None => format!("{base}/{pid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_base_host_and_pid() {
        let host = jobsight_core::host::host_name().unwrap();
        assert_eq!(
            worker_name("emails"),
            format!("emails@{host}/{}", std::process::id())
        );
    }
}
