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
pub use pixels::{logistic_levels, Pixels, MAX_NEAR};

/// Latent bucket bits when none are given: 256 buckets per dimension.
pub const DEFAULT_BUCKET_BITS: u8 = 8;

/// How a bits-back model codes: its latent buckets, and how far a pixel
/// may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// 2^bits latent buckets of equal prior mass per dimension.
    pub bucket_bits: u8,
    /// The largest difference between a pixel and its decoded value: 0 is
    /// lossless; more codes 8-bit levels near-lossless (see
    /// [`Pixels::Levels`]), at fewer bits.
    pub near: u8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bucket_bits: DEFAULT_BUCKET_BITS,
            near: 0,
        }
    }
}

/// Compresses the IDX bytes `idx_bytes` (read from `name`, for messages) of
/// images shaped as the model's into a container, losslessly; `model_hash`
/// names the model (the SHA-256 of its checkpoint file). A codec model
/// compresses lossily (`bucket_bits` is then unused).
pub fn compress_idx(
    model: &Vae,
    model_hash: [u8; 32],
    name: &Path,
    idx_bytes: &[u8],
    bucket_bits: u8,
) -> Result<(Vec<u8>, Rate)> {
    let settings = Settings {
        bucket_bits,
        near: 0,
    };
    compress_named(model, model_hash, name, idx_bytes, settings, Vec::new())
}

/// [`compress_idx`] with any [`Settings`] (near-lossless too), for images
/// that may have come from files: the container also records their `names`
/// (plain file names, one per image, or none), which [`decompress`] gives
/// back.
pub fn compress_named(
    model: &Vae,
    model_hash: [u8; 32],
    name: &Path,
    idx_bytes: &[u8],
    settings: Settings,
    names: Vec<String>,
) -> Result<(Vec<u8>, Rate)> {
    let Settings { bucket_bits, near } = settings;
    let file = idx::parse(name, idx_bytes)?;
    let image_len = check_shape(model, &file.dims, name)?;
    if model.is_codec() {
        if near != 0 {
            return Err(Error::Invalid(
                "a codec is lossy by its quality; a largest pixel error applies to \
                 bits-back (VAE) models"
                    .into(),
            ));
        }
        let images: Vec<&[u8]> = file.data.chunks_exact(image_len).collect();
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
        .and_then(|p| p.with_near(near))
        .map_err(|e| Error::Invalid(format!("{}: {e}", name.display())))?;
    // Near-lossless: the images are coded as they will decode, so both
    // sides give the encoder the same pixels.
    let decoded: Vec<u8>;
    let (data, idx_bytes) = match near {
        0 => (&file.data[..], idx_bytes),
        _ => {
            let mut out = idx::header(&file.dims);
            out.extend(file.data.iter().map(|&b| pixels.decoded(b)));
            decoded = out;
            (&decoded[decoded.len() - file.data.len()..], &decoded[..])
        }
    };
    let images: Vec<&[u8]> = data.chunks_exact(image_len).collect();
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
        (Pixels::Levels { near, .. }, l) if l.is_levels() => {
            Pixels::for_data(l, &[])?.with_near(near)?
        }
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
