//! A writer that keeps what it is given.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

/// Everything written to it, shared by its clones: hand a clone to the code
/// under test (e.g. `jobsight_otel::Builder::diagnostics_writer`) and read
/// the text back from the original.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    fn bytes(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panicking writer thread must not hide the text from the test.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything written so far (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Lines that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
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

    /// Forgets what was written.
    pub fn clear(&self) {
        self.bytes().clear();
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
