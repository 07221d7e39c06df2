//! The Dataset trait, the in-memory data set every loader fills, and index-range subsets.

use std::sync::Arc;

use deepgen_tensor::Tensor;

use crate::{Error, Result};

/// How the loader maps stored values to the tensor it hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// 8-bit pixels / 255; float data unchanged (synthetic images are in [0, 1] already).
    #[default]
    ZeroOne,
    /// 8-bit pixels * 2 / 255 - 1; float data 2x - 1 (for tanh generators).
    MinusOneOne,
    /// Values as stored (8-bit pixels as 0..255).
    Raw,
}

impl Scale {
    /// The value of 8-bit `v` (divided by 255, as torchvision's ToTensor).
    fn byte(self, v: u8) -> f32 {
        match self {
            Scale::ZeroOne => v as f32 / 255.0,
            Scale::MinusOneOne => v as f32 * 2.0 / 255.0 - 1.0,
            Scale::Raw => v as f32,
        }
    }

    /// The affine map (a, b): x -> a x + b of float data.
    fn float(self) -> (f32, f32) {
        match self {
            Scale::ZeroOne | Scale::Raw => (1.0, 0.0),
            Scale::MinusOneOne => (2.0, -1.0),
        }
    }
}

/// A data set: items of one shape, optionally labelled.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one item: `[c, h, w]` for images, `[2]` for 2-D points.
    fn item_shape(&self) -> Vec<usize>;

    /// Number of classes, when the items are labelled.
    fn num_classes(&self) -> Option<usize>;

    /// The label of item `i`, when labelled.
    fn label(&self, i: usize) -> Option<usize>;

    /// Writes items `indices` one after another into `out`
    /// (`indices.len() * item size` values), scaled by `scale`.
    fn gather(&self, indices: &[usize], scale: Scale, out: &mut [f32]) -> Result<()>;

    /// Item `i` as a tensor of the item shape, with its label.
    fn get(&self, i: usize, scale: Scale) -> Result<(Tensor<f32>, Option<usize>)> {
        let shape = self.item_shape();
        let mut data = vec![0.0; shape.iter().product()];
        self.gather(&[i], scale, &mut data)?;
        Ok((Tensor::from_vec(data, &shape)?, self.label(i)))
    }
}

/// Stored item values.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit values (images as stored on disk).
    U8(Vec<u8>),
    /// Float values (synthetic images in [0, 1], 2-D points).
    F32(Vec<f32>),
}

impl Pixels {
    fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }
}

/// Items held in memory, one after another.
#[derive(Debug, Clone)]
pub struct InMemory {
    pixels: Pixels,
    item_shape: Vec<usize>,
    labels: Option<Vec<u16>>,
    num_classes: Option<usize>,
}

impl InMemory {
    /// Items of `item_shape` stored back to back in `pixels`; `labels`
    /// (one per item, each below `num_classes`) when labelled.
    pub fn new(
        pixels: Pixels,
        item_shape: &[usize],
        labels: Option<(Vec<u16>, usize)>,
    ) -> Result<Self> {
        let item: usize = item_shape.iter().product();
        if item == 0 || !pixels.len().is_multiple_of(item) {
            return Err(Error::Invalid {
                op: "dataset",
                msg: format!(
                    "{} values do not split into items of shape {item_shape:?}",
                    pixels.len()
                ),
            });
        }
        let n = pixels.len() / item;
        if let Some((l, classes)) = &labels {
            if l.len() != n {
                return Err(Error::Invalid {
                    op: "dataset",
                    msg: format!("{n} items but {} labels", l.len()),
                });
            }
            if let Some(bad) = l.iter().find(|&&c| c as usize >= *classes) {
                return Err(Error::Invalid {
                    op: "dataset",
                    msg: format!("label {bad} is not below {classes} classes"),
                });
            }
        }
        let (labels, num_classes) = match labels {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        Ok(InMemory {
            pixels,
            item_shape: item_shape.to_vec(),
            labels,
            num_classes,
        })
    }

    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }

    fn item_len(&self) -> usize {
        self.item_shape.iter().product()
    }
}

impl Dataset for InMemory {
    fn len(&self) -> usize {
        self.pixels.len() / self.item_len()
    }

    fn item_shape(&self) -> Vec<usize> {
        self.item_shape.clone()
    }

    fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    fn label(&self, i: usize) -> Option<usize> {
        self.labels
            .as_ref()
            .and_then(|l| l.get(i))
            .map(|&c| c as usize)
    }

    fn gather(&self, indices: &[usize], scale: Scale, out: &mut [f32]) -> Result<()> {
        let item = self.item_len();
        let n = self.len();
        if out.len() != indices.len() * item {
            return Err(Error::Invalid {
                op: "gather",
                msg: format!("{} values for {} items", out.len(), indices.len()),
            });
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Invalid {
                op: "gather",
                msg: format!("index {bad} is not below {n}"),
            });
        }
        match &self.pixels {
            Pixels::U8(src) => {
                let table: [f32; 256] = std::array::from_fn(|v| scale.byte(v as u8));
                for (dst, &i) in out.chunks_exact_mut(item).zip(indices) {
                    for (d, &s) in dst.iter_mut().zip(&src[i * item..(i + 1) * item]) {
                        *d = table[s as usize];
                    }
                }
            }
            Pixels::F32(src) => {
                let (a, b) = scale.float();
                for (dst, &i) in out.chunks_exact_mut(item).zip(indices) {
                    for (d, &s) in dst.iter_mut().zip(&src[i * item..(i + 1) * item]) {
                        *d = a * s + b;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Another data set with every pixel thresholded at half its range: 1 where
/// the value in [0, 1] is above 0.5 (8-bit: 128 and up), else 0 — the
/// fixed binarisation of "binarised MNIST" that Bernoulli decoders and
/// lossless coders of binary images take. Scales then apply to 0 and 1
/// (`Raw` gives 0 and 255).
#[derive(Clone)]
pub struct Binarized {
    inner: Arc<dyn Dataset>,
}

impl Binarized {
    pub fn new(inner: Arc<dyn Dataset>) -> Self {
        Binarized { inner }
    }
}

impl Dataset for Binarized {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn item_shape(&self) -> Vec<usize> {
        self.inner.item_shape()
    }

    fn num_classes(&self) -> Option<usize> {
        self.inner.num_classes()
    }

    fn label(&self, i: usize) -> Option<usize> {
        self.inner.label(i)
    }

    fn gather(&self, indices: &[usize], scale: Scale, out: &mut [f32]) -> Result<()> {
        self.inner.gather(indices, Scale::ZeroOne, out)?;
        let (off, on) = match scale {
            Scale::ZeroOne => (0.0, 1.0),
            Scale::MinusOneOne => (-1.0, 1.0),
            Scale::Raw => (0.0, 255.0),
        };
        for v in out.iter_mut() {
            *v = if *v > 0.5 { on } else { off };
        }
        Ok(())
    }
}

/// Items `range` of another data set (a held-out split taken by index range).
#[derive(Clone)]
pub struct Subset {
    inner: Arc<dyn Dataset>,
    start: usize,
    len: usize,
}

impl Subset {
    pub fn new(inner: Arc<dyn Dataset>, range: std::ops::Range<usize>) -> Result<Self> {
        if range.start > range.end || range.end > inner.len() {
            return Err(Error::Invalid {
                op: "subset",
                msg: format!("range {range:?} is not inside 0..{}", inner.len()),
            });
        }
        Ok(Subset {
            inner,
            start: range.start,
            len: range.end - range.start,
        })
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.len
    }

    fn item_shape(&self) -> Vec<usize> {
        self.inner.item_shape()
    }

    fn num_classes(&self) -> Option<usize> {
        self.inner.num_classes()
    }

    fn label(&self, i: usize) -> Option<usize> {
        (i < self.len)
            .then(|| self.inner.label(self.start + i))
            .flatten()
    }

    fn gather(&self, indices: &[usize], scale: Scale, out: &mut [f32]) -> Result<()> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len) {
            return Err(Error::Invalid {
                op: "gather",
                msg: format!("index {bad} is not below {}", self.len),
            });
        }
        let shifted: Vec<usize> = indices.iter().map(|i| i + self.start).collect();
        self.inner.gather(&shifted, scale, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_scales_bytes_and_subsets_shift_indices() {
        let d = InMemory::new(
            Pixels::U8(vec![0, 255, 51, 102]),
            &[2],
            Some((vec![1, 0], 2)),
        )
        .unwrap();
        let mut out = vec![0.0; 4];
        d.gather(&[1, 0], Scale::ZeroOne, &mut out).unwrap();
        assert_eq!(out, vec![0.2, 0.4, 0.0, 1.0]);
        d.gather(&[0, 1], Scale::MinusOneOne, &mut out).unwrap();
        assert_eq!(out[..2], [-1.0, 1.0]);
        let (item, label) = d.get(1, Scale::Raw).unwrap();
        assert_eq!((item.to_vec(), label), (vec![51.0, 102.0], Some(0)));
        let s = Subset::new(Arc::new(d), 1..2).unwrap();
        assert_eq!((s.len(), s.label(0)), (1, Some(0)));
        assert!(s.gather(&[1], Scale::Raw, &mut out[..2]).is_err());
        assert!(InMemory::new(Pixels::U8(vec![0; 5]), &[2], None).is_err());
        assert!(InMemory::new(Pixels::U8(vec![0; 4]), &[2], Some((vec![0, 3], 3))).is_err());
    }

    #[test]
    fn binarized_thresholds_at_half_the_range() {
        let d = InMemory::new(Pixels::U8(vec![0, 127, 128, 255]), &[4], None).unwrap();
        let b = Binarized::new(Arc::new(d));
        let mut out = vec![0.0; 4];
        b.gather(&[0], Scale::ZeroOne, &mut out).unwrap();
        assert_eq!(out, vec![0.0, 0.0, 1.0, 1.0]);
        b.gather(&[0], Scale::Raw, &mut out).unwrap();
        assert_eq!(out, vec![0.0, 0.0, 255.0, 255.0]);
        b.gather(&[0], Scale::MinusOneOne, &mut out).unwrap();
        assert_eq!(out, vec![-1.0, -1.0, 1.0, 1.0]);
    }
}
