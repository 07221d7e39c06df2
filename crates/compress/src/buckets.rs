//! Latents discretised into buckets of equal mass under the prior N(0, 1)
//! (Townsend et al. 2019, section 3.2): every bucket is equally likely under
//! the prior, so the prior codes a bucket in exactly `bits` bits, and the
//! posterior N(mu, sigma^2) gives each bucket the mass between its edges.
//! The decoder sees the bucket's centre (the prior's median within it).

use probability::distribution::{Distribution, Gaussian, Inverse};

use crate::{Error, Result};

/// The buckets of one latent dimension (all dimensions share them).
#[derive(Debug, Clone)]
pub struct Buckets {
    bits: u8,
    /// `count + 1` edges, -inf first and +inf last.
    edges: Vec<f64>,
    centres: Vec<f32>,
}

impl Buckets {
    /// `2^bits` buckets; `bits` in 1..=16 (more than 2^16 buckets would
    /// not fit constriction's 24-bit probabilities with room to spare).
    pub fn new(bits: u8) -> Result<Self> {
        if !(1..=16).contains(&bits) {
            return Err(Error::Invalid(format!(
                "latent bucket bits must be in 1..=16, got {bits}"
            )));
        }
        let count = 1usize << bits;
        let normal = Gaussian::new(0.0, 1.0);
        let quantile = |p: f64| normal.inverse(p);
        let mut edges = vec![f64::NEG_INFINITY];
        edges.extend((1..count).map(|j| quantile(j as f64 / count as f64)));
        edges.push(f64::INFINITY);
        let centres = (0..count)
            .map(|j| quantile((j as f64 + 0.5) / count as f64) as f32)
            .collect();
        Ok(Buckets {
            bits,
            edges,
            centres,
        })
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    pub fn count(&self) -> usize {
        self.centres.len()
    }

    /// The latent value the decoder sees for bucket `j`.
    pub fn centre(&self, j: usize) -> f32 {
        self.centres[j]
    }

    /// The mass N(mu, sigma^2) puts on each bucket, into `out`.
    pub fn posterior(&self, mu: f64, sigma: f64, out: &mut Vec<f64>) {
        let q = Gaussian::new(mu, sigma);
        let cdf = |x: f64| match x {
            f64::NEG_INFINITY => 0.0,
            f64::INFINITY => 1.0,
            x => q.distribution(x),
        };
        out.clear();
        out.extend(
            self.edges
                .windows(2)
                .map(|e| (cdf(e[1]) - cdf(e[0])).max(0.0)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prior_puts_equal_mass_on_every_bucket() {
        let b = Buckets::new(4).unwrap();
        let mut mass = Vec::new();
        b.posterior(0.0, 1.0, &mut mass);
        assert_eq!(mass.len(), 16);
        for m in &mass {
            assert!((m - 1.0 / 16.0).abs() < 1e-12, "{mass:?}");
        }
    }

    #[test]
    fn centres_are_symmetric_and_increasing() {
        let b = Buckets::new(3).unwrap();
        for j in 0..8 {
            assert!((b.centre(j) + b.centre(7 - j)).abs() < 1e-6);
        }
        assert!((1..8).all(|j| b.centre(j) > b.centre(j - 1)));
    }

    #[test]
    fn a_narrow_posterior_concentrates_on_its_bucket() {
        let b = Buckets::new(8).unwrap();
        let mut mass = Vec::new();
        b.posterior(b.centre(200) as f64, 1e-4, &mut mass);
        assert!(mass[200] > 0.999, "{}", mass[200]);
        assert!((mass.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn bucket_bits_outside_1_to_16_are_refused() {
        assert!(Buckets::new(0).is_err());
        assert!(Buckets::new(17).is_err());
    }
}
