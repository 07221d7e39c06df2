//! Views of generic slices as f32, for the kernels that have f32-only fast code.

use deepgen_tensor::{DType, Element};

pub(crate) fn as_f32<T: Element>(x: &[T]) -> Option<&[f32]> {
    // SAFETY: Element is sealed to f32 and f64; DTYPE F32 means T is f32.
    (T::DTYPE == DType::F32)
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) })
}

pub(crate) fn as_f32_mut<T: Element>(x: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as above; the borrow is carried over unchanged.
    (T::DTYPE == DType::F32)
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) })
}
