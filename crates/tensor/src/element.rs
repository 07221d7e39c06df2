use std::fmt::{Debug, Display};
use std::iter::Sum;

use num_traits::{Float, FromPrimitive};

use crate::storage::Pool;

static POOL_F32: Pool<f32> = Pool::new();
static POOL_F64: Pool<f64> = Pool::new();

/// The element types a tensor can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element: `f32` for training, `f64` for gradient checks.
///
/// The trait is sealed: kernels rely on `DTYPE` to dispatch to the f32 or f64
/// code of matrixmultiply and of the vectorised math.
pub trait Element:
    Float + FromPrimitive + Default + Debug + Display + Sum + Send + Sync + 'static + sealed::Sealed
{
    const DTYPE: DType;

    /// Converts from f64, rounding to the nearest value of this type.
    fn of(v: f64) -> Self;

    /// Widens (or keeps) the value as f64.
    fn as_f64(self) -> f64;

    #[doc(hidden)]
    fn pool() -> &'static Pool<Self>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn of(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn pool() -> &'static Pool<Self> {
        &POOL_F32
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn of(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn pool() -> &'static Pool<Self> {
        &POOL_F64
    }
}
