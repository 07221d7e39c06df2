//! Splitting work over rayon, with workers that linger between kernels.
//!
//! Two things cost time on a small, shared VM. A worker that went to sleep
//! takes ~60 µs (often more) to wake, which is the whole cost of a 200 µs
//! kernel split two ways; and `par_chunks_mut` called from outside the pool
//! parks the caller while the workers wake. So [`for_each_chunk`] makes the
//! calling thread one of the workers, and after each split the pool's
//! threads *linger*: they keep polling for rayon work for
//! [`LINGER`] before they may sleep, so the next kernel of a training step
//! finds them awake (OpenMP's spin-wait does the same for PyTorch). A
//! lingering worker yields its core to other threads between polls.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long workers stay awake after the last parallel kernel.
pub const LINGER: Duration = Duration::from_micros(500);

/// Products with fewer multiply-adds than this run on one thread: below
/// it, waking a second thread costs about what it saves. Every product
/// split (gemm, packed products, a recurrence's batch parts) uses it.
pub const PAR_WORK: usize = 1 << 21;

/// How long the caller waits for its helpers (yielding its core) before it parks.
const SPIN_LIMIT: Duration = Duration::from_millis(2);

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

/// Elements per task for elementwise work over `total` elements: 16 tasks
/// per thread (so a late thread leaves little imbalance), none smaller than
/// `PAR_CHUNK`.
pub fn chunk_len(total: usize) -> usize {
    total.div_ceil(threads() * 16).max(crate::PAR_CHUNK)
}

/// Whether work of `size` elements should be split at all.
pub fn worth_splitting(size: usize) -> bool {
    threads() > 1 && size >= crate::PAR_THRESHOLD
}

/// Calls `f(index, chunk)` for each `chunk_len`-long chunk of `data` (the
/// last may be shorter), on the calling thread and `threads() - 1` pool
/// workers, which claim chunks one at a time (so a slow thread takes fewer).
/// The caller is one of the threads: kernels never run more threads than
/// the pool has.
pub fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk_len = chunk_len.max(1);
    let chunks = data.len().div_ceil(chunk_len);
    let helpers = threads().min(chunks).saturating_sub(1);
    if helpers == 0 {
        data.chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let slots: Vec<Mutex<Option<&mut [T]>>> = data
        .chunks_mut(chunk_len)
        .map(|c| Mutex::new(Some(c)))
        .collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = slots.get(i) else { break };
        let chunk = slot.lock().map(|mut s| s.take()).ok().flatten();
        if let Some(chunk) = chunk {
            f(i, chunk);
        }
    };
    let work = &work;
    let exited = AtomicUsize::new(0);
    let exited = &exited;
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(move |_| {
                work();
                exited.fetch_add(1, Ordering::Release);
            });
        }
        work();
        // Wait for the helpers' last chunks without parking (a parked caller
        // would pay the wake-up latency again), but yield the core while
        // waiting: on a busy machine the helper may need this very core.
        let start = Instant::now();
        while exited.load(Ordering::Acquire) < helpers && start.elapsed() < SPIN_LIMIT {
            std::thread::yield_now();
        }
    });
    linger();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visits_every_chunk_once(threads: usize) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut data = vec![0usize; 1000];
        pool.install(|| {
            for_each_chunk(&mut data, 7, |i, chunk| {
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v += i * 7 + j + 1;
                }
            })
        });
        assert!(
            data.iter().enumerate().all(|(k, &v)| v == k + 1),
            "threads {threads}"
        );
    }

    #[test]
    fn every_chunk_is_visited_exactly_once() {
        for threads in [1, 2, 4] {
            visits_every_chunk_once(threads);
        }
    }

    #[test]
    fn a_call_from_outside_the_pool_works_too() {
        let mut data = vec![1.0f32; 100_000];
        for_each_chunk(&mut data, 1000, |_, c| c.iter_mut().for_each(|v| *v *= 2.0));
        assert!(data.iter().all(|&v| v == 2.0));
    }
}
