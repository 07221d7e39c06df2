//! Image grids as PNG files, as torchvision's `save_image` draws them.

use std::path::Path;

use deepgen_tensor::Tensor;

use crate::{Error, Result};

/// Grid layout and value mapping (torchvision's defaults: 8 per row, 2 px padding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridOptions {
    /// Images per row.
    pub nrow: usize,
    /// Pixels between images and around the grid.
    pub padding: usize,
    /// Value of the padding, in output units [0, 1].
    pub pad_value: f32,
    /// The input values mapped to black and white; values outside are clamped.
    pub range: (f32, f32),
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            nrow: 8,
            padding: 2,
            pad_value: 0.0,
            range: (0.0, 1.0),
        }
    }
}

/// Lays out images [n, c, h, w] (c = 1 or 3) in a grid of 8-bit pixels:
/// returns (width, height, channels, bytes).
pub fn grid_pixels(
    images: &Tensor<f32>,
    opts: GridOptions,
) -> Result<(usize, usize, usize, Vec<u8>)> {
    let &[n, c, h, w] = images.shape() else {
        return Err(Error::Invalid {
            op: "save_grid",
            msg: format!("expected [n, c, h, w], got {:?}", images.shape()),
        });
    };
    if !(c == 1 || c == 3) || n == 0 || opts.nrow == 0 || opts.range.1 <= opts.range.0 {
        return Err(Error::Invalid {
            op: "save_grid",
            msg: format!("need 1 or 3 channels, at least one image, nrow > 0 and a range lo < hi; got {:?}, {opts:?}", images.shape()),
        });
    }
    let cols = opts.nrow.min(n);
    let rows = n.div_ceil(cols);
    let p = opts.padding;
    let (gw, gh) = (cols * (w + p) + p, rows * (h + p) + p);
    let to_byte = |v: f32| ((v.clamp(0.0, 1.0) * 255.0) + 0.5) as u8;
    let mut out = vec![to_byte(opts.pad_value); gw * gh * c];
    let data = images.contiguous().to_vec();
    let (lo, hi) = opts.range;
    for (i, img) in data.chunks_exact(c * h * w).enumerate() {
        let (x0, y0) = (p + (i % cols) * (w + p), p + (i / cols) * (h + p));
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let v = (img[ch * h * w + y * w + x] - lo) / (hi - lo);
                    out[((y0 + y) * gw + x0 + x) * c + ch] = to_byte(v);
                }
            }
        }
    }
    Ok((gw, gh, c, out))
}

/// Writes images [n, c, h, w] as one PNG grid (grayscale or RGB), atomically.
pub fn save_grid(path: &Path, images: &Tensor<f32>, opts: GridOptions) -> Result<()> {
    let (w, h, c, pixels) = grid_pixels(images, opts)?;
    write_png(path, w, h, c, &pixels)
}

/// Writes 8-bit pixels (row-major, `c` = 1 gray or 3 RGB channels
/// interleaved) as a PNG file, atomically.
pub fn write_png(path: &Path, w: usize, h: usize, c: usize, pixels: &[u8]) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(if c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        enc.set_depth(png::BitDepth::Eight);
        let png_err = |e: png::EncodingError| Error::Invalid {
            op: "write_png",
            msg: e.to_string(),
        };
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(pixels).map_err(png_err)?;
    }
    crate::run::write_file(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_images_with_padding() {
        let imgs = Tensor::from_vec(vec![1.0, 0.5, 0.0, 0.25], &[4, 1, 1, 1]).unwrap();
        let (w, h, c, px) = grid_pixels(
            &imgs,
            GridOptions {
                nrow: 2,
                padding: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((w, h, c), (5, 5, 1));
        let at = |x: usize, y: usize| px[y * w + x];
        assert_eq!([at(1, 1), at(3, 1), at(1, 3), at(3, 3)], [255, 128, 0, 64]);
        assert_eq!(px[0], 0);
        let signed = grid_pixels(
            &imgs,
            GridOptions {
                range: (-1.0, 1.0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(signed.3[2 * 14 + 2], 255);
        assert!(grid_pixels(&Tensor::zeros(&[2, 2, 3, 3]), GridOptions::default()).is_err());
    }
}
