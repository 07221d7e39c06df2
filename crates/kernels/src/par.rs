//! Splitting work over rayon, with workers that linger between kernels.
//!
//! Two things cost time on a small, shared VM. A worker that went to sleep
//! takes ~60 µs (often more) to wake, which is the whole cost of a 200 µs
//! kernel split two ways; and `par_chunks_mut` called from outside the pool
//! parks the caller while the workers wake. So [`for_each_chunk`] runs the
//! first chunk on the calling thread while the others go to the pool, and
//! after each split the workers *linger*: they keep polling for rayon work for
//! [`LINGER`] before they may sleep, so the next kernel of a training step
//! finds them awake (OpenMP's spin-wait does the same for PyTorch). A
//! lingering worker yields its core to other threads between polls.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long workers stay awake after the last parallel kernel.
pub const LINGER: Duration = Duration::from_micros(500);

static LINGERING: AtomicBool = AtomicBool::new(false);
/// Nanoseconds since [`epoch`] until which workers linger.
static LINGER_UNTIL: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Threads kernels may use: rayon's pool size.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Keeps the workers polling for work until `LINGER` after now.
fn linger() {
    LINGER_UNTIL.store(now_ns() + LINGER.as_nanos() as u64, Ordering::Relaxed);
    if LINGERING.swap(true, Ordering::AcqRel) {
        return;
    }
    rayon::spawn_broadcast(|ctx| {
        while now_ns() < LINGER_UNTIL.load(Ordering::Relaxed) {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::thread::yield_now();
            }
        }
        if ctx.index() == 0 {
            LINGERING.store(false, Ordering::Release);
        }
    });
}

/// Elements per task for elementwise work over `total` elements: a few
/// tasks per thread (for balance), none smaller than `PAR_CHUNK`.
pub fn chunk_len(total: usize) -> usize {
    total.div_ceil(threads() * 4).max(crate::PAR_CHUNK)
}

/// Whether work of `size` elements should be split at all.
pub fn worth_splitting(size: usize) -> bool {
    threads() > 1 && size >= crate::PAR_THRESHOLD
}

/// Calls `f(index, chunk)` for each `chunk_len`-long chunk of `data` (the
/// last may be shorter), in parallel when the pool has more than one thread.
pub fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk_len = chunk_len.max(1);
    if threads() < 2 || data.len() <= chunk_len {
        data.chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let mut chunks = data.chunks_mut(chunk_len).enumerate();
    let Some((i0, first)) = chunks.next() else {
        return;
    };
    let f = &f;
    rayon::in_place_scope(|s| {
        for (i, chunk) in chunks {
            s.spawn(move |_| f(i, chunk));
        }
        f(i0, first);
    });
    linger();
}
