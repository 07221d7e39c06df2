//! Built-in data sets generated in code from a seed: no files, no network.
//!
//! - [`digits`]: 28x28 grayscale digits 0-9 drawn from strokes, with random
//!   affine jitter, stroke width and edge blur — the CLI's default data set;
//! - [`shapes`]: circles, squares and triangles of random size and position;
//! - [`ring8`], [`grid25`], [`swiss_roll`]: 2-D point sets for GAN mode coverage.
//!
//! Item `i` is drawn from its own generator seeded by (seed, i), so any
//! prefix of a data set is the same whatever its length.

use std::f32::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{InMemory, Pixels, Result};

fn item_rng(seed: u64, i: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

type Pt = (f32, f32);

/// Points of an elliptic arc (angles in degrees, y pointing down, -90 = top).
fn arc(cx: f32, cy: f32, rx: f32, ry: f32, from: f32, to: f32) -> Vec<Pt> {
    let steps = (((to - from).abs() / 15.0).ceil() as usize).max(2);
    (0..=steps)
        .map(|k| {
            let a = (from + (to - from) * k as f32 / steps as f32).to_radians();
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

/// The strokes of digit `d` in a unit box, as polylines.
fn strokes(d: usize) -> Vec<Vec<Pt>> {
    match d {
        0 => vec![arc(0.5, 0.5, 0.21, 0.31, 0.0, 360.0)],
        1 => vec![vec![(0.38, 0.3), (0.52, 0.18), (0.52, 0.82)]],
        2 => {
            let mut s = arc(0.5, 0.36, 0.2, 0.18, 190.0, 390.0);
            s.extend([(0.3, 0.82), (0.72, 0.82)]);
            vec![s]
        }
        3 => vec![
            arc(0.48, 0.34, 0.19, 0.16, 200.0, 450.0),
            arc(0.48, 0.66, 0.21, 0.17, 270.0, 520.0),
        ],
        4 => vec![vec![(0.62, 0.82), (0.62, 0.18), (0.27, 0.62), (0.76, 0.62)]],
        5 => {
            let mut s = vec![(0.7, 0.18), (0.35, 0.18), (0.33, 0.47)];
            s.extend(arc(0.5, 0.63, 0.2, 0.19, 230.0, 510.0));
            vec![s]
        }
        6 => vec![
            arc(0.56, 0.52, 0.24, 0.33, 290.0, 170.0),
            arc(0.5, 0.66, 0.18, 0.16, 0.0, 360.0),
        ],
        7 => vec![vec![(0.27, 0.18), (0.73, 0.18), (0.42, 0.82)]],
        8 => vec![
            arc(0.5, 0.33, 0.16, 0.15, 0.0, 360.0),
            arc(0.5, 0.66, 0.2, 0.17, 0.0, 360.0),
        ],
        _ => vec![
            arc(0.5, 0.35, 0.18, 0.16, 0.0, 360.0),
            vec![(0.68, 0.36), (0.6, 0.82)],
        ],
    }
}

fn dist_to_segment(p: Pt, a: Pt, b: Pt) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (qx * qx + qy * qy).sqrt()
}

/// Renders polylines (pixel coordinates) with a stroke width and a soft edge into `out` [size * size].
fn render(lines: &[Vec<Pt>], size: usize, width: f32, soft: f32, out: &mut [f32]) {
    for y in 0..size {
        for x in 0..size {
            let p = (x as f32 + 0.5, y as f32 + 0.5);
            let d = lines
                .iter()
                .flat_map(|l| l.windows(2).map(move |w| dist_to_segment(p, w[0], w[1])))
                .fold(f32::INFINITY, f32::min);
            out[y * size + x] = ((width / 2.0 - d) / soft + 0.5).clamp(0.0, 1.0);
        }
    }
}

/// `n` labelled 28x28 digits (labels cycle 0..10), values in [0, 1], shape [1, 28, 28].
pub fn digits(n: usize, seed: u64) -> Result<InMemory> {
    const SIZE: usize = 28;
    let bytes = deepgen_tensor::budget::shape_bytes(&[n, SIZE, SIZE], size_of::<f32>());
    deepgen_tensor::budget::check(&format!("{n} synthetic digits"), bytes)?;
    let mut pixels = vec![0.0f32; n * SIZE * SIZE];
    let mut labels = Vec::with_capacity(n);
    for (i, out) in pixels.chunks_exact_mut(SIZE * SIZE).enumerate() {
        let mut rng = item_rng(seed, i);
        let d = i % 10;
        // Random affine jitter about the box centre: rotation, scale, shear, shift.
        let rot = rng.random_range(-0.22f32..0.22);
        let (sx, sy) = (
            rng.random_range(0.8f32..1.05),
            rng.random_range(0.85f32..1.05),
        );
        let shear = rng.random_range(-0.25f32..0.25);
        let (tx, ty) = (
            rng.random_range(-1.5f32..1.5),
            rng.random_range(-1.5f32..1.5),
        );
        let (c, s) = (rot.cos(), rot.sin());
        let map = |(x, y): Pt| {
            let (u, v) = ((x - 0.5) * sx + shear * (y - 0.5), (y - 0.5) * sy);
            let (u, v) = (c * u - s * v, s * u + c * v);
            (14.0 + 20.0 * u + tx, 14.0 + 20.0 * v + ty)
        };
        let lines: Vec<Vec<Pt>> = strokes(d)
            .into_iter()
            .map(|l| l.into_iter().map(map).collect())
            .collect();
        let width = rng.random_range(1.6f32..3.2);
        let soft = rng.random_range(0.6f32..1.6);
        render(&lines, SIZE, width, soft, out);
        labels.push(d as u16);
    }
    InMemory::new(Pixels::F32(pixels), &[1, SIZE, SIZE], Some((labels, 10)))
}

/// `n` filled shapes (0 circle, 1 square, 2 triangle) of random size and
/// position on a black `size` x `size` canvas; RGB with a random colour per
/// shape, else grayscale. Values in [0, 1].
pub fn shapes(n: usize, size: usize, rgb: bool, seed: u64) -> Result<InMemory> {
    let channels = if rgb { 3 } else { 1 };
    let plane = size * size;
    let mut pixels = vec![0.0f32; n * channels * plane];
    let mut labels = Vec::with_capacity(n);
    let s = size as f32;
    for (i, out) in pixels.chunks_exact_mut(channels * plane).enumerate() {
        let mut rng = item_rng(seed, i);
        let kind = rng.random_range(0..3usize);
        let r = rng.random_range(0.15 * s..0.35 * s);
        let (cx, cy) = (rng.random_range(r..s - r), rng.random_range(r..s - r));
        let colour: Vec<f32> = (0..channels)
            .map(|_| rng.random_range(0.4f32..1.0))
            .collect();
        let angle = rng.random_range(0.0..2.0 * PI);
        for y in 0..size {
            for x in 0..size {
                let (px, py) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let inside = match kind {
                    0 => px * px + py * py <= r * r,
                    1 => px.abs() <= r * 0.8 && py.abs() <= r * 0.8,
                    _ => (0..3).all(|k| {
                        // Inside all three edges of an equilateral triangle.
                        let a = angle + k as f32 * 2.0 * PI / 3.0;
                        px * a.cos() + py * a.sin() <= r * 0.5
                    }),
                };
                if inside {
                    for (ch, &c) in colour.iter().enumerate() {
                        out[ch * plane + y * size + x] = c;
                    }
                }
            }
        }
        labels.push(kind as u16);
    }
    InMemory::new(
        Pixels::F32(pixels),
        &[channels, size, size],
        Some((labels, 3)),
    )
}

fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u1 = 1.0 - rng.random::<f32>();
    let u2 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

fn mixture(n: usize, centres: &[Pt], std: f32, seed: u64) -> Result<InMemory> {
    let mut pts = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = item_rng(seed, i);
        let k = rng.random_range(0..centres.len());
        pts.push(centres[k].0 + std * gaussian(&mut rng));
        pts.push(centres[k].1 + std * gaussian(&mut rng));
        labels.push(k as u16);
    }
    InMemory::new(Pixels::F32(pts), &[2], Some((labels, centres.len())))
}

/// The centres of [`ring8`]: 8 points at angles k pi / 4 on radius 2.
pub fn ring8_centres() -> Vec<Pt> {
    (0..8)
        .map(|k| {
            (
                2.0 * (k as f32 * PI / 4.0).cos(),
                2.0 * (k as f32 * PI / 4.0).sin(),
            )
        })
        .collect()
}

/// The centres of [`grid25`]: {-4, -2, 0, 2, 4}^2.
pub fn grid25_centres() -> Vec<Pt> {
    (0..25)
        .map(|k| (-4.0 + 2.0 * (k % 5) as f32, -4.0 + 2.0 * (k / 5) as f32))
        .collect()
}

/// A ring of 8 Gaussians (radius 2, std 0.02); the label is the mode.
pub fn ring8(n: usize, seed: u64) -> Result<InMemory> {
    mixture(n, &ring8_centres(), 0.02, seed)
}

/// A 5x5 grid of Gaussians (spacing 2, std 0.05); the label is the mode.
pub fn grid25(n: usize, seed: u64) -> Result<InMemory> {
    mixture(n, &grid25_centres(), 0.05, seed)
}

/// A 2-D swiss roll (t in [1.5 pi, 4.5 pi], scaled to about [-2.5, 2.5]^2, noise 0.05); unlabelled.
pub fn swiss_roll(n: usize, seed: u64) -> Result<InMemory> {
    let mut pts = Vec::with_capacity(2 * n);
    for i in 0..n {
        let mut rng = item_rng(seed, i);
        let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f32>());
        pts.push(t * t.cos() / 5.0 + 0.05 * gaussian(&mut rng));
        pts.push(t * t.sin() / 5.0 + 0.05 * gaussian(&mut rng));
    }
    InMemory::new(Pixels::F32(pts), &[2], None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dataset, Scale};

    #[test]
    fn digits_are_seeded_labelled_and_inked() {
        let a = digits(20, 1).unwrap();
        let b = digits(10, 1).unwrap();
        let (mut x, mut y) = (vec![0.0; 10 * 784], vec![0.0; 10 * 784]);
        let idx: Vec<usize> = (0..10).collect();
        a.gather(&idx, Scale::ZeroOne, &mut x).unwrap();
        b.gather(&idx, Scale::ZeroOne, &mut y).unwrap();
        assert_eq!(x, y, "a prefix does not depend on the length");
        assert_eq!(a.label(13), Some(3));
        for img in x.chunks(784) {
            let ink: f32 = img.iter().sum();
            assert!((25.0..300.0).contains(&ink), "ink {ink}");
            assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert_ne!(x, {
            let mut z = vec![0.0; 10 * 784];
            digits(10, 2)
                .unwrap()
                .gather(&idx, Scale::ZeroOne, &mut z)
                .unwrap();
            z
        });
    }

    #[test]
    fn point_sets_sit_on_their_modes() {
        let r = ring8(500, 3).unwrap();
        let mut p = vec![0.0; 1000];
        r.gather(&(0..500).collect::<Vec<_>>(), Scale::Raw, &mut p)
            .unwrap();
        for (i, xy) in p.chunks(2).enumerate() {
            let c = ring8_centres()[r.label(i).unwrap()];
            assert!((xy[0] - c.0).hypot(xy[1] - c.1) < 0.15);
        }
        assert_eq!(grid25(10, 0).unwrap().num_classes(), Some(25));
        assert_eq!(swiss_roll(10, 0).unwrap().item_shape(), vec![2]);
        let s = shapes(6, 32, true, 0).unwrap();
        assert_eq!(s.item_shape(), vec![3, 32, 32]);
    }
}
