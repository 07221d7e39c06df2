//! Laws of shapes and views, checked with proptest against naive index
//! arithmetic: broadcasting, permute/reshape round trips, narrow, transpose,
//! index_select, concat and stack, and the errors every bad shape gets.

use deepgen_tensor::{broadcast_shapes, Result, Tensor};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Naive index arithmetic, the reference every law is checked against.

/// The multi-index of the `flat`-th element of `shape` in row-major order.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &n) in index.iter_mut().zip(shape).rev() {
        *i = flat % n;
        flat /= n;
    }
    index
}

/// The row-major position of `index` in `shape`.
fn ravel(index: &[usize], shape: &[usize]) -> usize {
    index.iter().zip(shape).fold(0, |acc, (&i, &n)| acc * n + i)
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// NumPy's rule, written out: pad with leading 1s; equal sizes or a 1 pair up.
fn numpy_broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (a, b) = (pad(a), pad(b));
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
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

fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// 0, 1, 2, .. in row-major order: every element tells where it came from.
fn iota(shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec((0..numel(shape)).map(|i| i as f64).collect(), shape).unwrap()
}

// ---------------------------------------------------------------------------
// Strided views with known contents.

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
    /// The view (holding the buffer's row-major positions as values) and
    /// its elements in row-major order, computed by index arithmetic alone.
    fn build(&self) -> (Tensor<f64>, Vec<f64>) {
        let r = self.shape.len();
        let mut base_shape = vec![0; r];
        for i in 0..r {
            base_shape[self.perm[i]] = self.before[i] + self.shape[i] + self.after[i];
        }
        let mut t = iota(&base_shape).permute(&self.perm).unwrap();
        for i in 0..r {
            t = t.narrow(i, self.before[i], self.shape[i]).unwrap();
        }
        let want = (0..numel(&self.shape))
            .map(|flat| {
                let index = unravel(flat, &self.shape);
                let mut base_index = vec![0; r];
                for i in 0..r {
                    base_index[self.perm[i]] = index[i] + self.before[i];
                }
                ravel(&base_index, &base_shape) as f64
            })
            .collect();
        (t, want)
    }
}

/// A view of `shape`: a quarter of them plain contiguous tensors, the rest
/// permuted and narrowed out of a bigger buffer.
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
                let r = shape.len();
                ViewSpec {
                    shape,
                    perm: (0..r).collect(),
                    before: vec![0; r],
                    after: vec![0; r],
                }
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

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..=5, 1..=4)
}

fn any_view() -> impl Strategy<Value = ViewSpec> {
    shape_strategy().prop_flat_map(view_of)
}

/// A shape with the same number of elements: the sizes shuffled, neighbours
/// merged at random, and 1s sprinkled in.
fn same_numel_shape(shape: &[usize]) -> impl Strategy<Value = Vec<usize>> {
    let r = shape.len();
    (
        Just(shape.to_vec()).prop_shuffle(),
        vec(any::<bool>(), r),
        vec(0usize..=1, r + 1),
    )
        .prop_map(|(dims, merge, ones)| {
            let mut out: Vec<usize> = vec![1; ones[0]];
            for (i, &d) in dims.iter().enumerate() {
                match out.last_mut() {
                    Some(last) if merge[i] => *last *= d,
                    _ => out.push(d),
                }
                out.extend(std::iter::repeat_n(1, ones[i + 1]));
            }
            out
        })
}

/// Two shapes that broadcast: an output shape, each operand with leading
/// axes dropped and some sizes replaced by 1.
fn broadcastable_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    vec(1usize..=4, 0..=4)
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

/// Checks that `result` is an error whose message starts with `op:`.
fn assert_err_names<T: std::fmt::Debug>(result: Result<T>, op: &str) -> Result<(), TestCaseError> {
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
// Broadcasting.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn broadcast_shapes_is_symmetric_and_follows_the_numpy_rule(
        a in vec(0usize..=3, 0..=4),
        b in vec(0usize..=3, 0..=4),
    ) {
        let ab = broadcast_shapes("test", &a, &b);
        let ba = broadcast_shapes("test", &b, &a);
        prop_assert_eq!(ab.as_ref().ok(), ba.as_ref().ok());
        prop_assert_eq!(ab.as_ref().ok().cloned(), numpy_broadcast(&a, &b));
        if let Err(e) = ab {
            prop_assert!(e.to_string().starts_with("test: "), "{}", e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn broadcast_to_the_broadcast_shape_reads_the_element_each_index_maps_to(
        (spec, other) in broadcastable_pair().prop_flat_map(|(a, b)| (view_of(a), Just(b))),
    ) {
        let (t, want) = spec.build();
        let target = broadcast_shapes("test", &spec.shape, &other).unwrap();
        let b = t.broadcast_to(&target).unwrap();
        prop_assert_eq!(b.shape(), &target[..]);
        let got = b.to_vec();
        for (flat, &g) in got.iter().enumerate() {
            let src = broadcast_source(&unravel(flat, &target), &spec.shape);
            prop_assert_eq!(g, want[ravel(&src, &spec.shape)]);
        }
        prop_assert_eq!(b.contiguous().to_vec(), got);
    }

    // -----------------------------------------------------------------------
    // Views, reshape and permute.

    #[test]
    fn strided_views_read_what_index_arithmetic_says(spec in any_view()) {
        let (t, want) = spec.build();
        prop_assert_eq!(t.shape(), &spec.shape[..]);
        prop_assert_eq!(t.to_vec(), want.clone());
        let c = t.contiguous();
        prop_assert!(c.is_contiguous());
        prop_assert_eq!(c.to_vec(), want.clone());
        for (flat, &w) in want.iter().enumerate() {
            prop_assert_eq!(t.get(&unravel(flat, &spec.shape)).unwrap(), w);
        }
    }

    #[test]
    fn permute_then_inverse_permute_restores_shape_and_values(
        (spec, perm) in any_view().prop_flat_map(|s| {
            let r = s.shape.len();
            (Just(s), Just((0..r).collect::<Vec<_>>()).prop_shuffle())
        }),
    ) {
        let (t, want) = spec.build();
        let p = t.permute(&perm).unwrap();
        let shape: Vec<usize> = perm.iter().map(|&a| spec.shape[a]).collect();
        prop_assert_eq!(p.shape(), &shape[..]);
        // Axis i of the result is axis perm[i] of the source.
        for (flat, g) in p.to_vec().into_iter().enumerate() {
            let index = unravel(flat, &shape);
            let mut src = vec![0; index.len()];
            for (i, &a) in perm.iter().enumerate() {
                src[a] = index[i];
            }
            prop_assert_eq!(g, want[ravel(&src, &spec.shape)]);
        }
        let back = p.permute(&inverse(&perm)).unwrap();
        prop_assert_eq!(back.shape(), t.shape());
        prop_assert_eq!(back.to_vec(), want);
        prop_assert!(back == t);
    }

    #[test]
    fn reshape_round_trip_restores_the_tensor(
        (spec, other) in any_view().prop_flat_map(|s| {
            let other = same_numel_shape(&s.shape);
            (Just(s), other)
        }),
    ) {
        let (t, want) = spec.build();
        let r = t.reshape(&other).unwrap();
        prop_assert_eq!(r.shape(), &other[..]);
        // Reshape keeps the row-major order, view or copy alike.
        prop_assert_eq!(r.to_vec(), want.clone());
        prop_assert_eq!(r.clone(), t.contiguous().reshape(&other).unwrap());
        let back = r.reshape(&spec.shape).unwrap();
        prop_assert_eq!(back.shape(), &spec.shape[..]);
        prop_assert_eq!(back.to_vec(), want);
    }

    #[test]
    fn reshape_of_a_permuted_view_matches_contiguous_then_reshape(
        (shape, perm) in shape_strategy().prop_flat_map(|s| {
            let r = s.len();
            (Just(s), Just((0..r).collect::<Vec<_>>()).prop_shuffle())
        }),
        flat_first in any::<bool>(),
    ) {
        let p = iota(&shape).permute(&perm).unwrap();
        let target = if flat_first {
            vec![p.numel()]
        } else {
            let mut s = p.shape().to_vec();
            s.reverse();
            s
        };
        let got = p.reshape(&target).unwrap();
        let want = p.contiguous().reshape(&target).unwrap();
        prop_assert_eq!(got.shape(), want.shape());
        prop_assert_eq!(got.to_vec(), want.to_vec());
    }

    #[test]
    fn transpose_swaps_two_axes_as_index_arithmetic_says(
        (spec, a, b) in any_view().prop_flat_map(|s| {
            let r = s.shape.len();
            (Just(s), 0..r, 0..r)
        }),
    ) {
        let (t, want) = spec.build();
        let tr = t.transpose(a, b).unwrap();
        let mut shape = spec.shape.clone();
        shape.swap(a, b);
        prop_assert_eq!(tr.shape(), &shape[..]);
        for (flat, g) in tr.to_vec().into_iter().enumerate() {
            let mut index = unravel(flat, &shape);
            index.swap(a, b);
            prop_assert_eq!(g, want[ravel(&index, &spec.shape)]);
        }
        prop_assert!(tr.transpose(a, b).unwrap() == t);
    }

    #[test]
    fn narrow_reads_the_naive_slice(
        (spec, axis, start, len) in any_view().prop_flat_map(|s| {
            let r = s.shape.len();
            (Just(s), 0..r)
        }).prop_flat_map(|(s, axis)| {
            let n = s.shape[axis];
            (Just(s), Just(axis), 0..=n)
        }).prop_flat_map(|(s, axis, start)| {
            let n = s.shape[axis];
            (Just(s), Just(axis), Just(start), 0..=n - start)
        }),
    ) {
        let (t, want) = spec.build();
        let v = t.narrow(axis, start, len).unwrap();
        let mut shape = spec.shape.clone();
        shape[axis] = len;
        prop_assert_eq!(v.shape(), &shape[..]);
        let got = v.to_vec();
        prop_assert_eq!(got.len(), numel(&shape));
        for (flat, &g) in got.iter().enumerate() {
            let mut index = unravel(flat, &shape);
            index[axis] += start;
            prop_assert_eq!(g, want[ravel(&index, &spec.shape)]);
        }
        prop_assert_eq!(v.contiguous().to_vec(), got);
    }

    #[test]
    fn index_select_picks_the_named_slices_in_order(
        (spec, axis, indices) in any_view().prop_flat_map(|s| {
            let r = s.shape.len();
            (Just(s), 0..r)
        }).prop_flat_map(|(s, axis)| {
            let n = s.shape[axis];
            (Just(s), Just(axis), vec(0..n, 0..=6))
        }),
    ) {
        let (t, want) = spec.build();
        let sel = t.index_select(axis, &indices).unwrap();
        let mut shape = spec.shape.clone();
        shape[axis] = indices.len();
        prop_assert_eq!(sel.shape(), &shape[..]);
        prop_assert!(sel.is_contiguous());
        for (flat, g) in sel.to_vec().into_iter().enumerate() {
            let mut index = unravel(flat, &shape);
            index[axis] = indices[index[axis]];
            prop_assert_eq!(g, want[ravel(&index, &spec.shape)]);
        }
    }

    #[test]
    fn concat_joins_the_parts_in_order_along_the_axis(
        (specs, axis) in (shape_strategy(), 1usize..=4).prop_flat_map(|(shape, parts)| {
            let r = shape.len();
            (Just(shape), Just(parts), 0..r)
        }).prop_flat_map(|(shape, parts, axis)| {
            let part = move |len: usize| {
                let mut s = shape.clone();
                s[axis] = len;
                view_of(s)
            };
            (vec((0usize..=3).prop_flat_map(part), parts), Just(axis))
        }),
    ) {
        let built: Vec<(Tensor<f64>, Vec<f64>)> = specs.iter().map(ViewSpec::build).collect();
        let refs: Vec<&Tensor<f64>> = built.iter().map(|(t, _)| t).collect();
        let cat = Tensor::concat(&refs, axis).unwrap();
        let mut shape = specs[0].shape.clone();
        shape[axis] = specs.iter().map(|s| s.shape[axis]).sum();
        prop_assert_eq!(cat.shape(), &shape[..]);
        for (flat, g) in cat.to_vec().into_iter().enumerate() {
            let mut index = unravel(flat, &shape);
            // Walk the parts until the one holding this position along `axis`.
            let mut part = 0;
            while index[axis] >= specs[part].shape[axis] {
                index[axis] -= specs[part].shape[axis];
                part += 1;
            }
            prop_assert_eq!(g, built[part].1[ravel(&index, &specs[part].shape)]);
        }
    }

    #[test]
    fn stack_joins_equal_shapes_along_a_new_axis(
        (specs, axis) in (shape_strategy(), 1usize..=4).prop_flat_map(|(shape, parts)| {
            let r = shape.len();
            (vec(view_of(shape), parts), 0..=r)
        }),
    ) {
        let built: Vec<(Tensor<f64>, Vec<f64>)> = specs.iter().map(ViewSpec::build).collect();
        let refs: Vec<&Tensor<f64>> = built.iter().map(|(t, _)| t).collect();
        let st = Tensor::stack(&refs, axis).unwrap();
        let mut shape = specs[0].shape.clone();
        shape.insert(axis, specs.len());
        prop_assert_eq!(st.shape(), &shape[..]);
        for (flat, g) in st.to_vec().into_iter().enumerate() {
            let mut index = unravel(flat, &shape);
            let part = index.remove(axis);
            prop_assert_eq!(g, built[part].1[ravel(&index, &specs[part].shape)]);
        }
    }

    #[test]
    fn unsqueeze_then_squeeze_and_flatten_keep_the_values(
        (spec, axis, start, end) in any_view().prop_flat_map(|s| {
            let r = s.shape.len();
            (Just(s), 0..=r, 0..r, 0..r)
        }),
    ) {
        let (t, want) = spec.build();
        let u = t.unsqueeze(axis).unwrap();
        let mut shape = spec.shape.clone();
        shape.insert(axis, 1);
        prop_assert_eq!(u.shape(), &shape[..]);
        prop_assert_eq!(u.to_vec(), want.clone());
        prop_assert!(u.squeeze(axis).unwrap() == t);
        let (start, end) = (start.min(end), start.max(end));
        let f = t.flatten(start, end).unwrap();
        let mut shape = spec.shape[..start].to_vec();
        shape.push(numel(&spec.shape[start..=end]));
        shape.extend_from_slice(&spec.shape[end + 1..]);
        prop_assert_eq!(f.shape(), &shape[..]);
        prop_assert_eq!(f.to_vec(), want);
    }
}

// ---------------------------------------------------------------------------
// Every bad shape is an error naming the op, never a panic.

/// Sizes that are sometimes absurd, to catch overflow in bounds checks.
fn wild_size() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..8, 1 => Just(usize::MAX), 1 => Just(usize::MAX / 2 + 1)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn from_vec_with_the_wrong_length_is_an_error_naming_from_vec(
        (shape, len) in shape_strategy().prop_flat_map(|s| {
            let n = numel(&s);
            (Just(s), (0..2 * n + 2).prop_filter("wrong length", move |&l| l != n))
        }),
    ) {
        assert_err_names(Tensor::<f32>::from_vec(vec![0.0; len], &shape), "from_vec")?;
    }

    #[test]
    fn reshape_to_another_element_count_is_an_error_naming_reshape(
        (spec, target) in (any_view(), vec(0usize..=6, 0..=4))
            .prop_filter("different numel", |(s, t)| numel(&s.shape) != numel(t)),
    ) {
        assert_err_names(spec.build().0.reshape(&target), "reshape")?;
    }

    #[test]
    fn permute_with_a_non_permutation_is_an_error_naming_permute(
        (spec, axes) in (any_view(), vec(0usize..=5, 0..=5)).prop_filter("not a permutation", |(s, axes)| {
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            sorted != (0..s.shape.len()).collect::<Vec<_>>()
        }),
    ) {
        assert_err_names(spec.build().0.permute(&axes), "permute")?;
    }

    #[test]
    fn narrow_out_of_range_is_an_error_naming_narrow(
        (spec, axis, start, len) in (any_view(), 0usize..6, wild_size(), wild_size())
            .prop_filter("out of range", |(s, axis, start, len)| {
                *axis >= s.shape.len() || start.saturating_add(*len) > s.shape[*axis]
            }),
    ) {
        assert_err_names(spec.build().0.narrow(axis, start, len), "narrow")?;
    }

    #[test]
    fn broadcast_to_an_incompatible_shape_is_an_error_naming_broadcast_to(
        (spec, target) in (any_view(), vec(1usize..=5, 0..=5)).prop_filter("incompatible", |(s, t)| {
            t.len() < s.shape.len()
                || s.shape.iter().rev().zip(t.iter().rev()).any(|(&a, &b)| a != 1 && a != b)
        }),
    ) {
        assert_err_names(spec.build().0.broadcast_to(&target), "broadcast_to")?;
    }

    #[test]
    fn squeeze_of_an_axis_not_of_size_one_is_an_error_naming_squeeze(
        (spec, axis) in (any_view(), 0usize..6)
            .prop_filter("not size 1", |(s, a)| *a >= s.shape.len() || s.shape[*a] != 1),
    ) {
        assert_err_names(spec.build().0.squeeze(axis), "squeeze")?;
    }

    #[test]
    fn index_select_out_of_range_is_an_error_naming_index_select(
        (spec, axis, mut indices, bad) in (any_view(), 0usize..6, vec(0usize..3, 0..4), wild_size()),
    ) {
        let (t, _) = spec.build();
        if axis < t.rank() {
            let n = t.shape()[axis];
            indices.retain(|&i| i < n);
            indices.push(n + bad % 4);
        }
        assert_err_names(t.index_select(axis, &indices), "index_select")?;
    }

    #[test]
    fn concat_of_mismatched_shapes_is_an_error_naming_concat(
        (a, b, axis) in (any_view(), any_view(), 0usize..5).prop_filter("mismatched", |(a, b, axis)| {
            let (a, b) = (&a.shape, &b.shape);
            *axis >= a.len()
                || a.len() != b.len()
                || (0..a.len()).any(|i| i != *axis && a[i] != b[i])
        }),
    ) {
        let (a, b) = (a.build().0, b.build().0);
        assert_err_names(Tensor::concat(&[&a, &b], axis), "concat")?;
        assert_err_names(Tensor::<f64>::concat(&[], 0), "concat")?;
    }

    #[test]
    fn stack_of_mismatched_shapes_or_a_bad_axis_is_an_error_naming_stack(
        (a, b, axis) in (any_view(), any_view(), 0usize..6)
            .prop_filter("mismatched", |(a, b, axis)| a.shape != b.shape || *axis > a.shape.len()),
    ) {
        let (a, b) = (a.build().0, b.build().0);
        assert_err_names(Tensor::stack(&[&a, &b], axis), "stack")?;
        assert_err_names(Tensor::<f64>::stack(&[], 0), "stack")?;
    }

    #[test]
    fn get_with_a_bad_index_is_an_error_naming_get(
        (spec, index) in (any_view(), vec(wild_size(), 0..=5)).prop_filter("bad index", |(s, index)| {
            index.len() != s.shape.len() || index.iter().zip(&s.shape).any(|(&i, &n)| i >= n)
        }),
    ) {
        assert_err_names(spec.build().0.get(&index), "get")?;
    }

    #[test]
    fn bad_axes_are_errors_naming_their_op(
        (spec, a, b) in (any_view(), 0usize..6, 0usize..6)
            .prop_filter("an axis out of range", |(s, a, b)| a.max(b) >= &s.shape.len()),
    ) {
        let (t, _) = spec.build();
        assert_err_names(t.transpose(a, b), "transpose")?;
        assert_err_names(t.unsqueeze(t.rank() + 1 + a), "unsqueeze")?;
        assert_err_names(t.flatten(a, t.rank() + b), "flatten")?;
        if t.numel() != 1 {
            assert_err_names(t.item(), "item")?;
        }
    }
}

#[test]
fn from_vec_of_a_matching_length_is_never_an_error() {
    for shape in [&[][..], &[0], &[3, 0, 2], &[1, 1, 1], &[2, 3]] {
        let t = Tensor::<f64>::from_vec(vec![1.0; numel(shape)], shape).unwrap();
        assert_eq!(t.shape(), shape);
    }
}
