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
//!
//! A codec model (`deepgen_vae::Arch::Codec`) compresses lossily instead:
//! the same two functions code its rounded latents under its learned prior
//! ([`LatentCoder`]) and give back its reconstructions.

mod bbans;
mod buckets;
mod container;
mod error;
mod latents;
mod pixels;

use std::path::Path;

use deepgen_data::idx;
use deepgen_vae::Vae;

pub use bbans::{BitsBack, Rate};
pub use buckets::Buckets;
pub use container::{sha256, Coding, Container};
pub use error::{Error, Result};
pub use latents::LatentCoder;
pub use pixels::{logistic_levels, Pixels};

/// Latent bucket bits when none are given: 256 buckets per dimension.
pub const DEFAULT_BUCKET_BITS: u8 = 8;

/// Compresses the IDX bytes `idx_bytes` (read from `name`, for messages) of
/// images shaped as the model's into a container; `model_hash` names the
/// model (the SHA-256 of its checkpoint file). A codec model compresses
/// lossily (`bucket_bits` is then unused).
pub fn compress_idx(
    model: &Vae,
    model_hash: [u8; 32],
    name: &Path,
    idx_bytes: &[u8],
    bucket_bits: u8,
) -> Result<(Vec<u8>, Rate)> {
    compress_named(model, model_hash, name, idx_bytes, bucket_bits, Vec::new())
}

/// [`compress_idx`] for images that came from files: the container also
/// records their `names` (plain file names, one per image), which
/// [`decompress`] gives back.
pub fn compress_named(
    model: &Vae,
    model_hash: [u8; 32],
    name: &Path,
    idx_bytes: &[u8],
    bucket_bits: u8,
    names: Vec<String>,
) -> Result<(Vec<u8>, Rate)> {
    let file = idx::parse(name, idx_bytes)?;
    let image_len = check_shape(model, &file.dims, name)?;
    let images: Vec<&[u8]> = file.data.chunks_exact(image_len).collect();
    if model.is_codec() {
        let coder = LatentCoder::new(model)?;
        let latents = coder.latents(&images)?;
        let (words, rate) = coder.encode(&latents)?;
        let container = Container {
            model_hash,
            coding: Coding::Latents,
            dims: file.dims,
            names,
            data_hash: sha256(&latents::latent_bytes(&latents)),
            words,
        };
        return Ok((container.to_bytes()?, rate));
    }
    let pixels = Pixels::for_data(model.config.likelihood, &file.data)
        .map_err(|e| Error::Invalid(format!("{}: {e}", name.display())))?;
    let coder = BitsBack::new(model, Buckets::new(bucket_bits)?, pixels);
    let (words, rate) = coder.encode(&images)?;
    let container = Container {
        model_hash,
        coding: Coding::BitsBack {
            pixels,
            bucket_bits,
        },
        names,
        dims: file.dims,
        data_hash: sha256(idx_bytes),
        words,
    };
    Ok((container.to_bytes()?, rate))
}

/// The IDX bytes of a container written by [`compress_idx`] with the model
/// whose checkpoint hashes to `model_hash`: the original images, or a
/// codec's reconstructions of them.
pub fn decompress_idx(model: &Vae, model_hash: &[u8; 32], bytes: &[u8]) -> Result<Vec<u8>> {
    Ok(decompress(model, model_hash, bytes)?.0)
}

/// The IDX bytes of a container (as [`decompress_idx`]) and the images'
/// file names, when it was made by [`compress_named`] (else none).
pub fn decompress(
    model: &Vae,
    model_hash: &[u8; 32],
    bytes: &[u8],
) -> Result<(Vec<u8>, Vec<String>)> {
    let mut c = Container::parse(bytes, model_hash)?;
    let names = std::mem::take(&mut c.names);
    let image_len = check_shape(model, &c.dims, Path::new("the compressed file"))?;
    let mut out = idx::header(&c.dims);
    let (pixels, bucket_bits) = match (c.coding, model.is_codec()) {
        (Coding::Latents, true) => {
            let coder = LatentCoder::new(model)?;
            let latents = coder.decode(std::mem::take(&mut c.words), c.dims[0])?;
            if !c.data_matches(&sha256(&latents::latent_bytes(&latents))) {
                return Err(Error::Corrupt(
                    "the decoded latents do not match the original's checksum".into(),
                ));
            }
            out.extend(coder.reconstruct(&latents)?);
            return Ok((out, names));
        }
        (
            Coding::BitsBack {
                pixels,
                bucket_bits,
            },
            false,
        ) => (pixels, bucket_bits),
        (coding, _) => {
            return Err(Error::Corrupt(format!(
                "the file's coding ({coding:?}) is not this model's (a {})",
                if model.is_codec() {
                    "lossy codec"
                } else {
                    "lossless VAE"
                }
            )))
        }
    };
    let likelihood = model.config.likelihood;
    let pixels = match (pixels, likelihood) {
        (p @ Pixels::Binary { .. }, deepgen_vae::Likelihood::Bernoulli) => p,
        (Pixels::Levels { .. }, l) if l.is_levels() => Pixels::for_data(l, &[])?,
        (p, l) => {
            return Err(Error::Corrupt(format!(
                "pixel coding {p:?} does not match the model's {l:?} decoder"
            )))
        }
    };
    let coder = BitsBack::new(model, Buckets::new(bucket_bits)?, pixels);
    let images = coder.decode(std::mem::take(&mut c.words), c.dims[0])?;
    out.reserve(c.dims[0] * image_len);
    images.iter().for_each(|image| out.extend_from_slice(image));
    if !c.data_matches(&sha256(&out)) {
        return Err(Error::Corrupt(
            "the decoded images do not match the original's checksum".into(),
        ));
    }
    Ok((out, names))
}

/// The pixels per image, when `dims` (count first) are images of the
/// model's shape ([1, 28, 28] takes IDX [n, 28, 28]).
fn check_shape(model: &Vae, dims: &[usize], name: &Path) -> Result<usize> {
    let image_len: usize = model.image_shape().iter().product();
    let per_item = dims.get(1..).map(|d| d.iter().product::<usize>());
    if dims.first() == Some(&0) {
        return Err(Error::Invalid(format!("{}: no images", name.display())));
    }
    if dims.len() < 2 || per_item != Some(image_len) {
        return Err(Error::Invalid(format!(
            "{}: dimensions {dims:?} are not images of the model's shape {:?}",
            name.display(),
            model.image_shape()
        )));
    }
    Ok(image_len)
}
