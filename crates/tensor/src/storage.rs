//! Tensor buffers and the pool that recycles them.
//!
//! A training step allocates the same buffer sizes step after step. Large
//! fresh allocations come from the OS as untouched pages and fault on first
//! write, and freeing them returns the pages; a Rust peer lost ~40% of its time
//! that way. A dropped [`Buffer`] of at least [`POOL_MIN_LEN`] elements goes
//! back to a per-type pool keyed by exact length, and the next request for that
//! length takes it back, already mapped. The pool holds at most
//! [`pool_limit_bytes`] per element type; beyond that, buffers are freed.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::Element;

/// Buffers shorter than this go straight back to the allocator, whose own
/// caches serve small sizes well.
pub const POOL_MIN_LEN: usize = 4096;

static POOL_LIMIT: AtomicUsize = AtomicUsize::new(1 << 30);

/// The most bytes each element type's pool keeps (default 1 GiB).
pub fn pool_limit_bytes() -> usize {
    POOL_LIMIT.load(Ordering::Relaxed)
}

/// Sets the most bytes each element type's pool keeps; 0 turns pooling off.
pub fn set_pool_limit_bytes(bytes: usize) {
    POOL_LIMIT.store(bytes, Ordering::Relaxed);
}

#[doc(hidden)]
pub struct Pool<T> {
    inner: Mutex<Option<PoolInner<T>>>,
}

struct PoolInner<T> {
    free: HashMap<usize, Vec<Vec<T>>>,
    bytes: usize,
}

impl<T: Element> Pool<T> {
    pub const fn new() -> Self {
        Pool {
            inner: Mutex::new(None),
        }
    }

    fn take(&self, len: usize) -> Option<Vec<T>> {
        if len < POOL_MIN_LEN {
            return None;
        }
        let mut guard = self.inner.lock().ok()?;
        let inner = guard.as_mut()?;
        let v = inner.free.get_mut(&len)?.pop()?;
        inner.bytes -= len * size_of::<T>();
        Some(v)
    }

    /// Keeps `v` for reuse; false when it is not kept (and will be freed).
    fn give(&self, v: Vec<T>) -> bool {
        let bytes = v.len() * size_of::<T>();
        if v.len() < POOL_MIN_LEN || v.len() != v.capacity() {
            return false;
        }
        let Ok(mut guard) = self.inner.lock() else {
            return false;
        };
        let inner = guard.get_or_insert_with(|| PoolInner {
            free: HashMap::new(),
            bytes: 0,
        });
        if inner.bytes + bytes <= pool_limit_bytes() {
            inner.bytes += bytes;
            inner.free.entry(v.len()).or_default().push(v);
            return true;
        }
        false
    }

    /// Frees every buffer held for reuse.
    fn release(&self) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        if let Some(inner) = guard.take() {
            crate::budget::free_live(inner.bytes, 1);
        }
    }

    /// Bytes held for reuse right now.
    pub fn held_bytes(&self) -> usize {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|i| i.bytes))
            .unwrap_or(0)
    }
}

impl<T: Element> Default for Pool<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes the pool of `T` holds for reuse right now.
pub fn pooled_bytes<T: Element>() -> usize {
    T::pool().held_bytes()
}

/// Counts a fresh buffer of `len` elements against the memory budget
/// (unwinding when it does not fit); buffers pooled for reuse give way
/// first.
fn count_live<T: Element>(len: usize) {
    if !crate::budget::live_fits(len, size_of::<T>()) {
        <f32 as Element>::pool().release();
        <f64 as Element>::pool().release();
    }
    crate::budget::take_live(len, size_of::<T>());
}

/// The owned elements behind one or more tensors.
#[derive(Debug)]
pub struct Buffer<T: Element> {
    data: Vec<T>,
}

impl<T: Element> Buffer<T> {
    /// A buffer of `len` elements whose values are unspecified (but valid
    /// numbers): for outputs a kernel overwrites completely.
    pub fn for_overwrite(len: usize) -> Self {
        match T::pool().take(len) {
            Some(data) => Buffer { data },
            None => {
                count_live::<T>(len);
                Buffer {
                    data: vec![T::zero(); len],
                }
            }
        }
    }

    /// A buffer of `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> Self {
        let mut b = Self::for_overwrite(len);
        b.data.fill(value);
        b
    }

    /// Wraps an existing vector without copying.
    pub fn from_vec(data: Vec<T>) -> Self {
        count_live::<T>(data.len());
        Buffer { data }
    }

    /// A copy of a slice.
    pub fn copy_of(src: &[T]) -> Self {
        let mut b = Self::for_overwrite(src.len());
        b.data.copy_from_slice(src);
        b
    }

    /// Gives the vector out (it then no longer returns to the pool).
    pub fn into_vec(mut self) -> Vec<T> {
        let v = std::mem::take(&mut self.data);
        crate::budget::free_live(v.len(), size_of::<T>());
        v
    }
}

impl<T: Element> Clone for Buffer<T> {
    fn clone(&self) -> Self {
        Self::copy_of(&self.data)
    }
}

impl<T: Element> Deref for Buffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.data
    }
}

impl<T: Element> DerefMut for Buffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
}

impl<T: Element> Drop for Buffer<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.data);
        let len = v.len();
        // A buffer the pool keeps stays counted as live.
        if len > 0 && !T::pool().give(v) {
            crate::budget::free_live(len, size_of::<T>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_reused_for_the_same_length() {
        // A length no other test uses, so parallel tests do not interfere.
        let len = POOL_MIN_LEN + 12345;
        let b = Buffer::<f64>::filled(len, 7.0);
        let ptr = b.as_ptr();
        drop(b);
        let again = Buffer::<f64>::for_overwrite(len);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(again.len(), len);
    }
}
