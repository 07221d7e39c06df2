//! Transcendental functions over slices: vectorised for f32, std for f64.
//!
//! The f32 versions are Cephes-style polynomial approximations written as
//! branch-free scalar code; compiled for AVX-512, for AVX2 + FMA and
//! portably (the widest the CPU has is chosen at run time), the loops
//! vectorise. Blocks of inputs inside the ordinary range skip the
//! special-case selects. Accuracy is within a few ulp of
//! the correctly rounded result over the whole range, with the same
//! overflow, underflow and NaN behaviour as std. f64 (gradient checks) keeps
//! the std functions.

// The polynomial coefficients are kept digit for digit as Cephes publishes them.
#![allow(clippy::excessive_precision)]

use deepgen_tensor::Element;

use crate::dispatch::{as_f32, as_f32_mut};

/// An f32 function with a full version (every input) and a fast version
/// valid for inputs in `LO..=HI`, where the special cases (overflow,
/// underflow, NaN) cannot occur.
trait F32Fn {
    const LO: f32 = f32::NEG_INFINITY;
    const HI: f32 = f32::INFINITY;
    fn full<const FMA: bool>(x: f32) -> f32;
    #[inline(always)]
    fn fast<const FMA: bool>(x: f32) -> f32 {
        Self::full::<FMA>(x)
    }
}

/// Elements per block: blocks whose inputs all lie in the fast range take
/// the fast version; 32 elements also give the vector units several
/// independent streams.
const BLOCK: usize = 32;

#[inline(always)]
fn drive<K: F32Fn, const FMA: bool>(x: &[f32], out: &mut [f32]) {
    let mut xs = x.chunks_exact(BLOCK);
    let mut os = out.chunks_exact_mut(BLOCK);
    for (o, x) in (&mut os).zip(&mut xs) {
        let mut ok = true;
        for &v in x {
            // NaN fails both comparisons.
            ok &= (v >= K::LO) & (v <= K::HI);
        }
        if ok {
            for i in 0..BLOCK {
                o[i] = K::fast::<FMA>(x[i]);
            }
        } else {
            for i in 0..BLOCK {
                o[i] = K::full::<FMA>(x[i]);
            }
        }
    }
    for (o, &v) in os.into_remainder().iter_mut().zip(xs.remainder()) {
        *o = K::full::<FMA>(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn drive_avx512<K: F32Fn>(x: &[f32], out: &mut [f32]) {
    drive::<K, true>(x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn drive_avx2<K: F32Fn>(x: &[f32], out: &mut [f32]) {
    drive::<K, true>(x, out)
}

/// Applies `K` to f32 slices (widest vector code the CPU has), or `f64` otherwise.
fn apply<K: F32Fn, T: Element>(x: &[T], out: &mut [T], f64: fn(T) -> T) {
    assert_eq!(x.len(), out.len(), "math: slice lengths");
    if let (Some(x), Some(out)) = (as_f32(x), as_f32_mut(out)) {
        return apply_f32_at::<K>(simd_level(), x, out);
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f64(v);
    }
}

/// Runs `K` with the code for `level` (see [`simd_level`]), which the CPU must support.
fn apply_f32_at<K: F32Fn>(level: u8, x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if level >= 2 {
            // SAFETY: level 2 is only reported when the CPU has AVX-512F, AVX2 and FMA.
            return unsafe { drive_avx512::<K>(x, out) };
        }
        if level == 1 {
            // SAFETY: level 1 is only reported when the CPU has AVX2 and FMA.
            return unsafe { drive_avx2::<K>(x, out) };
        }
    }
    let _ = level;
    drive::<K, false>(x, out)
}

/// 0: portable, 1: AVX2 + FMA, 2: AVX-512F as well. `DEEPGEN_SIMD=avx2` or
/// `=portable` caps it (for comparing the paths).
pub(crate) fn simd_level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("DEEPGEN_SIMD").as_deref() {
            Ok("portable") => 0,
            Ok("avx2") => 1,
            _ => 2,
        };
        cap.min(detected_level())
    })
}

#[cfg(target_arch = "x86_64")]
fn detected_level() -> u8 {
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    let avx512 = avx2 && std::is_x86_feature_detected!("avx512f");
    if avx512 {
        2
    } else {
        u8::from(avx2)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected_level() -> u8 {
    0
}

/// out = e^x
pub fn exp<T: Element>(x: &[T], out: &mut [T]) {
    apply::<Exp, T>(x, out, |v| v.exp())
}

/// out = ln x (NaN below 0, -inf at 0)
pub fn log<T: Element>(x: &[T], out: &mut [T]) {
    apply::<Log, T>(x, out, |v| v.ln())
}

/// out = 1 / (1 + e^-x), stable for large |x|
pub fn sigmoid<T: Element>(x: &[T], out: &mut [T]) {
    apply::<Sigmoid, T>(x, out, sigmoid_std)
}

/// out = tanh x
pub fn tanh<T: Element>(x: &[T], out: &mut [T]) {
    apply::<Tanh, T>(x, out, |v| v.tanh())
}

/// out = ln(1 + e^x), stable for large |x|
pub fn softplus<T: Element>(x: &[T], out: &mut [T]) {
    apply::<Softplus, T>(x, out, softplus_std)
}

/// out = ln sigmoid(x) = -softplus(-x), stable for large |x|
pub fn log_sigmoid<T: Element>(x: &[T], out: &mut [T]) {
    apply::<LogSigmoid, T>(x, out, |v| -softplus_std(-v))
}

struct Exp;
impl F32Fn for Exp {
    const LO: f32 = -87.0;
    const HI: f32 = 88.0;
    #[inline(always)]
    fn full<const FMA: bool>(x: f32) -> f32 {
        exp_f32::<FMA>(x)
    }
    #[inline(always)]
    fn fast<const FMA: bool>(x: f32) -> f32 {
        exp_in_range::<FMA>(x)
    }
}

struct Log;
impl F32Fn for Log {
    #[inline(always)]
    fn full<const FMA: bool>(x: f32) -> f32 {
        log_f32::<FMA>(x)
    }
}

struct Sigmoid;
impl F32Fn for Sigmoid {
    const LO: f32 = -87.0;
    const HI: f32 = 87.0;
    #[inline(always)]
    fn full<const FMA: bool>(x: f32) -> f32 {
        sigmoid_f32::<FMA>(x)
    }
    #[inline(always)]
    fn fast<const FMA: bool>(x: f32) -> f32 {
        // e^-|x| stays normal here; pick the form without cancellation.
        let e = exp_in_range::<FMA>(-x.abs());
        let r = 1.0 / (1.0 + e);
        if x >= 0.0 {
            r
        } else {
            e * r
        }
    }
}

struct Tanh;
impl F32Fn for Tanh {
    #[inline(always)]
    fn full<const FMA: bool>(x: f32) -> f32 {
        tanh_f32::<FMA>(x)
    }
}

struct Softplus;
impl F32Fn for Softplus {
    #[inline(always)]
    fn full<const FMA: bool>(x: f32) -> f32 {
        softplus_f32::<FMA>(x)
    }
}

struct LogSigmoid;
impl F32Fn for LogSigmoid {
    #[inline(always)]
    fn full<const FMA: bool>(x: f32) -> f32 {
        log_sigmoid_f32::<FMA>(x)
    }
}

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
    // max/min return the non-NaN operand, so xc is always finite (clamp
    // would pass NaN through to the float-to-int conversion below).
    #[allow(clippy::manual_clamp)]
    let xc = x.max(EXP_LO).min(EXP_HI);
    let n = fma::<FMA>(xc, std::f32::consts::LOG2_E, 0.5).floor();
    let r = fma::<FMA>(n, -0.693_359_4, xc);
    let r = fma::<FMA>(n, 2.121_944_4e-4, r);
    let y = exp_poly::<FMA>(r);
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

/// e^x for x in [-87, 88]: no clamping, and 2^n is one normal power.
#[inline(always)]
fn exp_in_range<const FMA: bool>(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds x log2(e) to an integer n held in the low
    // mantissa bits: no round or convert instruction is needed.
    const SHIFT: f32 = 12_582_912.0;
    let t = fma::<FMA>(x, std::f32::consts::LOG2_E, SHIFT);
    let n = t - SHIFT;
    let r = fma::<FMA>(n, -0.693_359_4, x);
    let r = fma::<FMA>(n, 2.121_944_4e-4, r);
    let y = exp_poly::<FMA>(r);
    // t's low bits hold n + 2^22 (n in [-126, 127] for x in [-87, 88]);
    // moving them into the exponent field gives 2^n.
    let bits = t.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(127) << 23;
    y * f32::from_bits(bits)
}

/// e^r for |r| <= ln(2) / 2 (Cephes expf polynomial).
#[inline(always)]
fn exp_poly<const FMA: bool>(r: f32) -> f32 {
    let mut p = 1.987_569_1e-4;
    p = fma::<FMA>(p, r, 1.398_199_9e-3);
    p = fma::<FMA>(p, r, 8.333_452e-3);
    p = fma::<FMA>(p, r, 4.166_579_6e-2);
    p = fma::<FMA>(p, r, 1.666_666_5e-1);
    p = fma::<FMA>(p, r, 5.000_000_1e-1);
    fma::<FMA>(p, r * r, r) + 1.0
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
        v.extend([
            0.0, -0.0, 1e-30, -1e-30, 1e-7, 88.0, 88.72, 89.0, -87.0, -100.0, -104.0, -200.0,
        ]);
        v.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e38,
            -1e38,
            3.0e-40,
        ]);
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

    /// Checks `K` on every code path this CPU can run.
    fn check<K: F32Fn>(name: &str, reference: fn(f64) -> f64, max_ulp: f64) {
        let x = probe();
        for level in 0..=detected_level() {
            let mut out = vec![0.0; x.len()];
            apply_f32_at::<K>(level, &x, &mut out);
            for (&v, &got) in x.iter().zip(&out) {
                let want = reference(v as f64);
                // Outputs far below f32's normal range count in absolute terms.
                let abs_ok = want.abs() < 1e-37 && (got as f64 - want).abs() < 1e-37;
                let err = ulp_err(got, want);
                assert!(
                    abs_ok || err <= max_ulp,
                    "{name}({v:e}) = {got:e} at SIMD level {level}, want {want:e} ({err} ulp)"
                );
            }
        }
    }

    #[test]
    fn f32_exp_is_within_2_ulp() {
        check::<Exp>("exp", f64::exp, 2.0);
    }

    #[test]
    fn f32_log_is_within_2_ulp() {
        check::<Log>("log", f64::ln, 2.0);
    }

    #[test]
    fn f32_sigmoid_tanh_softplus_are_within_4_ulp() {
        check::<Sigmoid>("sigmoid", |v| 1.0 / (1.0 + (-v).exp()), 4.0);
        check::<Tanh>("tanh", f64::tanh, 4.0);
        check::<Softplus>("softplus", |v| v.max(0.0) + (-v.abs()).exp().ln_1p(), 4.0);
        check::<LogSigmoid>(
            "log_sigmoid",
            |v| v.min(0.0) - (-v.abs()).exp().ln_1p(),
            4.0,
        );
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
