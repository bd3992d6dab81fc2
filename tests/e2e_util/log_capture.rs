//! A writer that keeps what it is given, e.g. jobsight-otel's one-line
//! reports (`Builder::diagnostics_writer`).

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Lines written, shared by its clones.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Panics unless exactly one line contains `needle`.
    pub fn assert_once(&self, needle: &str) {
        assert_eq!(
            self.count(needle),
            1,
            "`{needle}` once in:\n{}",
            self.text()
        );
    }

    /// Lines that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
