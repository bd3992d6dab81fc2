//! Where this crate's own one-line reports go: the first failed export of a
//! signal, the first dropped span of a reason, the totals at shutdown.
//! Stderr unless [`Builder::diagnostics_writer`](crate::Builder::diagnostics_writer)
//! says otherwise.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A shared line writer. Lines are rare (a handful per process), so a mutex
/// is fine; a writer that fails loses the line, never the caller's time.
#[derive(Clone, Default)]
pub(crate) struct Reports {
    /// `None`: stderr.
    writer: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
}

impl Reports {
    pub(crate) fn to_writer(writer: Box<dyn Write + Send>) -> Self {
        Reports {
            writer: Some(Arc::new(Mutex::new(writer))),
        }
    }

    /// Writes `line` and a newline.
    pub(crate) fn line(&self, line: &str) {
        match &self.writer {
            None => eprintln!("{line}"),
            Some(writer) => {
                let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(writer, "{line}");
                let _ = writer.flush();
            }
        }
    }
}

impl fmt::Debug for Reports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.writer {
            None => "Reports(stderr)",
            Some(_) => "Reports(writer)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobsight_testkit::LogCapture;

    #[test]
    fn lines_go_to_the_writer() {
        let captured = LogCapture::default();
        let reports = Reports::to_writer(Box::new(captured.clone()));
        reports.clone().line("one");
        reports.line("two");
        assert_eq!(captured.text(), "one\ntwo\n");
    }
}
