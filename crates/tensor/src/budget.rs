//! The memory budget: sizes that come from outside (flags, file headers,
//! checkpoint metadata) are checked against it before memory is taken.
//!
//! Two layers of protection:
//!
//! - **Checks with a message.** [`check`] and [`reserve`] return
//!   [`Error::OverBudget`] naming the size and the budget. Layer
//!   constructors [`reserve`] their parameters, so a model too large for
//!   the budget (or for the values a checkpoint holds, under [`within`])
//!   fails before its first weight is allocated.
//! - **A safety net.** The bytes of all tensor buffers alive are counted;
//!   a fresh buffer that would take them over the budget (activations of a
//!   model built with absurd sizes, say) unwinds with an [`OverBudget`] payload instead of aborting the
//!   process in the allocator. Programs that want a message catch it with
//!   [`catch`] (the CLI does).
//!
//! The budget defaults to the machine's physical memory (`MemTotal` of
//! `/proc/meminfo`; 16 GiB where that cannot be read) and is set with
//! [`set_limit`] (the CLI's `--memory-budget`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

const GIB: u64 = 1 << 30;
/// The budget where the physical memory cannot be read.
const FALLBACK: u64 = 16 * GIB;

/// 0 means "not set yet": the default is read on first use.
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// The budget in bytes.
pub fn limit() -> u64 {
    match LIMIT.load(Ordering::Relaxed) {
        0 => {
            let bytes = physical_memory().unwrap_or(FALLBACK);
            LIMIT.store(bytes, Ordering::Relaxed);
            bytes
        }
        b => b,
    }
}

/// Sets the budget in bytes (at least one).
pub fn set_limit(bytes: u64) {
    LIMIT.store(bytes.max(1), Ordering::Relaxed);
}

fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A byte count as people read it: "512 B", "3.2 MiB", "12.5 TiB".
pub fn human(bytes: u128) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{bytes} B"),
        _ => format!("{v:.1} {}", units[u]),
    }
}

/// Bytes of `count` items of `item_bytes` each, without overflow (u128
/// holds any product of a usize and a small size).
pub fn bytes(count: usize, item_bytes: usize) -> u128 {
    count as u128 * item_bytes as u128
}

/// The number of elements of `shape`, or None when it overflows usize.
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Bytes of a tensor of `shape` with `elem_bytes` per element.
pub fn shape_bytes(shape: &[usize], elem_bytes: usize) -> u128 {
    shape
        .iter()
        .fold(elem_bytes as u128, |a, &d| a.saturating_mul(d as u128))
}

/// Ok when `bytes` fit in the budget; otherwise an error naming `what`,
/// its size and the budget.
pub fn check(what: &str, bytes: u128) -> Result<()> {
    let limit = limit();
    if bytes <= limit as u128 {
        return Ok(());
    }
    Err(Error::OverBudget {
        msg: format!(
            "{what} needs {}, more than the memory budget of {}",
            human(bytes),
            human(limit as u128)
        ),
    })
}

/// An allowance of bytes for what is built inside [`within`].
struct Allowance {
    left: u128,
    context: String,
}

thread_local! {
    static ALLOWANCE: RefCell<Vec<Allowance>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with at most `bytes` for the tensors it [`reserve`]s (on this
/// thread); `context` starts the message when they do not fit, e.g.
/// "model.safetensors: its metadata describes a model larger than the
/// 652,824 values the file holds". Allowances nest.
pub fn within<R>(bytes: u128, context: impl Into<String>, f: impl FnOnce() -> R) -> R {
    ALLOWANCE.with(|a| {
        a.borrow_mut().push(Allowance {
            left: bytes,
            context: context.into(),
        })
    });
    // Popped by a guard, so an unwinding `f` leaves no allowance behind.
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            ALLOWANCE.with(|a| a.borrow_mut().pop());
        }
    }
    let _pop = Pop;
    f()
}

/// Takes a tensor of `shape` (`elem_bytes` each) from the budget and from
/// every allowance in force; a layer calls this before allocating a
/// parameter, so sizes from flags or metadata fail here with a message.
pub fn reserve(what: &str, shape: &[usize], elem_bytes: usize) -> Result<()> {
    let need = shape_bytes(shape, elem_bytes);
    check(&format!("{what} of shape {shape:?}"), need)?;
    ALLOWANCE.with(|a| {
        let mut stack = a.borrow_mut();
        if let Some(short) = stack.iter().find(|al| al.left < need) {
            return Err(Error::OverBudget {
                msg: format!(
                    "{} ({what} of shape {shape:?} needs {}; {} left)",
                    short.context,
                    human(need),
                    human(short.left)
                ),
            });
        }
        for al in stack.iter_mut() {
            al.left -= need;
        }
        Ok(())
    })
}

/// The payload a fresh buffer over the budget unwinds with.
#[derive(Debug, Clone)]
pub struct OverBudget(pub String);

/// Bytes of tensor buffers alive (pooled ones included).
static LIVE: AtomicU64 = AtomicU64::new(0);

/// Bytes held by tensor buffers right now (those the pool keeps included).
pub fn live_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

/// Whether a fresh buffer of `len` elements of `elem_bytes` would keep the
/// buffers alive within the budget.
pub(crate) fn live_fits(len: usize, elem_bytes: usize) -> bool {
    live_bytes() as u128 + bytes(len, elem_bytes) <= limit() as u128
}

/// Counts a fresh buffer of `len` elements of `elem_bytes` as live, or
/// unwinds with [`OverBudget`] when the buffers alive would then take more
/// than the budget (the safety net under every fresh tensor buffer).
pub(crate) fn take_live(len: usize, elem_bytes: usize) {
    let need = bytes(len, elem_bytes);
    let limit = limit() as u128;
    let before = LIVE.fetch_add(need.min(u64::MAX as u128) as u64, Ordering::Relaxed);
    if before as u128 + need > limit {
        LIVE.fetch_sub(need.min(u64::MAX as u128) as u64, Ordering::Relaxed);
        std::panic::panic_any(OverBudget(format!(
            "a tensor of {} would take the tensors in memory to {}, more than the memory budget of {}",
            human(need),
            human(before as u128 + need),
            human(limit)
        )));
    }
}

/// Counts a freed buffer out.
pub(crate) fn free_live(len: usize, elem_bytes: usize) {
    LIVE.fetch_sub((len * elem_bytes) as u64, Ordering::Relaxed);
}

/// The element count of `shape` for a fresh buffer; a product that
/// overflows unwinds with [`OverBudget`] like any other oversized buffer.
pub(crate) fn alloc_numel(shape: &[usize]) -> usize {
    numel(shape).unwrap_or_else(|| {
        std::panic::panic_any(OverBudget(format!(
            "a tensor of shape {shape:?} has more elements than memory can address"
        )))
    })
}

/// Runs `f`, turning an [`OverBudget`] unwind into [`Error::OverBudget`];
/// other panics go on unwinding. Install [`quiet_hook`] first so the
/// default hook does not print the caught panic.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(payload) => match payload.downcast::<OverBudget>() {
            Ok(over) => Err(Error::OverBudget { msg: over.0 }),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// A panic hook that stays silent for [`OverBudget`] unwinds (they become
/// errors through [`catch`]) and hands every other panic to the hook that
/// was installed before.
pub fn quiet_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<OverBudget>().is_none() {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_without_overflow() {
        assert_eq!(numel(&[usize::MAX, 2]), None);
        assert_eq!(numel(&[3, 4]), Some(12));
        assert_eq!(shape_bytes(&[usize::MAX, usize::MAX, 4], 4), u128::MAX);
        let e = check("a thing", u128::MAX).unwrap_err().to_string();
        assert!(
            e.contains("a thing needs") && e.contains("memory budget"),
            "{e}"
        );
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }

    #[test]
    fn an_allowance_bounds_what_is_reserved_inside_it() {
        let r = within(100, "the file holds 25 values", || {
            reserve("a weight", &[4, 5], 4)?; // 80 bytes
            reserve("a bias", &[5], 4) // 20 more: exactly 100
        });
        assert!(r.is_ok());
        let e = within(100, "the file holds 25 values", || {
            reserve("a weight", &[4, 5], 4)?;
            reserve("a bias", &[6], 4)
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("the file holds 25 values (a bias of shape [6]"),
            "{e}"
        );
        // Outside, no allowance is left behind.
        reserve("a weight", &[1000], 4).unwrap();
    }

    #[test]
    fn an_oversized_buffer_unwinds_into_an_error() {
        quiet_hook();
        let e = catch(|| crate::Tensor::<f32>::zeros(&[1 << 30, 1 << 10]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory budget"), "{e}");
        let e = catch(|| crate::Tensor::<f32>::zeros(&[usize::MAX, 3]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more elements than memory can address"), "{e}");
    }
}
