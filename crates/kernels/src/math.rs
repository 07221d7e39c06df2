//! Transcendental functions over slices: vectorised for f32, std for f64.
//!
//! The f32 versions are Cephes-style polynomial approximations written as
//! branch-free scalar code; compiled once for AVX2 + FMA (chosen at run time)
//! and once portably, the loops vectorise. Accuracy is within a few ulp of
//! the correctly rounded result over the whole range, with the same
//! overflow, underflow and NaN behaviour as std. f64 (gradient checks) keeps
//! the std functions.

use deepgen_tensor::Element;

use crate::dispatch::{as_f32, as_f32_mut};

macro_rules! slice_fn {
    ($(#[$doc:meta])* $name:ident, $scalar:ident, $f64:expr) => {
        $(#[$doc])*
        pub fn $name<T: Element>(x: &[T], out: &mut [T]) {
            assert_eq!(x.len(), out.len(), concat!(stringify!($name), ": slice lengths"));
            if let (Some(x), Some(out)) = (as_f32(x), as_f32_mut(out)) {
                #[cfg(target_arch = "x86_64")]
                if has_avx2_fma() {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn wide(x: &[f32], out: &mut [f32]) {
                        for (o, &v) in out.iter_mut().zip(x) {
                            *o = $scalar::<true>(v);
                        }
                    }
                    // SAFETY: the CPU reports AVX2 and FMA.
                    unsafe { wide(x, out) };
                    return;
                }
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = $scalar::<false>(v);
                }
                return;
            }
            let f: fn(T) -> T = $f64;
            for (o, &v) in out.iter_mut().zip(x) {
                *o = f(v);
            }
        }
    };
}

slice_fn!(
    /// out = e^x
    exp, exp_f32, |v| v.exp()
);
slice_fn!(
    /// out = ln x (NaN below 0, -inf at 0)
    log, log_f32, |v| v.ln()
);
slice_fn!(
    /// out = 1 / (1 + e^-x), stable for large |x|
    sigmoid, sigmoid_f32, sigmoid_std
);
slice_fn!(
    /// out = tanh x
    tanh, tanh_f32, |v| v.tanh()
);
slice_fn!(
    /// out = ln(1 + e^x), stable for large |x|
    softplus, softplus_f32, softplus_std
);
slice_fn!(
    /// out = ln sigmoid(x) = -softplus(-x), stable for large |x|
    log_sigmoid, log_sigmoid_f32, |v| -softplus_std(-v)
);

fn sigmoid_std<T: Element>(v: T) -> T {
    if v >= T::zero() {
        T::one() / (T::one() + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::one() + e)
    }
}

fn softplus_std<T: Element>(v: T) -> T {
    v.max(T::zero()) + (-v.abs()).exp().ln_1p()
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    // The macro caches the CPUID answer; this costs a load and a test.
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[inline(always)]
fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// 2^n for integer-valued n in [-150, 128], as the product of two normal powers.
#[inline(always)]
fn pow2(n: f32) -> (f32, f32) {
    // SAFETY: callers clamp n to [-150, 128], finite, so it fits an i32.
    let ni: i32 = unsafe { n.to_int_unchecked() };
    let n1 = ni >> 1;
    let n2 = ni - n1;
    (
        f32::from_bits(((n1 + 127) as u32) << 23),
        f32::from_bits(((n2 + 127) as u32) << 23),
    )
}

const EXP_HI: f32 = 88.722_84;
const EXP_LO: f32 = -103.972_08;

#[inline(always)]
fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    // max/min return the non-NaN operand, so xc is always finite.
    let xc = x.max(EXP_LO).min(EXP_HI);
    let n = fma::<FMA>(xc, std::f32::consts::LOG2_E, 0.5).floor();
    let r = fma::<FMA>(n, -0.693_359_4, xc);
    let r = fma::<FMA>(n, 2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4;
    p = fma::<FMA>(p, r, 1.398_199_9e-3);
    p = fma::<FMA>(p, r, 8.333_452e-3);
    p = fma::<FMA>(p, r, 4.166_579_6e-2);
    p = fma::<FMA>(p, r, 1.666_666_5e-1);
    p = fma::<FMA>(p, r, 5.000_000_1e-1);
    let y = fma::<FMA>(p, r * r, r) + 1.0;
    let (s1, s2) = pow2(n);
    let res = y * s1 * s2;
    let res = if x > EXP_HI { f32::INFINITY } else { res };
    let res = if x < EXP_LO { 0.0 } else { res };
    if x.is_nan() {
        x
    } else {
        res
    }
}

#[inline(always)]
fn log_f32<const FMA: bool>(x: f32) -> f32 {
    // Scale subnormals into the normal range first.
    let tiny = x < f32::MIN_POSITIVE;
    let xs = if tiny { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    if tiny {
        e -= 23;
    }
    // Mantissa in [0.5, 1).
    let m = f32::from_bits((bits & 0x807f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = (if small { e - 1 } else { e }) as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut p = 7.037_683_6e-2;
    p = fma::<FMA>(p, m, -1.151_461e-1);
    p = fma::<FMA>(p, m, 1.167_699_9e-1);
    p = fma::<FMA>(p, m, -1.242_014_1e-1);
    p = fma::<FMA>(p, m, 1.424_932_3e-1);
    p = fma::<FMA>(p, m, -1.666_805_8e-1);
    p = fma::<FMA>(p, m, 2.000_071_4e-1);
    p = fma::<FMA>(p, m, -2.499_999_4e-1);
    p = fma::<FMA>(p, m, 3.333_333_1e-1);
    let mut y = p * m * z;
    y = fma::<FMA>(e, -2.121_944_4e-4, y);
    y = fma::<FMA>(z, -0.5, y);
    let res = fma::<FMA>(e, 0.693_359_4, m + y);
    let res = if x == f32::INFINITY { x } else { res };
    let res = if x == 0.0 { f32::NEG_INFINITY } else { res };
    if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        res
    }
}

/// ln(1 + t) for t in [0, 1], accurate for tiny t.
#[inline(always)]
fn log1p_small<const FMA: bool>(t: f32) -> f32 {
    let u = 1.0 + t;
    // ln(u) * t / (u - 1) cancels the rounding of 1 + t.
    let d = u - 1.0;
    if d == 0.0 {
        t
    } else {
        log_f32::<FMA>(u) * (t / d)
    }
}

#[inline(always)]
fn softplus_f32<const FMA: bool>(x: f32) -> f32 {
    x.max(0.0) + log1p_small::<FMA>(exp_f32::<FMA>(-x.abs()))
}

#[inline(always)]
fn log_sigmoid_f32<const FMA: bool>(x: f32) -> f32 {
    x.min(0.0) - log1p_small::<FMA>(exp_f32::<FMA>(-x.abs()))
}

#[inline(always)]
fn sigmoid_f32<const FMA: bool>(x: f32) -> f32 {
    // e^-|x| never overflows; pick the algebraic form that avoids cancellation.
    let e = exp_f32::<FMA>(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

#[inline(always)]
fn tanh_f32<const FMA: bool>(x: f32) -> f32 {
    let a = x.abs();
    // Small |x|: odd polynomial (Cephes tanhf), exact to ~1 ulp.
    let z = x * x;
    let mut p = -5.704_988_7e-3;
    p = fma::<FMA>(p, z, 2.063_908_9e-2);
    p = fma::<FMA>(p, z, -5.373_971_6e-2);
    p = fma::<FMA>(p, z, 1.333_144_2e-1);
    p = fma::<FMA>(p, z, -3.333_328_2e-1);
    let small = fma::<FMA>(p * z, x, x);
    // Large |x|: 1 - 2 / (e^2|x| + 1), with the sign of x.
    let big = 1.0 - 2.0 / (exp_f32::<FMA>(2.0 * a) + 1.0);
    let big = if x < 0.0 { -big } else { big };
    if a < 0.625 {
        small
    } else {
        big
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Vec<f32> {
        let mut v: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.06).collect();
        v.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, 88.0, 88.72, 89.0, -87.0, -100.0, -104.0, -200.0]);
        v.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e38, -1e38, 3.0e-40]);
        v
    }

    fn ulp_err(got: f32, want: f64) -> f64 {
        if want.is_nan() {
            return if got.is_nan() { 0.0 } else { f64::INFINITY };
        }
        let want32 = want as f32;
        if got == want32 {
            return 0.0;
        }
        if want32.is_infinite() || got.is_infinite() {
            return f64::INFINITY;
        }
        let ulp = (f32::from_bits(want32.abs().to_bits() + 1) - want32.abs()) as f64;
        (got as f64 - want).abs() / ulp.max(f32::MIN_POSITIVE as f64 * f32::EPSILON as f64)
    }

    fn check(name: &str, f: fn(&[f32], &mut [f32]), reference: fn(f64) -> f64, max_ulp: f64) {
        let x = probe();
        let mut out = vec![0.0; x.len()];
        f(&x, &mut out);
        for (&v, &got) in x.iter().zip(&out) {
            let want = reference(v as f64);
            // Outputs far below f32's normal range count in absolute terms.
            let abs_ok = want.abs() < 1e-37 && (got as f64 - want).abs() < 1e-37;
            let err = ulp_err(got, want);
            assert!(abs_ok || err <= max_ulp, "{name}({v:e}) = {got:e}, want {want:e} ({err} ulp)");
        }
    }

    #[test]
    fn f32_exp_is_within_2_ulp() {
        check("exp", exp::<f32>, f64::exp, 2.0);
    }

    #[test]
    fn f32_log_is_within_2_ulp() {
        check("log", log::<f32>, f64::ln, 2.0);
    }

    #[test]
    fn f32_sigmoid_tanh_softplus_are_within_4_ulp() {
        check("sigmoid", sigmoid::<f32>, |v| 1.0 / (1.0 + (-v).exp()), 4.0);
        check("tanh", tanh::<f32>, f64::tanh, 4.0);
        check("softplus", softplus::<f32>, |v| v.max(0.0) + (-v.abs()).exp().ln_1p(), 4.0);
        check("log_sigmoid", log_sigmoid::<f32>, |v| v.min(0.0) - (-v.abs()).exp().ln_1p(), 4.0);
    }

    #[test]
    fn f64_path_is_stable_for_large_inputs() {
        let x = [-800.0f64, 800.0];
        let mut out = [0.0; 2];
        sigmoid(&x, &mut out);
        assert_eq!(out, [0.0, 1.0]);
        softplus(&x, &mut out);
        assert_eq!(out, [0.0, 800.0]);
        log_sigmoid(&x, &mut out);
        assert_eq!(out, [-800.0, 0.0]);
    }
}
