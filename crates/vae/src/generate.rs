//! Generation from a trained VAE: samples from the prior, reconstructions,
//! latent interpolations, and writing images for other tools.

use std::io::Write;
use std::path::Path;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::{save_grid, GridOptions};
use deepgen_nn::checkpoint::{self, TensorData};
use deepgen_nn::Module;
use rand::Rng;

use crate::{Error, MlpVae, Result};

/// `n` images decoded from z ~ N(0, I): pixel probabilities [n, image..].
pub fn sample<R: Rng + ?Sized>(model: &MlpVae, n: usize, rng: &mut R) -> Result<Tensor> {
    let z = Tensor::randn(&[n, model.latent_dim()], 0.0, 1.0, rng);
    no_grad(|| Ok(model.decode(&Var::constant(z))?.sigmoid().value()))
}

/// Reconstructions through the posterior means: [n, image..] -> [n, image..].
pub fn reconstruct(model: &MlpVae, x: &Tensor) -> Result<Tensor> {
    no_grad(|| Ok(model.forward(&Var::constant(x.clone()))?.sigmoid().value()))
}

/// Rows of 8 images, each row of originals followed by the row of their
/// reconstructions: [2n, image..], ready for a grid of 8 per row.
pub fn reconstruction_grid(model: &MlpVae, x: &Tensor) -> Result<Tensor> {
    let recon = reconstruct(model, x)?;
    let n = x.shape()[0];
    let mut rows = Vec::new();
    for start in (0..n).step_by(8) {
        let len = 8.min(n - start);
        rows.push(x.narrow(0, start, len)?);
        rows.push(recon.narrow(0, start, len)?);
    }
    Ok(Tensor::concat(&rows.iter().collect::<Vec<_>>(), 0)?)
}

/// Decodes `steps` points evenly spaced between the posterior means of
/// images `a` and `b` (each [image..]): [steps, image..].
pub fn interpolate(model: &MlpVae, a: &Tensor, b: &Tensor, steps: usize) -> Result<Tensor> {
    if steps < 2 {
        return Err(Error::Invalid {
            op: "interpolate",
            msg: format!("need at least 2 steps, got {steps}"),
        });
    }
    no_grad(|| {
        let pair = Tensor::stack(&[a, b], 0)?;
        let (mu, _) = model.encode(&Var::constant(pair))?;
        let mu = mu.value().to_vec();
        let l = model.latent_dim();
        let mut z = Vec::with_capacity(steps * l);
        for s in 0..steps {
            let t = s as f32 / (steps - 1) as f32;
            z.extend((0..l).map(|i| (1.0 - t) * mu[i] + t * mu[l + i]));
        }
        Ok(model
            .decode(&Var::constant(Tensor::from_vec(z, &[steps, l])?))?
            .sigmoid()
            .value())
    })
}

/// Writes images [n, c, h, w] with values in [0, 1] by the extension of
/// `path`: `.png` a grid of `nrow` images per row, `.safetensors` the float tensor `images`, `.idx`
/// (or `.idx3-ubyte`) 8-bit IDX as MNIST stores it (grayscale only).
pub fn write_images(path: &Path, images: &Tensor, nrow: usize) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match ext {
        "png" => Ok(save_grid(
            path,
            images,
            GridOptions {
                nrow,
                ..Default::default()
            },
        )?),
        "safetensors" => Ok(checkpoint::save_tensors(
            path,
            &[("images".into(), TensorData::F32(images.clone()))],
            None,
        )?),
        "idx" | "idx3-ubyte" => {
            let &[n, 1, h, w] = images.shape() else {
                return Err(Error::Invalid {
                    op: "write_images",
                    msg: format!(
                        "IDX output needs grayscale [n, 1, h, w], got {:?}",
                        images.shape()
                    ),
                });
            };
            let mut bytes = vec![0, 0, 8, 3];
            for d in [n, h, w] {
                bytes.extend((d as u32).to_be_bytes());
            }
            bytes.extend(
                images
                    .to_vec()
                    .iter()
                    .map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8),
            );
            let mut f = std::fs::File::create(path).map_err(|source| deepgen_data::Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            f.write_all(&bytes)
                .map_err(|source| deepgen_data::Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
            Ok(())
        }
        other => Err(Error::Invalid {
            op: "write_images",
            msg: format!(
                "unknown output type {other:?} for {}; use .png, .safetensors or .idx",
                path.display()
            ),
        }),
    }
}

/// Posterior means and log-variances of every item: ([n, latent], [n, latent]).
pub fn encode_all(
    model: &MlpVae,
    data: std::sync::Arc<dyn deepgen_data::Dataset>,
) -> Result<(Tensor, Tensor)> {
    let loader = deepgen_data::DataLoader::new(
        data,
        deepgen_data::LoaderConfig {
            batch_size: 500,
            shuffle: false,
            ..Default::default()
        },
    )?;
    let (mut mus, mut lvs) = (Vec::new(), Vec::new());
    for batch in loader.epoch(0) {
        let x = Var::constant(batch?.images);
        let (mu, lv) = no_grad(|| model.encode(&x))?;
        mus.push(mu.value());
        lvs.push(lv.value());
    }
    let cat =
        |v: &[Tensor]| -> Result<Tensor> { Ok(Tensor::concat(&v.iter().collect::<Vec<_>>(), 0)?) };
    Ok((cat(&mus)?, cat(&lvs)?))
}

/// Writes latent means and log-variances [n, latent] with their labels into
/// `dir`: latents.safetensors (mu, logvar, labels), latents.csv (one row per
/// item) and latents.png (the 2-D latent, or its first two principal
/// components, coloured by label).
pub fn write_latents(dir: &Path, mu: &Tensor, logvar: &Tensor, labels: &[usize]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| deepgen_data::Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let tensors = vec![
        ("mu".to_string(), TensorData::F32(mu.clone())),
        ("logvar".to_string(), TensorData::F32(logvar.clone())),
        (
            "labels".to_string(),
            TensorData::I64 {
                shape: vec![labels.len()],
                data: labels.iter().map(|&l| l as i64).collect(),
            },
        ),
    ];
    checkpoint::save_tensors(&dir.join("latents.safetensors"), &tensors, None)?;
    let l = mu.shape().get(1).copied().unwrap_or(0);
    let mut csv = String::from("index,label");
    (0..l).for_each(|j| csv.push_str(&format!(",mu_{j}")));
    (0..l).for_each(|j| csv.push_str(&format!(",logvar_{j}")));
    csv.push('\n');
    let (m, v) = (mu.to_vec(), logvar.to_vec());
    for (i, label) in labels.iter().enumerate() {
        csv.push_str(&format!("{i},{label}"));
        (0..l).for_each(|j| csv.push_str(&format!(",{}", m[i * l + j])));
        (0..l).for_each(|j| csv.push_str(&format!(",{}", v[i * l + j])));
        csv.push('\n');
    }
    checkpoint::write_atomic(&dir.join("latents.csv"), csv.as_bytes())?;
    scatter_png(&dir.join("latents.png"), &first_two_components(mu)?, labels)
}

/// The first two principal components of the rows of `x` [n, d] (d >= 2),
/// by power iteration on the covariance: [n, 2]. For d = 2, `x` itself.
pub fn first_two_components(x: &Tensor) -> Result<Tensor> {
    let &[n, d] = x.shape() else {
        return Err(Error::Invalid {
            op: "pca",
            msg: format!("expected [n, d], got {:?}", x.shape()),
        });
    };
    if d == 2 || n == 0 {
        return Ok(x.clone());
    }
    let v = x.to_vec();
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| v[i * d + j] as f64).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![0.0f64; d * d];
    for i in 0..n {
        for a in 0..d {
            let xa = v[i * d + a] as f64 - mean[a];
            for b in 0..d {
                cov[a * d + b] += xa * (v[i * d + b] as f64 - mean[b]);
            }
        }
    }
    let mut components: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2 {
        let mut w: Vec<f64> = (0..d).map(|j| 1.0 + j as f64 * 0.01).collect();
        for _ in 0..200 {
            let mut next: Vec<f64> = (0..d)
                .map(|a| (0..d).map(|b| cov[a * d + b] * w[b]).sum())
                .collect();
            // Deflate: remove the components already found.
            for c in &components {
                let dot: f64 = next.iter().zip(c).map(|(x, y)| x * y).sum();
                next.iter_mut().zip(c).for_each(|(x, y)| *x -= dot * y);
            }
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            w = next.into_iter().map(|x| x / norm).collect();
        }
        components.push(w);
    }
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        for c in &components {
            out.push(
                (0..d)
                    .map(|j| (v[i * d + j] as f64 - mean[j]) * c[j])
                    .sum::<f64>() as f32,
            );
        }
    }
    Ok(Tensor::from_vec(out, &[n, 2])?)
}

/// A scatter plot of 2-D points coloured by label (10 colours), 512x512 PNG
/// on white, the points' range filling the canvas with a margin. No text:
/// the CSV beside it carries the numbers.
pub fn scatter_png(path: &Path, points: &Tensor, labels: &[usize]) -> Result<()> {
    const SIZE: usize = 512;
    const PALETTE: [[f32; 3]; 10] = [
        [0.12, 0.47, 0.71],
        [1.0, 0.5, 0.05],
        [0.17, 0.63, 0.17],
        [0.84, 0.15, 0.16],
        [0.58, 0.4, 0.74],
        [0.55, 0.34, 0.29],
        [0.89, 0.47, 0.76],
        [0.5, 0.5, 0.5],
        [0.74, 0.74, 0.13],
        [0.09, 0.75, 0.81],
    ];
    let p = points.to_vec();
    let (xs, ys): (Vec<f32>, Vec<f32>) = p.chunks_exact(2).map(|c| (c[0], c[1])).unzip();
    let range = |v: &[f32]| {
        v.iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            })
    };
    let ((x0, x1), (y0, y1)) = (range(&xs), range(&ys));
    let mut img = vec![1.0f32; 3 * SIZE * SIZE];
    let to_px = |v: f32, lo: f32, hi: f32| {
        ((v - lo) / (hi - lo).max(1e-12) * (SIZE as f32 - 40.0) + 20.0) as isize
    };
    for (i, (&x, &y)) in xs.iter().zip(&ys).enumerate() {
        let colour = PALETTE[labels.get(i).copied().unwrap_or(0) % 10];
        let (cx, cy) = (to_px(x, x0, x1), SIZE as isize - 1 - to_px(y, y0, y1));
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (px, py) = (cx + dx, cy + dy);
                if (0..SIZE as isize).contains(&px) && (0..SIZE as isize).contains(&py) {
                    for (c, &v) in colour.iter().enumerate() {
                        img[c * SIZE * SIZE + py as usize * SIZE + px as usize] = v;
                    }
                }
            }
        }
    }
    let img = Tensor::from_vec(img, &[1, 3, SIZE, SIZE])?;
    Ok(save_grid(
        path,
        &img,
        GridOptions {
            nrow: 1,
            padding: 0,
            ..Default::default()
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_components_find_the_spread_direction() {
        // Points along (1, 1, 0) with a little spread along (0, 0, 1).
        let mut v = Vec::new();
        for i in 0..50 {
            let t = i as f32 - 25.0;
            v.extend([t, t, 0.1 * ((i % 3) as f32 - 1.0)]);
        }
        let p = first_two_components(&Tensor::from_vec(v, &[50, 3]).unwrap())
            .unwrap()
            .to_vec();
        // The first coordinate is +-t * sqrt(2); the second is the small spread.
        let first: Vec<f32> = p.chunks(2).map(|c| c[0]).collect();
        let scale = (first[49] - first[0]) / 49.0;
        assert!((scale.abs() - 2f32.sqrt()).abs() < 1e-3, "{scale}");
        assert!(p.chunks(2).all(|c| c[1].abs() < 0.2));
    }
}
