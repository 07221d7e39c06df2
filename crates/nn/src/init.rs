//! Initialisers, as torch.nn.init defines them. Each returns a fresh tensor
//! drawn from the caller's generator; `fill_` replaces a Var's value with one.

use rand::Rng;

use crate::{Element, Error, Result, Tensor, Var};

/// `(fan_in, fan_out)` of a weight shape, as PyTorch computes them: for
/// `[out, in, k..]` fan_in = in * prod(k), fan_out = out * prod(k).
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::Invalid {
            op: "init",
            msg: format!("fan in and fan out need at least 2 dimensions, got {shape:?}"),
        });
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

/// The recommended gain for a nonlinearity (torch.nn.init.calculate_gain).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nonlinearity {
    Linear,
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu(f64),
}

impl Nonlinearity {
    pub fn gain(self) -> f64 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => 2f64.sqrt(),
            Nonlinearity::LeakyRelu(a) => (2.0 / (1.0 + a * a)).sqrt(),
        }
    }
}

/// Which fan kaiming initialisation preserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanMode {
    FanIn,
    FanOut,
}

fn fan(shape: &[usize], mode: FanMode) -> Result<f64> {
    let (fan_in, fan_out) = fans(shape)?;
    Ok(match mode {
        FanMode::FanIn => fan_in,
        FanMode::FanOut => fan_out,
    } as f64)
}

pub fn uniform<T: Element, R: Rng + ?Sized>(
    shape: &[usize],
    low: f64,
    high: f64,
    rng: &mut R,
) -> Tensor<T> {
    Tensor::rand_uniform(shape, T::of(low), T::of(high), rng)
}

pub fn normal<T: Element, R: Rng + ?Sized>(
    shape: &[usize],
    mean: f64,
    std: f64,
    rng: &mut R,
) -> Tensor<T> {
    Tensor::randn(shape, T::of(mean), T::of(std), rng)
}

/// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
pub fn xavier_uniform<T: Element, R: Rng + ?Sized>(
    shape: &[usize],
    gain: f64,
    rng: &mut R,
) -> Result<Tensor<T>> {
    let (fi, fo) = fans(shape)?;
    let b = gain * (6.0 / (fi + fo) as f64).sqrt();
    Ok(uniform(shape, -b, b, rng))
}

/// N(0, s^2) with s = gain * sqrt(2 / (fan_in + fan_out)).
pub fn xavier_normal<T: Element, R: Rng + ?Sized>(
    shape: &[usize],
    gain: f64,
    rng: &mut R,
) -> Result<Tensor<T>> {
    let (fi, fo) = fans(shape)?;
    Ok(normal(
        shape,
        0.0,
        gain * (2.0 / (fi + fo) as f64).sqrt(),
        rng,
    ))
}

/// U(-b, b) with b = gain * sqrt(3 / fan).
pub fn kaiming_uniform<T: Element, R: Rng + ?Sized>(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut R,
) -> Result<Tensor<T>> {
    let b = nonlinearity.gain() * (3.0 / fan(shape, mode)?).sqrt();
    Ok(uniform(shape, -b, b, rng))
}

/// N(0, s^2) with s = gain / sqrt(fan).
pub fn kaiming_normal<T: Element, R: Rng + ?Sized>(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut R,
) -> Result<Tensor<T>> {
    let s = nonlinearity.gain() / fan(shape, mode)?.sqrt();
    Ok(normal(shape, 0.0, s, rng))
}

/// PyTorch's default for Linear and Conv weights: kaiming_uniform with
/// a = sqrt(5), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn default_weight<T: Element, R: Rng + ?Sized>(
    shape: &[usize],
    rng: &mut R,
) -> Result<Tensor<T>> {
    kaiming_uniform(
        shape,
        FanMode::FanIn,
        Nonlinearity::LeakyRelu(5f64.sqrt()),
        rng,
    )
}

/// PyTorch's default for Linear and Conv biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
/// with fan_in taken from the weight's shape.
pub fn default_bias<T: Element, R: Rng + ?Sized>(
    weight_shape: &[usize],
    len: usize,
    rng: &mut R,
) -> Result<Tensor<T>> {
    let (fan_in, _) = fans(weight_shape)?;
    let b = if fan_in > 0 {
        1.0 / (fan_in as f64).sqrt()
    } else {
        0.0
    };
    Ok(uniform(&[len], -b, b, rng))
}

/// Takes a parameter of `shape` from the memory budget before it is
/// allocated ([`deepgen_tensor::budget::reserve`]), so a layer sized by a
/// flag or by checkpoint metadata fails with a message, not an abort.
pub fn reserve<T: Element>(what: &str, shape: &[usize]) -> Result<()> {
    Ok(deepgen_tensor::budget::reserve(
        what,
        shape,
        size_of::<T>(),
    )?)
}

/// Replaces a Var's value (a parameter's, say) with `value` of the same shape.
pub fn fill_<T: Element>(var: &Var<T>, value: Tensor<T>) -> Result<()> {
    Ok(var.set_value(value)?)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(fans(&[400, 784]).unwrap(), (784, 400));
        assert_eq!(fans(&[128, 64, 4, 4]).unwrap(), (1024, 2048));
        assert!(fans(&[3]).is_err());
    }

    #[test]
    fn default_weight_bound_is_one_over_sqrt_fan_in() {
        let w: Tensor<f64> = default_weight(&[50, 100], &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        let max = w.to_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(max <= 0.1 && max > 0.09, "{max}");
    }

    #[test]
    fn kaiming_normal_has_the_right_spread() {
        let w: Tensor<f64> = kaiming_normal(
            &[200, 300],
            FanMode::FanIn,
            Nonlinearity::Relu,
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .unwrap();
        let v = w.to_vec();
        let std = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
        assert!((std - (2.0f64 / 300.0).sqrt()).abs() < 0.003, "{std}");
    }
}
