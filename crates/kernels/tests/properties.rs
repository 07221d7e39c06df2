//! Kernels checked with proptest against naive loops written from the
//! definitions: broadcasting binary ops, matmul, conv2d and its adjoints,
//! conv_transpose2d, pooling and reductions. Operands are often strided views
//! (permuted and narrowed out of bigger buffers), and a few cases are big
//! enough to take the parallel paths.

use deepgen_kernels::{self as k, Conv2dOptions, Element, Pool2dOptions, Tensor, PAR_THRESHOLD};
use proptest::array::uniform2;
use proptest::collection::vec;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------
// Naive index arithmetic and tolerances.

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &n) in index.iter_mut().zip(shape).rev() {
        *i = flat % n;
        flat /= n;
    }
    index
}

fn ravel(index: &[usize], shape: &[usize]) -> usize {
    index.iter().zip(shape).fold(0, |acc, (&i, &n)| acc * n + i)
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// NumPy's rule: pad with leading 1s; equal sizes or a 1 pair up.
fn numpy_broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let dim = |s: &[usize]| (i + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
            let (x, y) = (dim(a), dim(b));
            assert!(
                x == y || x == 1 || y == 1,
                "test bug: {a:?} and {b:?} do not broadcast"
            );
            x.max(y)
        })
        .collect()
}

/// The index into a tensor of shape `src` that broadcasting reads for `out_index`.
fn broadcast_source(out_index: &[usize], src: &[usize]) -> Vec<usize> {
    let lead = out_index.len() - src.len();
    src.iter()
        .enumerate()
        .map(|(i, &n)| if n == 1 { 0 } else { out_index[lead + i] })
        .collect()
}

/// Checks `got` against `want` elementwise: |got - want| <= rel * scale, where
/// `scale` is the sum of the magnitudes of the terms that made `want`.
fn assert_close(got: &[f64], want: &[f64], scale: &[f64], rel: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let tol = rel * s.max(f64::MIN_POSITIVE);
        prop_assert!(
            (g - w).abs() <= tol,
            "element {}: got {}, want {} (tolerance {})",
            i,
            g,
            w,
            tol
        );
    }
    Ok(())
}

fn as_f64<T: Element>(t: &Tensor<T>) -> Vec<f64> {
    t.to_vec().into_iter().map(Element::as_f64).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// Checks that `result` is an error whose message starts with `op:`.
fn assert_err_names<T: std::fmt::Debug>(
    result: k::Result<T>,
    op: &str,
) -> Result<(), TestCaseError> {
    match result {
        Ok(v) => Err(TestCaseError::fail(format!(
            "{op}: expected an error, got {v:?}"
        ))),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.starts_with(&format!("{op}: ")),
                "error {msg:?} does not name {op}"
            );
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Operands: strided views with known contents.

/// How to lay out a tensor of `shape` as a view of a bigger buffer: the
/// buffer's axis `perm[i]` holds the view's axis `i`, with `before[i]` and
/// `after[i]` extra elements around it that `narrow` cuts away.
#[derive(Debug, Clone)]
struct ViewSpec {
    shape: Vec<usize>,
    perm: Vec<usize>,
    before: Vec<usize>,
    after: Vec<usize>,
}

impl ViewSpec {
    fn contiguous(shape: &[usize]) -> Self {
        let r = shape.len();
        ViewSpec {
            shape: shape.to_vec(),
            perm: (0..r).collect(),
            before: vec![0; r],
            after: vec![0; r],
        }
    }

    /// The view, its buffer filled by `value`, and its elements in row-major
    /// order (as f64), found by index arithmetic alone.
    fn build<T: Element>(&self, value: &mut impl FnMut() -> f64) -> (Tensor<T>, Vec<f64>) {
        let r = self.shape.len();
        let mut base_shape = vec![0; r];
        for (i, &p) in self.perm.iter().enumerate() {
            base_shape[p] = self.before[i] + self.shape[i] + self.after[i];
        }
        let base: Vec<T> = (0..numel(&base_shape)).map(|_| T::of(value())).collect();
        let mut t = Tensor::from_vec(base.clone(), &base_shape)
            .unwrap()
            .permute(&self.perm)
            .unwrap();
        for i in 0..r {
            t = t.narrow(i, self.before[i], self.shape[i]).unwrap();
        }
        let want = (0..numel(&self.shape))
            .map(|flat| {
                let index = unravel(flat, &self.shape);
                let mut base_index = vec![0; r];
                for (i, &p) in self.perm.iter().enumerate() {
                    base_index[p] = index[i] + self.before[i];
                }
                base[ravel(&base_index, &base_shape)].as_f64()
            })
            .collect();
        (t, want)
    }
}

/// A view of `shape`: a quarter plain contiguous tensors, the rest permuted
/// and narrowed out of a bigger buffer.
fn view_of(shape: Vec<usize>) -> impl Strategy<Value = ViewSpec> {
    let r = shape.len();
    (
        Just(shape),
        Just((0..r).collect::<Vec<_>>()).prop_shuffle(),
        vec(0usize..=2, r),
        vec(0usize..=2, r),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(shape, perm, before, after, plain)| {
            if plain {
                ViewSpec::contiguous(&shape)
            } else {
                ViewSpec {
                    shape,
                    perm,
                    before,
                    after,
                }
            }
        })
}

/// Two shapes that broadcast: an output shape of rank up to `max_rank`, each
/// operand with leading axes dropped and some sizes replaced by 1.
fn broadcastable_pair(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    vec(1..=max_dim, 0..=max_rank)
        .prop_flat_map(|out| {
            let r = out.len();
            (
                Just(out),
                0..=r,
                0..=r,
                vec(any::<bool>(), r),
                vec(any::<bool>(), r),
            )
        })
        .prop_map(|(out, da, db, ones_a, ones_b)| {
            let cut = |drop: usize, ones: &[bool]| -> Vec<usize> {
                (drop..out.len())
                    .map(|i| if ones[i] { 1 } else { out[i] })
                    .collect()
            };
            (cut(da, &ones_a), cut(db, &ones_b))
        })
}

fn uniform(rng: &mut ChaCha8Rng) -> impl FnMut() -> f64 + '_ {
    move || rng.random_range(-2.0..2.0)
}

/// Small integers, so that ties happen.
fn small_ints(rng: &mut ChaCha8Rng) -> impl FnMut() -> f64 + '_ {
    move || rng.random_range(0..4) as f64
}

// ---------------------------------------------------------------------------
// Binary ops.

type BinaryKernel = fn(&Tensor<f64>, &Tensor<f64>) -> k::Result<Tensor<f64>>;
type BinaryCase = (&'static str, BinaryKernel, fn(f64, f64) -> f64);

const BINARY: [BinaryCase; 6] = [
    ("add", k::add, |x, y| x + y),
    ("sub", k::sub, |x, y| x - y),
    ("mul", k::mul, |x, y| x * y),
    ("div", k::div, |x, y| x / y),
    ("maximum", k::maximum, f64::max),
    ("minimum", k::minimum, f64::min),
];

/// Runs every binary op on `a` and `b` and compares with the naive loop.
fn check_binary(
    a: &ViewSpec,
    b: &ViewSpec,
    seed: u64,
    contiguous_too: bool,
) -> Result<(), TestCaseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (ta, wa) = a.build::<f64>(&mut uniform(&mut rng));
    let (tb, wb) = b.build::<f64>(&mut uniform(&mut rng));
    let shape = numpy_broadcast(&a.shape, &b.shape);
    let want_for = |f: fn(f64, f64) -> f64| -> Vec<f64> {
        (0..numel(&shape))
            .map(|flat| {
                let index = unravel(flat, &shape);
                let x = wa[ravel(&broadcast_source(&index, &a.shape), &a.shape)];
                let y = wb[ravel(&broadcast_source(&index, &b.shape), &b.shape)];
                f(x, y)
            })
            .collect()
    };
    let mut operands = vec![(ta.clone(), tb.clone())];
    if contiguous_too {
        operands.push((ta.contiguous(), tb.contiguous()));
    }
    for (name, kernel, f) in BINARY {
        let want = want_for(f);
        for (x, y) in &operands {
            let got = kernel(x, y).unwrap();
            prop_assert_eq!(got.shape(), &shape[..], "{}", name);
            // The kernel applies the same f64 operation: results agree exactly.
            prop_assert!(got.to_vec() == want, "{} of {:?} and {:?}", name, a, b);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn binary_ops_of_strided_views_broadcast_like_a_naive_loop(
        (a, b) in broadcastable_pair(4, 4).prop_flat_map(|(a, b)| (view_of(a), view_of(b))),
        seed in any::<u64>(),
    ) {
        check_binary(&a, &b, seed, false)?;
    }

    #[test]
    fn binary_ops_of_incompatible_shapes_are_errors_naming_the_op(
        (a, b) in (vec(1usize..=4, 0..=3), vec(1usize..=4, 0..=3)).prop_filter("incompatible", |(a, b)| {
            a.iter().rev().zip(b.iter().rev()).any(|(&x, &y)| x != y && x != 1 && y != 1)
        }),
    ) {
        let (ta, tb) = (Tensor::<f64>::zeros(&a), Tensor::<f64>::zeros(&b));
        for (name, kernel, _) in BINARY {
            assert_err_names(kernel(&ta, &tb), name)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn binary_ops_above_the_parallel_threshold_match_the_naive_loop(
        (a, b) in (200usize..=300, 170usize..=260, 0usize..4).prop_flat_map(|(r, c, variant)| {
            let (a, b) = match variant {
                0 => (vec![r, c], vec![r, c]),
                1 => (vec![r, c], vec![r, 1]),
                2 => (vec![c], vec![r, c]),
                _ => (vec![2, r, c / 2], vec![1, c / 2]),
            };
            (view_of(a), view_of(b))
        }),
        seed in any::<u64>(),
    ) {
        prop_assert!(numel(&numpy_broadcast(&a.shape, &b.shape)) > PAR_THRESHOLD);
        check_binary(&a, &b, seed, true)?;
    }
}

// ---------------------------------------------------------------------------
// Matmul.

/// [.., m, k] @ [.., k, n] by the triple loop, with the batch broadcast;
/// returns the product and, per element, the sum of |a_ip * b_pj|.
fn naive_matmul(
    a: &[f64],
    sa: &[usize],
    b: &[f64],
    sb: &[usize],
) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    let (ra, rb) = (sa.len(), sb.len());
    let (m, kk, n) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    let (ba, bb) = (&sa[..ra - 2], &sb[..rb - 2]);
    let batch = numpy_broadcast(ba, bb);
    let (mut out, mut scale) = (vec![], vec![]);
    for flat in 0..numel(&batch) {
        let index = unravel(flat, &batch);
        let (ia, ib) = (
            ravel(&broadcast_source(&index, ba), ba),
            ravel(&broadcast_source(&index, bb), bb),
        );
        let (a, b) = (&a[ia * m * kk..][..m * kk], &b[ib * kk * n..][..kk * n]);
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut t) = (0.0, 0.0);
                for p in 0..kk {
                    s += a[i * kk + p] * b[p * n + j];
                    t += (a[i * kk + p] * b[p * n + j]).abs();
                }
                out.push(s);
                scale.push(t);
            }
        }
    }
    ([batch.as_slice(), &[m, n]].concat(), out, scale)
}

fn check_matmul<T: Element>(
    a: &ViewSpec,
    b: &ViewSpec,
    seed: u64,
    rel: f64,
) -> Result<(), TestCaseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (ta, wa) = a.build::<T>(&mut uniform(&mut rng));
    let (tb, wb) = b.build::<T>(&mut uniform(&mut rng));
    let (shape, want, scale) = naive_matmul(&wa, &a.shape, &wb, &b.shape);
    let got = k::matmul(&ta, &tb).unwrap();
    prop_assert_eq!(got.shape(), &shape[..]);
    assert_close(&as_f64(&got), &want, &scale, rel)
}

/// Batch shapes for matmul: random broadcastable pairs, and the two patterns
/// [b, m, k] @ [k, n] and [1, m, k] @ [b, k, n] every time they are drawn.
fn matmul_batches() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop_oneof![
        2 => broadcastable_pair(2, 3),
        1 => (2usize..=4).prop_map(|b| (vec![b], vec![])),
        1 => (2usize..=4).prop_map(|b| (vec![1], vec![b])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matmul_of_strided_batched_operands_matches_the_triple_loop(
        (a, b) in (matmul_batches(), 1usize..20, 1usize..20, 1usize..20).prop_flat_map(
            |((ba, bb), m, kk, n)| (view_of([ba, vec![m, kk]].concat()), view_of([bb, vec![kk, n]].concat())),
        ),
        seed in any::<u64>(),
    ) {
        check_matmul::<f64>(&a, &b, seed, 1e-9)?;
    }

    #[test]
    fn matmul_of_mismatched_shapes_is_an_error_naming_matmul(
        (a, b) in (vec(1usize..=4, 0..=4), vec(1usize..=4, 0..=4)).prop_filter("mismatched", |(a, b)| {
            let (ra, rb) = (a.len(), b.len());
            ra < 2 || rb < 2 || a[ra - 1] != b[rb - 2] || {
                let (ba, bb) = (&a[..ra - 2], &b[..rb - 2]);
                ba.iter().rev().zip(bb.iter().rev()).any(|(&x, &y)| x != y && x != 1 && y != 1)
            }
        }),
    ) {
        assert_err_names(k::matmul(&Tensor::<f64>::zeros(&a), &Tensor::zeros(&b)), "matmul")?;
    }
}

#[test]
fn large_f32_matmuls_take_the_row_and_the_column_split_and_match() {
    // Past gemm_par's threshold (1 << 21 multiply-adds), on 3 threads so
    // the blocks are uneven: m >= n splits rows, m < n splits columns
    // (each block then writes a strip of every row of the output).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        for (m, kk, n) in [(150, 140, 130), (130, 140, 150), (40, 300, 410)] {
            let a = ViewSpec {
                shape: vec![m, kk],
                perm: vec![1, 0],
                before: vec![0, 0],
                after: vec![0, 0],
            };
            let b = ViewSpec {
                shape: vec![kk, n],
                perm: vec![0, 1],
                before: vec![1, 0],
                after: vec![2, 3],
            };
            check_matmul::<f32>(&a, &b, 7, 1e-4).unwrap();
            let bt = ViewSpec {
                shape: vec![kk, n],
                perm: vec![1, 0],
                before: vec![0, 0],
                after: vec![0, 1],
            };
            check_matmul::<f32>(&ViewSpec::contiguous(&[m, kk]), &bt, 8, 1e-4).unwrap();
            check_matmul::<f32>(
                &ViewSpec::contiguous(&[m, kk]),
                &ViewSpec::contiguous(&[kk, n]),
                9,
                1e-4,
            )
            .unwrap();
        }
    });
}

#[test]
fn large_batched_f64_matmul_splits_over_the_batch_and_matches() {
    // 4 * 90^3 multiply-adds: the batch is split over rayon.
    let a = ViewSpec {
        shape: vec![4, 90, 90],
        perm: vec![0, 2, 1],
        before: vec![0, 1, 0],
        after: vec![0, 0, 2],
    };
    check_matmul::<f64>(&a, &ViewSpec::contiguous(&[90, 90]), 9, 1e-9).unwrap();
    let a = ViewSpec::contiguous(&[1, 90, 90]);
    let b = ViewSpec {
        shape: vec![4, 90, 90],
        perm: vec![2, 1, 0],
        before: vec![0; 3],
        after: vec![1; 3],
    };
    check_matmul::<f64>(&a, &b, 10, 1e-9).unwrap();
}

// ---------------------------------------------------------------------------
// Convolution.

/// Output size of a convolution along one axis, from the definition.
fn conv_out(
    size: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    (size + 2 * padding >= span).then(|| (size + 2 * padding - span) / stride + 1)
}

/// Cross-correlation by seven nested loops: x [n, c, h, w], w [o, c, kh, kw]
/// -> ([n, o, oh, ow], the products' magnitudes summed per output).
fn naive_conv2d(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    opts: Conv2dOptions,
) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    let &[n, c, h, wd] = xs else { unreachable!() };
    let &[o, _, kh, kw] = ws else { unreachable!() };
    let [sy, sx] = opts.stride;
    let [py, px] = opts.padding;
    let [dy, dx] = opts.dilation;
    let oh = conv_out(h, kh, sy, py, dy).unwrap();
    let ow = conv_out(wd, kw, sx, px, dx).unwrap();
    let (mut out, mut scale) = (vec![0.0; n * o * oh * ow], vec![0.0; n * o * oh * ow]);
    for b in 0..n {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let at = ((b * o + oc) * oh + oy) * ow + ox;
                    for ic in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * sy + ky * dy) as isize - py as isize;
                                let ix = (ox * sx + kx * dx) as isize - px as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((b * c + ic) * h + iy as usize) * wd + ix as usize];
                                let wv = w[((oc * c + ic) * kh + ky) * kw + kx];
                                out[at] += xv * wv;
                                scale[at] += (xv * wv).abs();
                            }
                        }
                    }
                }
            }
        }
    }
    (vec![n, o, oh, ow], out, scale)
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    c: usize,
    o: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    opts: Conv2dOptions,
}

impl ConvCase {
    fn x_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.hw[0], self.hw[1]]
    }
    fn w_shape(&self) -> Vec<usize> {
        vec![self.o, self.c, self.kernel[0], self.kernel[1]]
    }
    fn out_hw(&self) -> Option<[usize; 2]> {
        let o = self.opts;
        let axis = |a: usize| {
            conv_out(
                self.hw[a],
                self.kernel[a],
                o.stride[a],
                o.padding[a],
                o.dilation[a],
            )
        };
        Some([axis(0)?, axis(1)?])
    }
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        // From 8 channels up, images unfold channels-last: test both layouts.
        (1usize..=3, prop_oneof![1usize..=3, 8usize..=9], 1usize..=3),
        uniform2(1usize..=8),
        uniform2(1usize..=4),
        uniform2(1usize..=3),
        uniform2(0usize..=2),
        uniform2(1usize..=2),
    )
        .prop_map(
            |((n, c, o), hw, kernel, stride, padding, dilation)| ConvCase {
                n,
                c,
                o,
                hw,
                kernel,
                opts: Conv2dOptions {
                    stride,
                    padding,
                    dilation,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv2d_of_strided_input_matches_naive_loops(
        (case, x, w) in conv_case().prop_flat_map(|case| {
            let (x, w) = (view_of(case.x_shape()), view_of(case.w_shape()));
            (Just(case), x, w)
        }),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (tx, wx) = x.build::<f64>(&mut uniform(&mut rng));
        let (tw, ww) = w.build::<f64>(&mut uniform(&mut rng));
        let got = k::conv2d(&tx, &tw, case.opts);
        if case.out_hw().is_none() {
            // The dilated kernel is wider than the padded input.
            return assert_err_names(got, "conv2d");
        }
        let (shape, want, scale) = naive_conv2d(&wx, &x.shape, &ww, &w.shape, case.opts);
        let got = got.unwrap();
        prop_assert_eq!(got.shape(), &shape[..]);
        assert_close(&got.to_vec(), &want, &scale, 1e-9)?;
    }

    #[test]
    fn conv2d_and_its_two_gradients_are_adjoint(
        case in conv_case().prop_filter("kernel fits", |c| c.out_hw().is_some()),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let [oh, ow] = case.out_hw().unwrap();
        let (x, xv) = ViewSpec::contiguous(&case.x_shape()).build::<f64>(&mut uniform(&mut rng));
        let (w, wv) = ViewSpec::contiguous(&case.w_shape()).build::<f64>(&mut uniform(&mut rng));
        let g_shape = [case.n, case.o, oh, ow];
        let (g, gv) = ViewSpec::contiguous(&g_shape).build::<f64>(&mut uniform(&mut rng));

        let y = k::conv2d(&x, &w, case.opts).unwrap();
        let gx = k::conv2d_input_grad(&g, &w, case.opts, case.hw).unwrap();
        let gw = k::conv2d_weight_grad(&x, &g, case.opts, case.kernel).unwrap();
        prop_assert_eq!(gx.shape(), &case.x_shape()[..]);
        prop_assert_eq!(gw.shape(), &case.w_shape()[..]);

        let (_, y_abs, _) = naive_conv2d(&abs(&xv), &case.x_shape(), &abs(&wv), &case.w_shape(), case.opts);
        let tol = 1e-9 * dot(&y_abs, &abs(&gv)).max(f64::MIN_POSITIVE);
        let lhs = dot(&y.to_vec(), &gv);
        let via_x = dot(&xv, &gx.to_vec());
        let via_w = dot(&wv, &gw.to_vec());
        prop_assert!((lhs - via_x).abs() <= tol, "<conv(x, w), g> = {}, <x, input_grad> = {}", lhs, via_x);
        prop_assert!((lhs - via_w).abs() <= tol, "<conv(x, w), g> = {}, <w, weight_grad> = {}", lhs, via_w);

        // A gradient of the wrong size is an error, not a panic.
        let bad = Tensor::<f64>::zeros(&[case.n, case.o, oh + 1, ow]);
        assert_err_names(k::conv2d_input_grad(&bad, &w, case.opts, case.hw), "conv2d_input_grad")?;
        assert_err_names(k::conv2d_weight_grad(&x, &bad, case.opts, case.kernel), "conv2d_weight_grad")?;
    }
}

#[test]
fn conv2d_whose_outer_kernel_taps_only_ever_see_padding_matches_naive_loops() {
    // Width 3 padded by 2, kernel 4 dilated by 2: taps 0 and 3 read padding
    // at every output position (once an out-of-range slice start, and a panic).
    let opts = Conv2dOptions {
        stride: [1, 1],
        padding: [2, 2],
        dilation: [1, 2],
    };
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (x, xv) = ViewSpec::contiguous(&[1, 2, 1, 3]).build::<f64>(&mut uniform(&mut rng));
    let (w, wv) = ViewSpec::contiguous(&[2, 2, 1, 4]).build::<f64>(&mut uniform(&mut rng));
    let (shape, want, scale) = naive_conv2d(&xv, x.shape(), &wv, w.shape(), opts);
    let y = k::conv2d(&x, &w, opts).unwrap();
    assert_eq!(y.shape(), &shape[..]);
    assert_close(&y.to_vec(), &want, &scale, 1e-12).unwrap();
    let gx = k::conv2d_input_grad(&y, &w, opts, [1, 3]).unwrap();
    let gw = k::conv2d_weight_grad(&x, &y, opts, [1, 4]).unwrap();
    let yy = dot(&want, &want);
    assert!((dot(&xv, &gx.to_vec()) - yy).abs() <= 1e-12 * yy);
    assert!((dot(&wv, &gw.to_vec()) - yy).abs() <= 1e-12 * yy);
}

#[test]
fn convolutions_whose_kernel_covers_the_input_match_naive_loops() {
    // One output position and no padding: the kernels take a single matrix
    // product over the batch; with padding, the im2col path. Both layouts
    // (3 and 9 channels), both with a stride that never applies.
    for (c, padding) in [(3, 0), (9, 0), (9, 1)] {
        let opts = Conv2dOptions {
            stride: [2, 3],
            padding: [padding; 2],
            dilation: [1, 1],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(c as u64);
        let (x, xv) = ViewSpec::contiguous(&[3, c, 3, 4]).build::<f64>(&mut uniform(&mut rng));
        let kernel = [3 + 2 * padding, 4 + 2 * padding];
        let (w, wv) = ViewSpec::contiguous(&[5, c, kernel[0], kernel[1]])
            .build::<f64>(&mut uniform(&mut rng));
        let (shape, want, scale) = naive_conv2d(&xv, x.shape(), &wv, w.shape(), opts);
        assert_eq!(shape, [3, 5, 1, 1]);
        let y = k::conv2d(&x, &w, opts).unwrap();
        assert_close(&y.to_vec(), &want, &scale, 1e-12).unwrap();
        let gx = k::conv2d_input_grad(&y, &w, opts, [3, 4]).unwrap();
        let gw = k::conv2d_weight_grad(&x, &y, opts, kernel).unwrap();
        let yy = dot(&want, &want);
        assert!((dot(&xv, &gx.to_vec()) - yy).abs() <= 1e-12 * yy);
        assert!((dot(&wv, &gw.to_vec()) - yy).abs() <= 1e-12 * yy);
    }
}

#[test]
fn f32_convolutions_with_many_channels_match_naive_loops() {
    // f32 with 16 or 32 channels and 32 or 64 outputs takes the direct
    // AVX-512 kernels where the CPU has them (im2col elsewhere; the two
    // gradients' kernels need channels in blocks of 32); with padding,
    // stride and dilation, and batches whose positions do not fill blocks
    // of 8.
    let cases = [
        ([3, 32, 9, 7], [64, 32, 4, 4], Conv2dOptions::new(2, 1)),
        (
            [2, 16, 6, 6],
            [32, 16, 3, 3],
            Conv2dOptions {
                stride: [1, 2],
                padding: [0, 2],
                dilation: [2, 1],
            },
        ),
        (
            [2, 32, 8, 7],
            [32, 32, 3, 2],
            Conv2dOptions {
                stride: [3, 2],
                padding: [2, 1],
                dilation: [2, 2],
            },
        ),
        // A stride above the kernel size: some input pixels get no gradient.
        ([2, 32, 7, 7], [32, 32, 1, 1], Conv2dOptions::new(2, 0)),
    ];
    for (xs, ws, opts) in cases {
        let mut rng = ChaCha8Rng::seed_from_u64(xs[0] as u64);
        let (x, xv) = ViewSpec::contiguous(&xs).build::<f64>(&mut uniform(&mut rng));
        let (w, wv) = ViewSpec::contiguous(&ws).build::<f64>(&mut uniform(&mut rng));
        let (shape, want, scale) = naive_conv2d(&xv, x.shape(), &wv, w.shape(), opts);
        let (x32, w32) = (x.cast::<f32>(), w.cast::<f32>());
        let y = k::conv2d(&x32, &w32, opts).unwrap();
        assert_eq!(y.shape(), &shape[..]);
        let got: Vec<f64> = y.to_vec().iter().map(|&v| v as f64).collect();
        assert_close(&got, &want, &scale, 1e-5).unwrap();
        // The weight gradient against f64 (whose im2col path the tests above
        // hold to the definition), for the output gradient y.
        let y64 = Tensor::<f64>::from_vec(want.clone(), &shape).unwrap();
        let want = k::conv2d_weight_grad(&x, &y64, opts, [ws[2], ws[3]])
            .unwrap()
            .to_vec();
        let bound = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let got = k::conv2d_weight_grad(&x32, &y64.cast::<f32>(), opts, [ws[2], ws[3]]).unwrap();
        for (g, w) in got.to_vec().iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= 1e-5 * bound, "{g} vs {w}");
        }
        // An empty batch has a zero weight gradient.
        let empty = Tensor::<f32>::zeros(&[0, xs[1], xs[2], xs[3]]);
        let gy0 = Tensor::<f32>::zeros(&[0, shape[1], shape[2], shape[3]]);
        let gw0 = k::conv2d_weight_grad(&empty, &gy0, opts, [ws[2], ws[3]]).unwrap();
        assert!(gw0.to_vec().iter().all(|&v| v == 0.0));
        // And the input gradient.
        let want = k::conv2d_input_grad(&y64, &w, opts, [xs[2], xs[3]])
            .unwrap()
            .to_vec();
        let bound = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let got = k::conv2d_input_grad(&y64.cast::<f32>(), &w32, opts, [xs[2], xs[3]]).unwrap();
        for (g, w) in got.to_vec().iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= 1e-5 * bound, "{g} vs {w}");
        }
    }
}

/// Transposed convolution by its scatter definition:
/// out[n, co, iy*s - p + ky*d, ix*s - p + kx*d] += x[n, ci, iy, ix] * w[ci, co, ky, kx].
fn naive_conv_transpose2d(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    opts: Conv2dOptions,
    output_padding: [usize; 2],
) -> Option<(Vec<usize>, Vec<f64>, Vec<f64>)> {
    let &[n, ci, h, wd] = xs else { unreachable!() };
    let &[_, co, kh, kw] = ws else { unreachable!() };
    let size = |a: usize, len: usize, k: usize| {
        let full = (len - 1) * opts.stride[a] + opts.dilation[a] * (k - 1) + output_padding[a] + 1;
        full.checked_sub(2 * opts.padding[a]).filter(|&s| s > 0)
    };
    let (oh, ow) = (size(0, h, kh)?, size(1, wd, kw)?);
    let (mut out, mut scale) = (vec![0.0; n * co * oh * ow], vec![0.0; n * co * oh * ow]);
    for b in 0..n {
        for i in 0..ci {
            for iy in 0..h {
                for ix in 0..wd {
                    for o in 0..co {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let y = (iy * opts.stride[0] + ky * opts.dilation[0]) as isize
                                    - opts.padding[0] as isize;
                                let xx = (ix * opts.stride[1] + kx * opts.dilation[1]) as isize
                                    - opts.padding[1] as isize;
                                if y < 0 || xx < 0 || y >= oh as isize || xx >= ow as isize {
                                    continue;
                                }
                                let v = x[((b * ci + i) * h + iy) * wd + ix]
                                    * w[((i * co + o) * kh + ky) * kw + kx];
                                let at = ((b * co + o) * oh + y as usize) * ow + xx as usize;
                                out[at] += v;
                                scale[at] += v.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    Some((vec![n, co, oh, ow], out, scale))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv_transpose2d_matches_the_scatter_definition(
        (case, output_padding, x) in (conv_case(), uniform2(0usize..3)).prop_flat_map(|(case, op)| {
            // output_padding below max(stride, dilation), as PyTorch allows;
            // deepgen supports it below the stride only.
            let op = [0, 1].map(|a| op[a] % case.opts.stride[a].max(case.opts.dilation[a]));
            // Input [n, c_in, h, w] with c_in = case.c; weight [c_in, c_out = case.o, kh, kw].
            let x = view_of(case.x_shape());
            (Just(case), Just(op), x)
        }),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w_shape = [case.c, case.o, case.kernel[0], case.kernel[1]];
        let (tx, xv) = x.build::<f64>(&mut uniform(&mut rng));
        let (tw, wv) = ViewSpec::contiguous(&w_shape).build::<f64>(&mut uniform(&mut rng));
        let got = k::conv_transpose2d(&tx, &tw, case.opts, output_padding);
        if (0..2).any(|a| output_padding[a] >= case.opts.stride[a]) {
            return assert_err_names(got, "conv_transpose2d");
        }
        let Some((shape, want, scale)) = naive_conv_transpose2d(&xv, &x.shape, &wv, &w_shape, case.opts, output_padding) else {
            return assert_err_names(got, "conv_transpose2d");
        };
        let got = got.unwrap();
        prop_assert_eq!(got.shape(), &shape[..]);
        assert_close(&got.to_vec(), &want, &scale, 1e-9)?;
    }
}

// ---------------------------------------------------------------------------
// Pooling.

#[derive(Debug, Clone)]
struct PoolCase {
    shape: Vec<usize>,
    opts: Pool2dOptions,
}

impl PoolCase {
    /// Output size, or None where the pooling is invalid (padding over half
    /// the window, or the window wider than the padded input).
    fn out_hw(&self) -> Option<[usize; 2]> {
        let o = self.opts;
        let axis = |a: usize| {
            let (size, k, s, p) = (self.shape[2 + a], o.kernel[a], o.stride[a], o.padding[a]);
            (2 * p <= k && size + 2 * p >= k).then(|| (size + 2 * p - k) / s + 1)
        };
        Some([axis(0)?, axis(1)?])
    }

    /// The input positions (flat in the plane) of window (oy, ox), padding left out, row-major.
    fn window(&self, oy: usize, ox: usize) -> Vec<usize> {
        let (h, w, o) = (self.shape[2] as isize, self.shape[3] as isize, self.opts);
        let mut at = vec![];
        for ky in 0..o.kernel[0] {
            for kx in 0..o.kernel[1] {
                let iy = (oy * o.stride[0] + ky) as isize - o.padding[0] as isize;
                let ix = (ox * o.stride[1] + kx) as isize - o.padding[1] as isize;
                if (0..h).contains(&iy) && (0..w).contains(&ix) {
                    at.push((iy * w + ix) as usize);
                }
            }
        }
        at
    }
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        1usize..=2,
        1usize..=3,
        uniform2(1usize..=8),
        uniform2(1usize..=4),
        uniform2(1usize..=3),
        uniform2(0usize..=2),
    )
        .prop_map(|(n, c, hw, kernel, stride, padding)| PoolCase {
            shape: vec![n, c, hw[0], hw[1]],
            opts: Pool2dOptions {
                kernel,
                stride,
                padding,
            },
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn max_and_avg_pool2d_of_strided_input_match_naive_loops(
        (case, x) in pool_case().prop_flat_map(|case| {
            let x = view_of(case.shape.clone());
            (Just(case), x)
        }),
        seed in any::<u64>(),
        ints in any::<bool>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (tx, xv) = if ints {
            x.build::<f64>(&mut small_ints(&mut rng))
        } else {
            x.build::<f64>(&mut uniform(&mut rng))
        };
        let (max, avg) = (k::max_pool2d(&tx, case.opts), k::avg_pool2d(&tx, case.opts));
        let Some([oh, ow]) = case.out_hw() else {
            assert_err_names(max, "max_pool2d")?;
            return assert_err_names(avg, "avg_pool2d");
        };
        let (max, indices) = max.unwrap();
        let avg = avg.unwrap();
        let shape = [case.shape[0], case.shape[1], oh, ow];
        prop_assert_eq!(max.shape(), &shape[..]);
        prop_assert_eq!(avg.shape(), &shape[..]);
        let plane = case.shape[2] * case.shape[3];
        let (max, avg) = (max.to_vec(), avg.to_vec());
        let count = (case.opts.kernel[0] * case.opts.kernel[1]) as f64;
        for (at, (&got_max, &got_avg)) in max.iter().zip(&avg).enumerate() {
            let (p, oy, ox) = (at / (oh * ow), at / ow % oh, at % ow);
            let window = case.window(oy, ox);
            prop_assert!(!window.is_empty());
            // Max ignores padding; the first maximum in row-major order wins.
            let best = window.iter().copied().fold(window[0], |b, i| if xv[p * plane + i] > xv[p * plane + b] { i } else { b });
            prop_assert_eq!(got_max, xv[p * plane + best]);
            prop_assert_eq!(indices[at], best);
            // Average counts padding as zeros.
            let sum: f64 = window.iter().map(|&i| xv[p * plane + i]).sum();
            let scale: f64 = window.iter().map(|&i| xv[p * plane + i].abs()).sum::<f64>() / count;
            prop_assert!((got_avg - sum / count).abs() <= 1e-12 * scale.max(f64::MIN_POSITIVE), "avg {} vs {}", got_avg, sum / count);
        }
    }
}

// ---------------------------------------------------------------------------
// Reductions.

/// Reduces `x` (row-major, of `shape`) over `axes` with `f`, naively: every
/// element is folded into the output position its index maps to. Returns
/// the keepdim shape and the outputs.
fn naive_reduce(
    x: &[f64],
    shape: &[usize],
    axes: &[usize],
    init: f64,
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<usize>, Vec<f64>) {
    let keep: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &n)| if axes.contains(&i) { 1 } else { n })
        .collect();
    let mut out = vec![init; numel(&keep)];
    for (flat, &v) in x.iter().enumerate() {
        let mut index = unravel(flat, shape);
        for &a in axes {
            index[a] = 0;
        }
        let o = &mut out[ravel(&index, &keep)];
        *o = f(*o, v);
    }
    (keep, out)
}

fn reduced_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    let keep = shape
        .iter()
        .enumerate()
        .filter(|&(i, _)| keepdim || !axes.contains(&i));
    keep.map(|(i, &n)| if axes.contains(&i) { 1 } else { n })
        .collect()
}

/// Checks sum, mean, max, min and var of `x` over `axes` (as passed to the
/// kernels: an empty list means all axes).
fn check_reductions(
    spec: &ViewSpec,
    axes: &[usize],
    keepdim: bool,
    correction: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (t, xv) = spec.build::<f64>(&mut uniform(&mut rng));
    let shape = &spec.shape;
    let mut all: Vec<usize> = axes.to_vec();
    all.sort_unstable();
    all.dedup();
    if all.is_empty() {
        all = (0..shape.len()).collect();
    }
    let count = all.iter().map(|&a| shape[a]).product::<usize>() as f64;
    let out_shape = reduced_shape(shape, &all, keepdim);

    let (keep, sums) = naive_reduce(&xv, shape, &all, 0.0, |a, v| a + v);
    let (_, abs_sums) = naive_reduce(&abs(&xv), shape, &all, 0.0, |a, v| a + v);
    let (_, maxs) = naive_reduce(&xv, shape, &all, f64::NEG_INFINITY, f64::max);
    let (_, mins) = naive_reduce(&xv, shape, &all, f64::INFINITY, f64::min);
    // Two-pass variance: the mean first, then the squared deviations.
    let means: Vec<f64> = sums.iter().map(|s| s / count).collect();
    let deviations: Vec<f64> = (0..xv.len())
        .map(|flat| {
            let mut index = unravel(flat, shape);
            for &a in &all {
                index[a] = 0;
            }
            (xv[flat] - means[ravel(&index, &keep)]).powi(2)
        })
        .collect();
    let (_, ss) = naive_reduce(&deviations, shape, &all, 0.0, |a, v| a + v);
    let dof = count - correction as f64;

    for (name, got) in [
        ("sum", k::sum(&t, axes, keepdim)),
        ("mean", k::mean(&t, axes, keepdim)),
        ("max", k::max(&t, axes, keepdim)),
        ("min", k::min(&t, axes, keepdim)),
        ("var", k::var(&t, axes, keepdim, correction)),
    ] {
        let got = got.unwrap();
        prop_assert_eq!(got.shape(), &out_shape[..], "{}", name);
        let got = got.to_vec();
        match name {
            "sum" => assert_close(&got, &sums, &abs_sums, 1e-12)?,
            "mean" => {
                let scale: Vec<f64> = abs_sums.iter().map(|s| s / count).collect();
                assert_close(&got, &means, &scale, 1e-12)?
            }
            "max" => prop_assert_eq!(got, maxs.clone()),
            "min" => prop_assert_eq!(got, mins.clone()),
            _ if dof > 0.0 => {
                let want: Vec<f64> = ss.iter().map(|s| s / dof).collect();
                // Rounding in the mean shifts every deviation a little.
                let (_, sq) = naive_reduce(
                    &xv.iter().map(|v| v * v).collect::<Vec<_>>(),
                    shape,
                    &all,
                    0.0,
                    |a, v| a + v,
                );
                let scale: Vec<f64> = sq.iter().map(|s| s / dof).collect();
                assert_close(&got, &want, &scale, 1e-10)?
            }
            _ => prop_assert!(
                got.iter().all(|v| !v.is_finite()),
                "var with no degrees of freedom: {:?}",
                got
            ),
        }
    }
    Ok(())
}

/// Index along `axis` of the first largest (or smallest) element, for every
/// position of the other axes in row-major order.
fn naive_arg(x: &[f64], shape: &[usize], axis: usize, better: fn(f64, f64) -> bool) -> Vec<usize> {
    let mut rest = shape.to_vec();
    rest.remove(axis);
    (0..numel(&rest))
        .map(|flat| {
            let mut index = unravel(flat, &rest);
            index.insert(axis, 0);
            let at = |i: usize, index: &mut Vec<usize>| {
                index[axis] = i;
                x[ravel(index, shape)]
            };
            (1..shape[axis]).fold(0, |best, i| {
                if better(at(i, &mut index), at(best, &mut index)) {
                    i
                } else {
                    best
                }
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reductions_over_axis_subsets_match_naive_loops(
        (spec, mask, keepdim, correction, shuffled) in vec(1usize..=5, 1..=4).prop_flat_map(|shape| {
            let r = shape.len();
            (view_of(shape), vec(any::<bool>(), r), any::<bool>(), 0usize..=1, any::<bool>())
        }),
        seed in any::<u64>(),
    ) {
        let mut axes: Vec<usize> = (0..mask.len()).filter(|&a| mask[a]).collect();
        if shuffled && !axes.is_empty() {
            // Order and repeats do not matter.
            axes.reverse();
            axes.push(axes[0]);
        }
        check_reductions(&spec, &axes, keepdim, correction, seed)?;
    }

    #[test]
    fn argmax_and_argmin_pick_the_first_extreme_along_the_axis(
        (spec, axis) in vec(1usize..=5, 1..=4).prop_flat_map(|shape| {
            let r = shape.len();
            (view_of(shape), 0..r)
        }),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (t, xv) = spec.build::<f64>(&mut small_ints(&mut rng));
        prop_assert_eq!(k::argmax(&t, axis).unwrap(), naive_arg(&xv, &spec.shape, axis, |a, b| a > b));
        prop_assert_eq!(k::argmin(&t, axis).unwrap(), naive_arg(&xv, &spec.shape, axis, |a, b| a < b));
    }

    #[test]
    fn reductions_over_a_missing_axis_are_errors_naming_the_op(
        (shape, bad) in vec(1usize..=4, 0..=3).prop_flat_map(|s| {
            let r = s.len();
            (Just(s), r..r + 3)
        }),
    ) {
        let t = Tensor::<f64>::ones(&shape);
        assert_err_names(k::sum(&t, &[bad], false), "sum")?;
        assert_err_names(k::mean(&t, &[bad], true), "mean")?;
        assert_err_names(k::max(&t, &[bad], false), "max")?;
        assert_err_names(k::min(&t, &[bad], false), "min")?;
        assert_err_names(k::var(&t, &[bad], false, 1), "var")?;
        assert_err_names(k::argmax(&t, bad), "argmax")?;
        assert_err_names(k::argmin(&t, bad), "argmin")?;
    }
}

#[test]
fn reductions_above_the_parallel_threshold_match_naive_loops() {
    // [40, 1000]: reducing axis 1 splits the 40 outputs over rayon; reducing
    // everything splits the data into chunks; axis 0 combines rows.
    let big = ViewSpec::contiguous(&[40, 1000]);
    let strided = ViewSpec {
        shape: vec![40, 1000],
        perm: vec![1, 0],
        before: vec![1, 0],
        after: vec![0, 2],
    };
    for spec in [&big, &strided] {
        for axes in [&[1][..], &[], &[0]] {
            for keepdim in [false, true] {
                check_reductions(spec, axes, keepdim, 1, 11).unwrap();
            }
        }
    }
}

#[test]
fn f32_sum_of_a_million_tenths_stays_within_1e_3_of_the_f64_sum() {
    let n = 1_000_000;
    let x = Tensor::<f32>::full(&[n], 0.1);
    let want = n as f64 * f64::from(0.1f32);
    let got = f64::from(k::sum(&x, &[], false).unwrap().item().unwrap());
    assert!((got - want).abs() <= 1e-3 * want, "sum {got}, want {want}");
    let got = f64::from(
        k::sum(&x.reshape(&[1000, 1000]).unwrap(), &[0, 1], false)
            .unwrap()
            .item()
            .unwrap(),
    );
    assert!(
        (got - want).abs() <= 1e-3 * want,
        "sum over both axes {got}, want {want}"
    );
}
