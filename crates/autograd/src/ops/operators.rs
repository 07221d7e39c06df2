//! `std::ops` arithmetic on Vars: `&a + &b`, `&h * 0.5`, `1.0 - &p`, `-&x`.
//!
//! The convention (see the crate docs): a named op that can fail on its
//! inputs returns `Result` ([`Var::add`] on shapes that do not broadcast);
//! the operator is the same op and panics with that error's message, as
//! `ndarray`'s operators do, since `Add::Output` cannot be a `Result`. Code
//! that must handle a mismatch calls the named method. Ops that cannot fail
//! (scalar and unary ones) return a `Var` under both spellings.
//!
//! Every combination of owned and borrowed Vars is implemented, so `a + &b`
//! works where `a` is a temporary; an owned operand is only dropped (a Var
//! is a cheap handle to a graph node).

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::{Element, Result, Var};

#[track_caller]
fn or_panic<T: Element>(op: &str, result: Result<Var<T>>) -> Var<T> {
    match result {
        Ok(v) => v,
        Err(e) => panic!("`{op}` on Vars: {e} (the named method returns this as an error)"),
    }
}

/// Var (op) Var for the four combinations of owned and borrowed operands;
/// each calls the named method of the same name.
macro_rules! var_var {
    ($trait:ident, $method:ident, $sym:literal) => {
        impl<T: Element> $trait<&Var<T>> for &Var<T> {
            type Output = Var<T>;
            #[track_caller]
            fn $method(self, rhs: &Var<T>) -> Var<T> {
                or_panic($sym, Var::$method(self, rhs))
            }
        }
        impl<T: Element> $trait<Var<T>> for &Var<T> {
            type Output = Var<T>;
            #[track_caller]
            fn $method(self, rhs: Var<T>) -> Var<T> {
                or_panic($sym, Var::$method(self, &rhs))
            }
        }
        impl<T: Element> $trait<&Var<T>> for Var<T> {
            type Output = Var<T>;
            #[track_caller]
            fn $method(self, rhs: &Var<T>) -> Var<T> {
                or_panic($sym, Var::$method(&self, rhs))
            }
        }
        impl<T: Element> $trait<Var<T>> for Var<T> {
            type Output = Var<T>;
            #[track_caller]
            fn $method(self, rhs: Var<T>) -> Var<T> {
                or_panic($sym, Var::$method(&self, &rhs))
            }
        }
    };
}

var_var!(Add, add, "+");
var_var!(Sub, sub, "-");
var_var!(Mul, mul, "*");
var_var!(Div, div, "/");

/// Var (op) scalar, for the element type of the Var: `&x * 0.5`.
macro_rules! var_scalar {
    ($trait:ident, $method:ident, |$x:ident, $s:ident| $body:expr) => {
        impl<T: Element> $trait<T> for &Var<T> {
            type Output = Var<T>;
            fn $method(self, $s: T) -> Var<T> {
                let $x = self;
                $body
            }
        }
        impl<T: Element> $trait<T> for Var<T> {
            type Output = Var<T>;
            fn $method(self, $s: T) -> Var<T> {
                let $x = &self;
                $body
            }
        }
    };
}

var_scalar!(Add, add, |x, s| x.add_scalar(s));
var_scalar!(Sub, sub, |x, s| x.add_scalar(-s));
var_scalar!(Mul, mul, |x, s| x.mul_scalar(s));
// A true division (not a product with 1/s), so `x / 3.0` rounds as
// PyTorch's `x / 3` does.
var_scalar!(Div, div, |x, s| or_panic("/", x.div(&Var::scalar(s))));

/// scalar (op) Var, for f32 and f64 (a blanket `impl<T> Add<&Var<T>> for T`
/// is not allowed by the orphan rules): `1.0 - &p`.
macro_rules! scalar_var {
    ($($t:ty),*) => {$(
        impl Add<&Var<$t>> for $t {
            type Output = Var<$t>;
            fn add(self, x: &Var<$t>) -> Var<$t> {
                x.add_scalar(self)
            }
        }
        impl Add<Var<$t>> for $t {
            type Output = Var<$t>;
            fn add(self, x: Var<$t>) -> Var<$t> {
                x.add_scalar(self)
            }
        }
        impl Sub<&Var<$t>> for $t {
            type Output = Var<$t>;
            fn sub(self, x: &Var<$t>) -> Var<$t> {
                x.neg().add_scalar(self)
            }
        }
        impl Sub<Var<$t>> for $t {
            type Output = Var<$t>;
            fn sub(self, x: Var<$t>) -> Var<$t> {
                x.neg().add_scalar(self)
            }
        }
        impl Mul<&Var<$t>> for $t {
            type Output = Var<$t>;
            fn mul(self, x: &Var<$t>) -> Var<$t> {
                x.mul_scalar(self)
            }
        }
        impl Mul<Var<$t>> for $t {
            type Output = Var<$t>;
            fn mul(self, x: Var<$t>) -> Var<$t> {
                x.mul_scalar(self)
            }
        }
        impl Div<&Var<$t>> for $t {
            type Output = Var<$t>;
            fn div(self, x: &Var<$t>) -> Var<$t> {
                or_panic("/", Var::div(&Var::scalar(self), x))
            }
        }
        impl Div<Var<$t>> for $t {
            type Output = Var<$t>;
            fn div(self, x: Var<$t>) -> Var<$t> {
                or_panic("/", Var::div(&Var::scalar(self), &x))
            }
        }
    )*};
}

scalar_var!(f32, f64);

impl<T: Element> Neg for &Var<T> {
    type Output = Var<T>;
    fn neg(self) -> Var<T> {
        Var::neg(self)
    }
}

impl<T: Element> Neg for Var<T> {
    type Output = Var<T>;
    fn neg(self) -> Var<T> {
        Var::neg(&self)
    }
}

#[cfg(test)]
mod tests {
    // Not `super::*`: with `std::ops::Add` in scope, `a.add(&b)` on an owned
    // Var would name the operator, not the fallible method under test.
    use crate::{grad, Tensor, Var};

    fn v(data: &[f64], shape: &[usize]) -> Var<f64> {
        Var::parameter(Tensor::from_vec(data.to_vec(), shape).unwrap())
    }

    #[test]
    fn operators_equal_the_named_ops() {
        let a = v(&[1.0, 2.0, 3.0], &[3]);
        let b = v(&[4.0, -5.0, 0.5], &[3]);
        let pairs = [
            (&a + &b, a.add(&b).unwrap()),
            (&a - &b, a.sub(&b).unwrap()),
            (&a * &b, a.mul(&b).unwrap()),
            (&a / &b, a.div(&b).unwrap()),
            (a.clone() + b.clone(), a.add(&b).unwrap()),
            (&a * 2.0, a.mul_scalar(2.0)),
            (2.0 * &a, a.mul_scalar(2.0)),
            (&a + 1.5, a.add_scalar(1.5)),
            (1.5 + &a, a.add_scalar(1.5)),
            (&a - 1.0, a.add_scalar(-1.0)),
            (1.0 - &a, a.one_minus()),
            (-&a, a.neg()),
            (&a / 3.0, a.div(&Var::scalar(3.0)).unwrap()),
            (3.0 / &a, Var::scalar(3.0).div(&a).unwrap()),
        ];
        for (i, (got, want)) in pairs.iter().enumerate() {
            assert_eq!(got.value().to_vec(), want.value().to_vec(), "pair {i}");
        }
        // Division is true division: 1/3 is not 1 * (1/3) rounded twice.
        assert_eq!((&a / 3.0).value().to_vec()[0], 1.0 / 3.0);
    }

    #[test]
    fn operators_record_gradients() {
        let x = v(&[2.0, -1.0], &[2]);
        // y = sum(3x^2 - x/2 + 1): dy/dx = 6x - 1/2.
        let y = (3.0 * &x * &x - &x / 2.0 + 1.0).sum_all().unwrap();
        let g = grad(&[y], std::slice::from_ref(&x), false).unwrap();
        assert_eq!(g[0].value().to_vec(), vec![11.5, -6.5]);
    }

    #[test]
    fn operators_broadcast_like_the_named_ops() {
        let m = v(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let row = v(&[10.0, 20.0, 30.0], &[3]);
        assert_eq!(
            (&m + &row).value().to_vec(),
            vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
        );
    }

    #[test]
    #[should_panic(expected = "`+` on Vars")]
    fn a_shape_mismatch_panics_with_the_error_message() {
        let _ = &v(&[1.0, 2.0], &[2]) + &v(&[1.0, 2.0, 3.0], &[3]);
    }

    #[test]
    fn f32_vars_take_f32_scalars() {
        let x = Var::constant(Tensor::<f32>::from_vec(vec![1.0, 4.0], &[2]).unwrap());
        assert_eq!((0.5f32 * &x - 1.0).value().to_vec(), vec![-0.5, 1.0]);
    }
}
