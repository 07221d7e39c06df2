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
