//! Progress on stderr while the steps run (the summary alone goes to stdout).

use std::io::{IsTerminal, Write as _};

/// Progress on stderr: one line rewritten in place on a terminal, a line per update otherwise.
pub struct Progress {
    step: &'static str,
    terminal: bool,
    shown: bool,
}

impl Progress {
    pub fn new(step: &'static str) -> Self {
        Self {
            step,
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    pub fn update(&mut self, message: &str) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{}: {message}", self.step);
        } else {
            let _ = writeln!(err, "{}: {message}", self.step);
        }
        let _ = err.flush();
        self.shown = true;
    }

    /// Like [`Progress::update`], on a terminal only (for updates too frequent for a log).
    pub fn live(&mut self, message: &str) {
        if self.terminal {
            self.update(message);
        }
    }

    pub fn finish(&mut self) {
        if self.terminal && self.shown {
            let _ = writeln!(std::io::stderr(), " ... done");
        }
        self.shown = false;
    }
}

/// One line on stderr.
pub fn status(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}
