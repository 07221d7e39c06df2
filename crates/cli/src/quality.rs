//! Image quality of generated digits, judged by the classifier: the
//! Fréchet distance between the classifier's penultimate features of
//! generated and real images (FID's formula with LeNet features in place
//! of Inception's, so the numbers compare runs on MNIST-like data, not
//! published FIDs), and the histogram of predicted classes with its entropy
//! (mode coverage over the ten digits).

use std::path::Path;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_nn::{Module, Sequential};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::{Error, Result};

/// Mean `[d]` and covariance `[d, d]` (unbiased, as numpy's `np.cov`) of rows.
pub fn mean_and_covariance(rows: &[Vec<f64>]) -> Result<(DVector<f64>, DMatrix<f64>)> {
    let n = rows.len();
    let d = rows.first().map_or(0, |r| r.len());
    if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
        return Err(Error::Usage(format!(
            "need at least 2 feature rows of one length, got {n}"
        )));
    }
    let x = DMatrix::from_fn(n, d, |i, j| rows[i][j]);
    let mean = x.row_mean().transpose();
    let centred = DMatrix::from_fn(n, d, |i, j| x[(i, j)] - mean[j]);
    let cov = centred.transpose() * &centred / (n as f64 - 1.0);
    Ok((mean, cov))
}

/// The square root of a symmetric positive semi-definite matrix (negative
/// eigenvalues from rounding are taken as 0).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let eig = SymmetricEigen::new(sym);
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// Fréchet distance between N(mu1, c1) and N(mu2, c2):
/// |mu1 - mu2|^2 + tr(c1 + c2 - 2 (c1^1/2 c2 c1^1/2)^1/2). The symmetric
/// form of the cross term keeps every matrix symmetric, so an
/// eigendecomposition gives the roots without complex parts.
pub fn frechet_distance(
    mu1: &DVector<f64>,
    c1: &DMatrix<f64>,
    mu2: &DVector<f64>,
    c2: &DMatrix<f64>,
) -> f64 {
    let s1 = sqrt_psd(c1);
    let cross = sqrt_psd(&(&s1 * c2 * &s1));
    (mu1 - mu2).norm_squared() + c1.trace() + c2.trace() - 2.0 * cross.trace()
}

/// Penultimate-layer features (the 128 ReLU units) and predicted classes
/// of images [n, 1, 28, 28] with values in [0, 1], in batches of 500.
pub fn features(classifier: &Sequential, images: &Tensor) -> Result<(Vec<Vec<f64>>, Vec<usize>)> {
    classifier.eval();
    let layers = classifier.layers();
    let n = images.shape().first().copied().unwrap_or(0);
    let (mut feats, mut classes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for start in (0..n).step_by(500) {
        let x = Var::constant(images.narrow(0, start, 500.min(n - start))?.contiguous());
        let (h, logits) = no_grad(|| -> Result<_> {
            let mut h = x;
            for layer in &layers[..layers.len() - 1] {
                h = layer.forward(&h)?;
            }
            let logits = layers[layers.len() - 1].forward(&h)?;
            Ok((h, logits))
        })?;
        let d = h.shape()[1];
        let v = h.value().to_vec();
        feats.extend(
            v.chunks_exact(d)
                .map(|r| r.iter().map(|&x| x as f64).collect()),
        );
        classes.extend(logits.argmax(1)?);
    }
    Ok((feats, classes))
}

/// What `deepgen eval gan` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Quality {
    /// Fréchet distance of classifier features, generated vs reference.
    pub frechet: f64,
    /// The same distance from real images (as many as generated, from
    /// elsewhere in the data) to the reference: what a perfect generator
    /// would score at this sample size.
    pub real_baseline: f64,
    /// Generated images per predicted class.
    pub histogram: Vec<usize>,
    /// Entropy of the predicted classes in nats (ln 10 = 2.303 when uniform).
    pub entropy: f64,
}

/// Judges `generated` against `reference`, with `real` (other real
/// images, ideally as many as generated) as the baseline; all
/// [n, 1, 28, 28] in [0, 1].
pub fn judge(
    classifier: &Sequential,
    generated: &Tensor,
    reference: &Tensor,
    real: &Tensor,
) -> Result<Quality> {
    let (fg, classes) = features(classifier, generated)?;
    let (fr, _) = features(classifier, reference)?;
    let (fb, _) = features(classifier, real)?;
    let (mg, cg) = mean_and_covariance(&fg)?;
    let (mr, cr) = mean_and_covariance(&fr)?;
    let (mb, cb) = mean_and_covariance(&fb)?;
    let classes_n = 10;
    let mut histogram = vec![0usize; classes_n];
    for c in classes {
        histogram[c.min(classes_n - 1)] += 1;
    }
    let total = histogram.iter().sum::<usize>().max(1) as f64;
    let entropy = histogram
        .iter()
        .filter(|&&h| h > 0)
        .map(|&h| {
            let p = h as f64 / total;
            -p * p.ln()
        })
        .sum();
    Ok(Quality {
        frechet: frechet_distance(&mg, &cg, &mr, &cr),
        real_baseline: frechet_distance(&mb, &cb, &mr, &cr),
        histogram,
        entropy,
    })
}

/// Images [n, 1, 28, 28] in [0, 1] from a samples file: `.idx` (8-bit, as
/// MNIST; `deepgen sample` and the PyTorch scripts write it) or
/// `.safetensors` (the float tensor `images`; values in [-1, 1] are mapped
/// to [0, 1] when any is negative, as a Tanh generator's are).
pub fn read_samples(path: &Path) -> Result<Tensor> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bad = |msg: String| Error::Usage(format!("{}: {msg}", path.display()));
    let images = match ext {
        "safetensors" => {
            let (tensors, _) = deepgen_nn::checkpoint::load_tensors(path)?;
            let t = tensors
                .iter()
                .find(|(n, _)| n == "images")
                .or(tensors.first())
                .and_then(|(_, t)| t.to_float::<f32>())
                .ok_or_else(|| bad("no float tensor \"images\"".into()))?;
            let v = t.to_vec();
            if v.iter().any(|&x| x < 0.0) {
                let shape = t.shape().to_vec();
                Tensor::from_vec(v.iter().map(|x| (x + 1.0) * 0.5).collect(), &shape)?
            } else {
                t
            }
        }
        _ => {
            let idx = deepgen_data::idx::read(path)?;
            let scaled = idx.data.iter().map(|&b| b as f32 / 255.0).collect();
            Tensor::from_vec(scaled, &idx.dims)?
        }
    };
    let n = images.shape().first().copied().unwrap_or(0);
    if images.numel() != n * 784 || n < 2 {
        return Err(bad(format!(
            "expected at least 2 images of 28x28, got shape {:?}",
            images.shape()
        )));
    }
    Ok(images.reshape(&[n, 1, 28, 28])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_distance_of_diagonal_gaussians_has_the_closed_form() {
        let mu1 = DVector::from_vec(vec![0.0, 1.0, 2.0]);
        let mu2 = DVector::from_vec(vec![1.0, 1.0, 0.0]);
        let (a, b) = ([1.0, 4.0, 0.25], [9.0, 1.0, 0.25]);
        let c1 = DMatrix::from_diagonal(&DVector::from_row_slice(&a));
        let c2 = DMatrix::from_diagonal(&DVector::from_row_slice(&b));
        // |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2 = 5 + (4 + 1 + 0)
        let fd = frechet_distance(&mu1, &c1, &mu2, &c2);
        assert!((fd - 10.0).abs() < 1e-9, "{fd}");
    }

    #[test]
    fn frechet_distance_is_zero_for_equal_full_covariances_and_symmetric() {
        let a = DMatrix::from_row_slice(3, 3, &[2.0, 0.5, 0.1, 0.5, 1.0, 0.3, 0.1, 0.3, 0.7]);
        let b = DMatrix::from_row_slice(3, 3, &[1.0, -0.2, 0.0, -0.2, 2.0, 0.4, 0.0, 0.4, 0.5]);
        let m = DVector::from_vec(vec![0.3, -0.1, 0.2]);
        let z = DVector::zeros(3);
        assert!(frechet_distance(&m, &a, &m, &a).abs() < 1e-9);
        let (ab, ba) = (
            frechet_distance(&m, &a, &z, &b),
            frechet_distance(&z, &b, &m, &a),
        );
        assert!((ab - ba).abs() < 1e-9 && ab > 0.0, "{ab} vs {ba}");
    }

    #[test]
    fn covariance_is_numpys_unbiased_estimate() {
        let rows = vec![vec![1.0, 2.0], vec![3.0, 6.0], vec![5.0, 7.0]];
        let (m, c) = mean_and_covariance(&rows).unwrap();
        assert_eq!(m.as_slice(), &[3.0, 5.0]);
        // np.cov([[1,3,5],[2,6,7]]) = [[4, 5], [5, 7]]
        assert_eq!(c.as_slice(), &[4.0, 5.0, 5.0, 7.0]);
        assert!(mean_and_covariance(&rows[..1]).is_err());
    }
}
