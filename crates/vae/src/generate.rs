//! Generation from a trained VAE: samples from the prior, reconstructions,
//! latent interpolations, and writing images for other tools.

use std::io::Write;
use std::path::Path;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_nn::checkpoint::{self, TensorData};
use deepgen_nn::Forward;
use deepgen_train::grid::{save_grid, GridOptions};
use deepgen_train::plot::{scatter_chart, Series};
use rand::Rng;

use crate::{Error, Result, Vae};

/// `n` images decoded from the prior (N(0, I), or a codec's learned
/// prior): pixel means [n, image..].
pub fn sample<R: Rng + ?Sized>(model: &Vae, n: usize, rng: &mut R) -> Result<Tensor> {
    decode_means(model, model.prior_sample(n, rng))
}

/// Pixel means decoded from latent points z [n, latent].
pub fn decode_means(model: &Vae, z: Tensor) -> Result<Tensor> {
    no_grad(|| Ok(model.mean(&model.decode(&Var::constant(z))?).value()))
}

/// Kingma & Welling's figure 4 for a 2-D latent: a `side` x `side` grid of
/// decoded points whose coordinates are the standard normal's quantiles at
/// evenly spaced probabilities in (0, 1), so the grid covers the prior's
/// mass evenly: [side^2, image..], rows from high z2 to low.
pub fn manifold(model: &Vae, side: usize) -> Result<Tensor> {
    if model.latent_dim() != 2 || side < 2 {
        return Err(Error::Invalid {
            op: "manifold",
            msg: format!(
                "needs a 2-D latent and a side of at least 2 (latent {}, side {side})",
                model.latent_dim()
            ),
        });
    }
    let q: Vec<f32> = (0..side)
        .map(|i| normal_quantile((i as f64 + 0.5) / side as f64) as f32)
        .collect();
    let mut z = Vec::with_capacity(side * side * 2);
    for row in 0..side {
        for &z1 in &q {
            z.extend([z1, q[side - 1 - row]]);
        }
    }
    decode_means(model, Tensor::from_vec(z, &[side * side, 2])?)
}

/// The standard normal's inverse CDF, by Acklam's rational approximation
/// (relative error below 1.2e-9 on (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p <= 0.0 {
        f64::NEG_INFINITY
    } else if p >= 1.0 {
        f64::INFINITY
    } else if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Reconstructions through the posterior means: [n, image..] -> [n, image..].
pub fn reconstruct(model: &Vae, x: &Tensor) -> Result<Tensor> {
    no_grad(|| Ok(model.forward(&Var::constant(x.clone()))?.value()))
}

/// Rows of 8 images, each row of originals followed by the row of their
/// reconstructions: [2n, image..], ready for a grid of 8 per row.
pub fn reconstruction_grid(model: &Vae, x: &Tensor) -> Result<Tensor> {
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
pub fn interpolate(model: &Vae, a: &Tensor, b: &Tensor, steps: usize) -> Result<Tensor> {
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
        decode_means(model, Tensor::from_vec(z, &[steps, l])?)
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
            let mut bytes = deepgen_data::idx::header(&[n, h, w]);
            bytes.extend(images.to_vec().iter().map(|&v| crate::codec::level(v)));
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
    model: &Vae,
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
    let csv_path = dir.join("latents.csv");
    deepgen_train::run::write_file(&csv_path, csv.as_bytes())?;
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

/// A scatter plot of 2-D points [n, 2], one colour and legend entry per
/// label (800x500 PNG).
pub fn scatter_png(path: &Path, points: &Tensor, labels: &[usize]) -> Result<()> {
    let p = points.to_vec();
    let classes = labels.iter().max().map_or(1, |m| m + 1);
    let mut groups: Vec<Vec<(f64, f64)>> = vec![Vec::new(); classes];
    for (i, c) in p.chunks_exact(2).enumerate() {
        groups[labels.get(i).copied().unwrap_or(0)].push((c[0] as f64, c[1] as f64));
    }
    let names: Vec<String> = (0..classes).map(|c| format!("label {c}")).collect();
    let series: Vec<Series> = groups
        .into_iter()
        .zip(&names)
        .filter(|(g, _)| !g.is_empty())
        .map(|(points, name)| Series { name, points })
        .collect();
    Ok(scatter_chart(path, "latent space", &series)?)
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

    #[test]
    fn normal_quantiles_match_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.05, -1.6448536269514729),
            (0.001, -3.090232306167813),
            (0.9999, 3.719016485455709),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-8,
                "{p}: {}",
                normal_quantile(p)
            );
        }
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
    }
}
