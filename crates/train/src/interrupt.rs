//! Stopping a run cleanly from outside (Ctrl-C): a request that the
//! training loop honours at the next step boundary by writing a checkpoint
//! of where it is and returning [`Error::Interrupted`](crate::Error).
//!
//! The runtime installs no signal handler itself (a library must not take
//! a process's SIGINT): a program calls [`request`] from its own handler,
//! as the `deepgen` binary does with the `ctrlc` crate:
//!
//! ```text
//! // In main, before training: the first Ctrl-C stops at the next step
//! // with a checkpoint; a second one (or one while nothing trains) exits.
//! ctrlc::set_handler(|| if !deepgen_train::interrupt::request() { std::process::exit(130) });
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Training loops running now (they check [`requested`] after each step).
static LISTENING: AtomicUsize = AtomicUsize::new(0);

/// Asks the running training loop to stop at its next step boundary with a
/// checkpoint. Returns false when nothing will honour it — no loop is
/// running, or a request is already pending (a second Ctrl-C) — so the
/// caller should exit at once (checkpoints on disk are complete at every
/// moment, so exiting loses at most the work since the last one).
pub fn request() -> bool {
    let first = !REQUESTED.swap(true, Ordering::SeqCst);
    first && LISTENING.load(Ordering::SeqCst) > 0
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Withdraws a request (for programs that train again after a stop).
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}

/// Held by a running training loop: while it lives, [`request`] is honoured.
pub(crate) struct Listening;

impl Listening {
    pub(crate) fn start() -> Self {
        LISTENING.fetch_add(1, Ordering::SeqCst);
        Listening
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        LISTENING.fetch_sub(1, Ordering::SeqCst);
    }
}
