//! A folder of PNG / JPEG images, with optional class sub-folders.
//!
//! Images are resized so their shorter side is `size` and centre-cropped to
//! `size` x `size` (torchvision's Resize + CenterCrop), in grayscale or RGB,
//! and kept as 8-bit pixels. With sub-folders, each is a class (sorted by
//! name); without, the images are unlabelled.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::DynamicImage;

use crate::{Error, InMemory, Pixels, Result};

/// How to read an image folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderOptions {
    pub size: usize,
    pub rgb: bool,
    /// Skip unreadable images with a warning on stderr instead of failing.
    pub skip_unreadable: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            size: 64,
            rgb: true,
            skip_unreadable: false,
        }
    }
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    v.sort();
    Ok(v)
}

/// Resizes (shorter side to `size`) and centre-crops one decoded image.
fn fit(img: DynamicImage, size: usize, rgb: bool) -> Vec<u8> {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let scale = size as f64 / w.min(h);
    let (nw, nh) = (
        ((w * scale).round() as u32).max(size as u32),
        ((h * scale).round() as u32).max(size as u32),
    );
    let resized = img.resize_exact(nw, nh, FilterType::Triangle);
    let (x0, y0) = ((nw - size as u32) / 2, (nh - size as u32) / 2);
    let cropped = resized.crop_imm(x0, y0, size as u32, size as u32);
    let plane = size * size;
    if rgb {
        // Interleaved RGB to planar [3, size, size].
        let px = cropped.to_rgb8().into_raw();
        let mut out = vec![0u8; 3 * plane];
        for (i, p) in px.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = p[c];
            }
        }
        out
    } else {
        cropped.to_luma8().into_raw()
    }
}

/// Loads every image under `dir` (see the module docs).
pub fn load(dir: &Path, opts: FolderOptions) -> Result<InMemory> {
    if opts.size == 0 {
        return Err(Error::Invalid {
            op: "image_folder",
            msg: "size must be positive".into(),
        });
    }
    let entries = sorted_entries(dir)?;
    let classes: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let files: Vec<(PathBuf, Option<u16>)> = if classes.is_empty() {
        entries
            .iter()
            .filter(|p| is_image(p))
            .map(|p| (p.clone(), None))
            .collect()
    } else {
        let mut v = Vec::new();
        for (c, d) in classes.iter().enumerate() {
            v.extend(
                sorted_entries(d)?
                    .into_iter()
                    .filter(|p| is_image(p))
                    .map(|p| (p, Some(c as u16))),
            );
        }
        v
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (path, label) in files {
        match image::open(&path) {
            Ok(img) => {
                pixels.extend(fit(img, opts.size, opts.rgb));
                labels.extend(label);
            }
            Err(e) if opts.skip_unreadable => {
                eprintln!("warning: skipping {}: {e}", path.display())
            }
            Err(e) => {
                return Err(Error::BadFile {
                    path,
                    msg: format!("unreadable image: {e}"),
                })
            }
        }
    }
    if pixels.is_empty() {
        return Err(Error::BadFile {
            path: dir.to_path_buf(),
            msg: "no readable PNG or JPEG images".into(),
        });
    }
    let channels = if opts.rgb { 3 } else { 1 };
    let labels = (!classes.is_empty()).then_some((labels, classes.len()));
    InMemory::new(
        Pixels::U8(pixels),
        &[channels, opts.size, opts.size],
        labels,
    )
}
