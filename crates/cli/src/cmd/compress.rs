//! `deepgen compress` and `deepgen decompress`: lossless bits-back coding
//! of IDX image files with a trained VAE, or lossy coding with a trained
//! codec (deepgen-compress).

use std::path::{Path, PathBuf};
use std::time::Instant;

use deepgen_cli::{Error, Result};
use deepgen_compress::{compress_named, sha256, Settings, DEFAULT_BUCKET_BITS, MAX_NEAR};
use deepgen_vae::Vae;

use super::sample::check_finite;

#[derive(clap::Args)]
pub struct CompressArgs {
    /// A model.safetensors written by `train vae` with a Bernoulli decoder
    /// (for binarised images) or a discretised logistic one (8-bit images),
    /// or a codec's (`--arch codec`: lossy)
    #[arg(long)]
    checkpoint: PathBuf,
    /// Latent buckets per dimension, as bits: 2^bits buckets of equal prior mass
    #[arg(long, default_value_t = DEFAULT_BUCKET_BITS, value_parser = clap::value_parser!(u8).range(1..=16))]
    latent_bits: u8,
    /// Near-lossless: every pixel decodes within this many levels of the
    /// original (JPEG-LS's NEAR; 0 is lossless), at fewer bits. 8-bit
    /// images under a discretised logistic decoder only
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=MAX_NEAR as i64))]
    near: u8,
    /// An IDX file of 8-bit images shaped as the model's (raw or gzip), or
    /// a folder of PNGs of that shape (8-bit gray, or RGB for 3 channels)
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
    /// The IDX file to write (the original byte for byte; a codec's
    /// reconstructions), or for a folder's file the folder to create
    /// (the PNGs under their names, pixel for pixel)
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
    let (raw, names) = match a.input.is_dir() {
        true => png::read_folder(&a.input, model.image_shape())?,
        false => (deepgen_data::idx::read_maybe_gzip(&a.input)?, Vec::new()),
    };
    let start = Instant::now();
    let settings = Settings {
        bucket_bits: a.latent_bits,
        near: a.near,
    };
    let (file, rate) = compress_named(&model, hash, &a.input, &raw, settings, names)
        .map_err(|e| Error::Compress(Box::new(e)))?;
    let seconds = start.elapsed().as_secs_f64();
    write(&a.output, &file)?;
    let n = rate.per_image.len();
    let pixels = model.image_shape().iter().product::<usize>() * n;
    let per_pixel = 8.0 * file.len() as f64 / pixels as f64;
    if model.is_codec() {
        println!(
            "{n} images, {} -> {} bytes: {per_pixel:.4} bits per pixel, lossy \
             (decompression gives the codec's reconstructions); {:.1} images/s",
            raw.len(),
            file.len(),
            n as f64 / seconds
        );
        return Ok(());
    }
    let rest: f64 = rate.per_image.iter().skip(1).sum();
    let exactness = match a.near {
        0 => String::new(),
        k => format!(", near-lossless (every pixel within {k} of the original)"),
    };
    println!(
        "{n} images, {} -> {} bytes: {:.4} bits per dimension \
         ({:.4} without the first image's {:.0} initial bits){exactness}; {:.1} images/s",
        raw.len(),
        file.len(),
        per_pixel,
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
    let (idx, names) = deepgen_compress::decompress(&model, &hash, &file)
        .map_err(|e| decoding_error(&a.input, e))?;
    let seconds = start.elapsed().as_secs_f64();
    match names.is_empty() {
        true => write(&a.output, &idx)?,
        false => png::write_folder(&a.output, &idx, model.image_shape(), &names)?,
    }
    let images = deepgen_data::idx::parse(&a.output, &idx)?.dims[0];
    println!(
        "{images} images, {} -> {} bytes; {:.1} images/s",
        file.len(),
        idx.len(),
        images as f64 / seconds
    );
    Ok(())
}

/// Folders of PNG files as images: read exactly (no resizing or
/// conversion), written back under their names.
mod png {
    use std::path::Path;

    use deepgen_cli::{Error, Result};
    use image::{ColorType, DynamicImage, ImageBuffer};

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The IDX bytes of the `*.png` files in `dir` (sorted by name) and
    /// their names; every image must be `shape` ([1, h, w] 8-bit gray or
    /// [3, h, w] 8-bit RGB).
    pub fn read_folder(dir: &Path, shape: &[usize]) -> Result<(Vec<u8>, Vec<String>)> {
        let &[c, h, w] = shape else {
            return Err(Error::Usage(format!(
                "a model of shape {shape:?} takes no PNGs"
            )));
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(io(dir))?;
        paths.retain(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")));
        paths.sort();
        if paths.is_empty() {
            return Err(Error::Usage(format!("{}: no .png files", dir.display())));
        }
        let mut data = deepgen_data::idx::header(&[paths.len(), c, h, w]);
        let mut names = Vec::with_capacity(paths.len());
        for p in &paths {
            data.extend(read_png(p, c, h, w)?);
            let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                Error::Usage(format!("{}: the file name is not UTF-8", p.display()))
            })?;
            names.push(name.to_string());
        }
        Ok((data, names))
    }

    /// The pixels of one PNG as the model takes them (channels first), when
    /// it is exactly c x h x w.
    fn read_png(path: &Path, c: usize, h: usize, w: usize) -> Result<Vec<u8>> {
        let bad = |msg: String| Error::Usage(format!("{}: {msg}", path.display()));
        let img = image::open(path).map_err(|e| bad(format!("not a readable PNG ({e})")))?;
        let want = if c == 3 {
            ColorType::Rgb8
        } else {
            ColorType::L8
        };
        if img.color() != want || (img.width() as usize, img.height() as usize) != (w, h) {
            return Err(bad(format!(
                "{:?} {}x{}; the model takes {want:?} {w}x{h} (images are coded exactly, \
                 not converted or resized)",
                img.color(),
                img.width(),
                img.height()
            )));
        }
        let px = img.into_bytes();
        Ok((0..c)
            .flat_map(|ch| px.iter().skip(ch).step_by(c).copied())
            .collect())
    }

    /// Writes the images of IDX bytes `idx` as PNGs named `names` into a
    /// new folder `dir`: built beside it and renamed into place, so an
    /// interrupted run leaves no half folder.
    pub fn write_folder(dir: &Path, idx: &[u8], shape: &[usize], names: &[String]) -> Result<()> {
        if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
            return Err(Error::Usage(format!(
                "{}: the folder exists and is not empty",
                dir.display()
            )));
        }
        let (h, w) = (shape[1] as u32, shape[2] as u32);
        let image_len = shape.iter().product::<usize>();
        let building = dir.with_extension(format!("partial-{}", std::process::id()));
        std::fs::create_dir_all(&building).map_err(io(&building))?;
        let pixels = &idx[idx.len() - image_len * names.len()..];
        let plane = (h * w) as usize;
        for (name, px) in names.iter().zip(pixels.chunks_exact(image_len)) {
            // Channels first as coded, channels last in the PNG.
            let interleaved = (0..image_len).map(|i| px[(i % shape[0]) * plane + i / shape[0]]);
            let px: Vec<u8> = interleaved.collect();
            let img = match shape[0] {
                3 => DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, px).expect("3 h w")),
                _ => DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, px).expect("h w")),
            };
            let path = building.join(name);
            img.save_with_format(&path, image::ImageFormat::Png)
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        }
        std::fs::rename(&building, dir).map_err(io(dir))
    }
}
