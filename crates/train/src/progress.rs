//! Progress: a live bar on a terminal, one line per epoch (or per long
//! evaluation) in a log file or a CI job, nothing when asked for quiet.
//!
//! A bar redrawn many times a second is noise in a file; so when stderr is
//! not a terminal the bar stays hidden and [`Progress::finish`] writes one
//! line with the final message. Colour follows the `NO_COLOR` convention
//! (<https://no-color.org>): any non-empty value turns it off.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

/// A bar over a known number of steps, with a message (the live loss).
pub struct Progress {
    bar: ProgressBar,
    mode: Mode,
    label: String,
    start: Instant,
}

/// True when colour is allowed: stderr is a terminal and `NO_COLOR` is unset or empty.
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Progress {
    /// Progress over `total` steps labelled `label` (e.g. "epoch 3/10");
    /// `show` false keeps it quiet.
    pub fn new(show: bool, total: usize, label: impl Into<String>) -> Self {
        let mode = match (show, std::io::stderr().is_terminal()) {
            (false, _) => Mode::Quiet,
            (true, true) => Mode::Bar,
            (true, false) => Mode::Lines,
        };
        let label = label.into();
        let bar = if mode == Mode::Bar {
            let template = if colour() {
                "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg}"
            } else {
                "{prefix} [{bar:30}] {pos}/{len} {msg}"
            };
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            mode,
            label,
            start: Instant::now(),
        }
    }

    /// The bar of epoch `epoch` (0-based) of `epochs`, over `batches` steps.
    pub fn epoch(show: bool, batches: usize, epoch: usize, epochs: usize) -> Self {
        Progress::new(show, batches, format!("epoch {}/{epochs}", epoch + 1))
    }

    /// One more step done, with a new message.
    pub fn step(&self, message: impl FnOnce() -> String) {
        if self.mode == Mode::Bar {
            self.bar.set_message(message());
            self.bar.inc(1);
        }
    }

    /// Done: the bar is cleared; without a terminal one line is written
    /// (`label: message, seconds`).
    pub fn finish(self, message: &str) {
        match self.mode {
            Mode::Bar => self.bar.finish_and_clear(),
            Mode::Lines => eprintln!(
                "{}: {message} ({:.1} s)",
                self.label,
                self.start.elapsed().as_secs_f64()
            ),
            Mode::Quiet => {}
        }
    }

    /// Stopped by an error: the bar stays where it was, nothing more.
    pub fn abandon(self) {
        if self.mode == Mode::Bar {
            self.bar.abandon();
        }
    }
}
