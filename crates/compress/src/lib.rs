//! deepgen-compress: lossless image compression with a trained VAE by
//! bits-back coding with asymmetric numeral systems (BB-ANS; Townsend,
//! Bird & Barber, "Practical Lossless Compression with Latent Variables
//! using Bits Back Coding", ICLR 2019).
//!
//! A file of images costs about the model's negative ELBO per image (plus
//! the latents' discretisation and a one-off overhead for the first image):
//! [`compress_idx`] turns an IDX file of 8-bit images into a [`Container`],
//! [`decompress_idx`] gives back the same IDX bytes. The pixels are coded
//! under the decoder's likelihood — Bernoulli for binarised images, a
//! discretised logistic over the 256 levels of 8-bit ones — and the
//! latents in [`Buckets`] of equal prior mass. The entropy coder is
//! `constriction`'s ANS stack coder, not one of our own.

mod bbans;
mod buckets;
mod container;
mod error;
mod pixels;

use std::path::Path;

use deepgen_data::idx;
use deepgen_vae::Vae;

pub use bbans::{BitsBack, Rate};
pub use buckets::Buckets;
pub use container::{sha256, Container};
pub use error::{Error, Result};
pub use pixels::{logistic_levels, Pixels};

/// Latent bucket bits when none are given: 256 buckets per dimension.
pub const DEFAULT_BUCKET_BITS: u8 = 8;

/// Compresses the IDX bytes `idx_bytes` (read from `name`, for messages) of
/// images shaped as the model's into a container; `model_hash` names the
/// model (the SHA-256 of its checkpoint file).
pub fn compress_idx(
    model: &Vae,
    model_hash: [u8; 32],
    name: &Path,
    idx_bytes: &[u8],
    bucket_bits: u8,
) -> Result<(Vec<u8>, Rate)> {
    let file = idx::parse(name, idx_bytes)?;
    let image_len = check_shape(model, &file.dims, name)?;
    let pixels = Pixels::for_data(model.config.likelihood, &file.data)
        .map_err(|e| Error::Invalid(format!("{}: {e}", name.display())))?;
    let images: Vec<&[u8]> = file.data.chunks_exact(image_len).collect();
    let coder = BitsBack::new(model, Buckets::new(bucket_bits)?, pixels);
    let (words, rate) = coder.encode(&images)?;
    let container = Container {
        model_hash,
        pixels,
        bucket_bits,
        dims: file.dims,
        data_hash: sha256(idx_bytes),
        words,
    };
    Ok((container.to_bytes()?, rate))
}

/// The IDX bytes of a container written by [`compress_idx`] with the model
/// whose checkpoint hashes to `model_hash`.
pub fn decompress_idx(model: &Vae, model_hash: &[u8; 32], bytes: &[u8]) -> Result<Vec<u8>> {
    let mut c = Container::parse(bytes, model_hash)?;
    let image_len = check_shape(model, &c.dims, Path::new("the compressed file"))?;
    let likelihood = model.config.likelihood;
    let pixels = match (c.pixels, likelihood) {
        (p @ Pixels::Binary { .. }, deepgen_vae::Likelihood::Bernoulli) => p,
        (Pixels::Levels { .. }, l) if l.is_levels() => Pixels::for_data(l, &[])?,
        (p, l) => {
            return Err(Error::Corrupt(format!(
                "pixel coding {p:?} does not match the model's {l:?} decoder"
            )))
        }
    };
    let coder = BitsBack::new(model, Buckets::new(c.bucket_bits)?, pixels);
    let images = coder.decode(std::mem::take(&mut c.words), c.dims[0])?;
    let mut out = idx_header(&c.dims);
    out.reserve(c.dims[0] * image_len);
    images.iter().for_each(|image| out.extend_from_slice(image));
    if !c.data_matches(&sha256(&out)) {
        return Err(Error::Corrupt(
            "the decoded images do not match the original's checksum".into(),
        ));
    }
    Ok(out)
}

/// The pixels per image, when `dims` (count first) are images of the
/// model's shape ([1, 28, 28] takes IDX [n, 28, 28]).
fn check_shape(model: &Vae, dims: &[usize], name: &Path) -> Result<usize> {
    let image_len: usize = model.image_shape().iter().product();
    let per_item = dims.get(1..).map(|d| d.iter().product::<usize>());
    if dims.len() < 2 || per_item != Some(image_len) {
        return Err(Error::Invalid(format!(
            "{}: dimensions {dims:?} are not images of the model's shape {:?}",
            name.display(),
            model.image_shape()
        )));
    }
    Ok(image_len)
}

/// The IDX header of unsigned bytes with `dims` (canonical, so a parsed
/// file's header is rebuilt byte for byte).
fn idx_header(dims: &[usize]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out
}
