//! `deepgen compress` and `deepgen decompress`: lossless bits-back coding
//! of IDX image files with a trained VAE (deepgen-compress).

use std::path::{Path, PathBuf};
use std::time::Instant;

use deepgen_cli::{Error, Result};
use deepgen_compress::{compress_idx, decompress_idx, sha256, DEFAULT_BUCKET_BITS};
use deepgen_vae::Vae;

use super::sample::check_finite;

#[derive(clap::Args)]
pub struct CompressArgs {
    /// A model.safetensors written by `train vae` with a Bernoulli decoder
    /// (for binarised images) or a discretised logistic one (8-bit images)
    #[arg(long)]
    checkpoint: PathBuf,
    /// Latent buckets per dimension, as bits: 2^bits buckets of equal prior mass
    #[arg(long, default_value_t = DEFAULT_BUCKET_BITS, value_parser = clap::value_parser!(u8).range(1..=16))]
    latent_bits: u8,
    /// An IDX file of 8-bit images shaped as the model's (raw or gzip)
    input: PathBuf,
    /// The compressed file to write
    output: PathBuf,
}

#[derive(clap::Args)]
pub struct DecompressArgs {
    /// The checkpoint the file was compressed with
    #[arg(long)]
    checkpoint: PathBuf,
    /// A file written by `deepgen compress`
    input: PathBuf,
    /// The IDX file to write (the original, byte for byte, uncompressed)
    output: PathBuf,
}

/// The model and the SHA-256 of its checkpoint file, which names it in
/// the compressed file.
fn model(checkpoint: &Path) -> Result<(Vae, [u8; 32])> {
    let bytes = read(checkpoint)?;
    let model = Vae::from_checkpoint(checkpoint)?;
    check_finite(&model, checkpoint)?;
    Ok((model, sha256(&bytes)))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn decoding_error(path: &Path, e: deepgen_compress::Error) -> Error {
    Error::Decompress {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// Writes whole or not at all: an interrupted run leaves no half file.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    deepgen_tensor::io::write_atomic(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub fn compress(a: CompressArgs) -> Result<()> {
    let (model, hash) = model(&a.checkpoint)?;
    let raw = deepgen_data::idx::read_maybe_gzip(&a.input)?;
    let start = Instant::now();
    let (file, rate) = compress_idx(&model, hash, &a.input, &raw, a.latent_bits)
        .map_err(|e| Error::Compress(Box::new(e)))?;
    let seconds = start.elapsed().as_secs_f64();
    write(&a.output, &file)?;
    let n = rate.per_image.len();
    let pixels = model.image_shape().iter().product::<usize>() * n;
    let rest: f64 = rate.per_image.iter().skip(1).sum();
    println!(
        "{n} images, {} -> {} bytes: {:.4} bits per dimension \
         ({:.4} without the first image's {:.0} initial bits); {:.1} images/s",
        raw.len(),
        file.len(),
        8.0 * file.len() as f64 / pixels as f64,
        rest / (pixels - pixels / n.max(1)).max(1) as f64,
        rate.initial_bits,
        n as f64 / seconds
    );
    Ok(())
}

pub fn decompress(a: DecompressArgs) -> Result<()> {
    let (model, hash) = model(&a.checkpoint)?;
    let file = read(&a.input)?;
    let start = Instant::now();
    let idx = decompress_idx(&model, &hash, &file).map_err(|e| decoding_error(&a.input, e))?;
    let seconds = start.elapsed().as_secs_f64();
    write(&a.output, &idx)?;
    let images = deepgen_data::idx::parse(&a.output, &idx)?.dims[0];
    println!(
        "{images} images, {} -> {} bytes; {:.1} images/s",
        file.len(),
        idx.len(),
        images as f64 / seconds
    );
    Ok(())
}
