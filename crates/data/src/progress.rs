//! The per-epoch progress bar every trainer shows.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `batches` for epoch `epoch` (0-based) of `epochs`, or a hidden
/// one when `show` is false; trainers put the live loss in its message.
pub fn epoch_bar(show: bool, batches: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(batches as u64);
    let style = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{}/{epochs}", epoch + 1));
    bar
}
