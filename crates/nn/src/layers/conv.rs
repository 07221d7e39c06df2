use crate::export::{Attr, Graph};
use rand::Rng;

use crate::{init, Conv2dOptions, Element, Forward, Module, Result, Var};

/// Geometry of a Conv2d beyond its channel counts (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub bias: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: 0,
            dilation: 1,
            bias: true,
        }
    }
}

fn options(stride: usize, padding: usize, dilation: usize) -> Conv2dOptions {
    Conv2dOptions {
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [dilation; 2],
    }
}

fn add_channel_bias<T: Element>(y: Var<T>, bias: &Option<Var<T>>) -> Result<Var<T>> {
    match bias {
        Some(b) => {
            let c = b.shape()[0];
            Ok(y.add(&b.reshape(&[1, c, 1, 1])?)?)
        }
        None => Ok(y),
    }
}

/// 2-D convolution: `[n, in, h, w] -> [n, out, h', w']`; weight `[out, in, k, k]`.
///
/// ```
/// use deepgen_autograd::rand::SeedableRng;
/// use deepgen_autograd::rand_chacha::ChaCha8Rng;
/// use deepgen_nn::{Conv2d, Conv2dConfig, Forward, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let mut rng = ChaCha8Rng::seed_from_u64(0);
/// // 3x3, stride 2, padding 1: halves the image.
/// let config = Conv2dConfig { stride: 2, padding: 1, ..Default::default() };
/// let conv = Conv2d::<f32>::new(1, 4, 3, config, &mut rng)?;
/// assert_eq!(conv.weight.shape(), [4, 1, 3, 3]);
/// let x = Var::constant(Tensor::randn(&[2, 1, 8, 8], 0.0, 1.0, &mut rng));
/// assert_eq!(conv.forward(&x)?.shape(), [2, 4, 4, 4]);
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct Conv2d<T: Element = f32> {
    pub weight: Var<T>,
    pub bias: Option<Var<T>>,
    #[module(skip)]
    pub options: Conv2dOptions,
}

impl<T: Element> Conv2d<T> {
    pub fn new<R: Rng + ?Sized>(
        inputs: usize,
        outputs: usize,
        kernel: usize,
        config: Conv2dConfig,
        rng: &mut R,
    ) -> Result<Self> {
        let shape = [outputs, inputs, kernel, kernel];
        init::reserve::<T>("a Conv2d weight", &shape)?;
        let weight = Var::parameter(init::default_weight(&shape, rng)?);
        let bias = match config.bias {
            true => Some(Var::parameter(init::default_bias(&shape, outputs, rng)?)),
            false => None,
        };
        Ok(Conv2d {
            weight,
            bias,
            options: options(config.stride, config.padding, config.dilation),
        })
    }
}

impl<T: Element> Forward<T> for Conv2d<T> {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        add_channel_bias(x.conv2d(&self.weight, self.options)?, &self.bias)
    }

    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let attrs = conv_attrs(&self.weight, self.options);
        export_conv(g, "Conv", x, &self.weight, &self.bias, attrs)
    }
}

/// The kernel and geometry attributes ONNX's Conv and ConvTranspose share.
fn conv_attrs<T: Element>(weight: &Var<T>, o: Conv2dOptions) -> Vec<(&'static str, Attr)> {
    let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&i| i as i64).collect());
    let [ph, pw] = o.padding;
    vec![
        ("kernel_shape", ints(&weight.shape()[2..])),
        ("strides", ints(&o.stride)),
        ("pads", ints(&[ph, pw, ph, pw])),
        ("dilations", ints(&o.dilation)),
    ]
}

/// A convolution node `op` with its weight and optional bias.
fn export_conv<T: Element>(
    g: &mut Graph,
    op: &'static str,
    x: &str,
    weight: &Var<T>,
    bias: &Option<Var<T>>,
    attrs: Vec<(&'static str, Attr)>,
) -> Result<String> {
    let w = g.weight("weight", weight);
    let b = bias.as_ref().map(|b| g.weight("bias", b));
    let mut inputs = vec![x, w.as_str()];
    inputs.extend(b.as_deref());
    Ok(g.node(op, &inputs, attrs))
}

/// Geometry of a ConvTranspose2d beyond its channel counts (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dConfig {
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
    pub dilation: usize,
    pub bias: bool,
}

impl Default for ConvTranspose2dConfig {
    fn default() -> Self {
        ConvTranspose2dConfig {
            stride: 1,
            padding: 0,
            output_padding: 0,
            dilation: 1,
            bias: true,
        }
    }
}

/// Transposed convolution: `[n, in, h, w] -> [n, out, h', w']`; weight `[in, out, k, k]`.
///
/// ```
/// use deepgen_autograd::rand::SeedableRng;
/// use deepgen_autograd::rand_chacha::ChaCha8Rng;
/// use deepgen_nn::{ConvTranspose2d, ConvTranspose2dConfig, Forward, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let mut rng = ChaCha8Rng::seed_from_u64(0);
/// // 4x4, stride 2, padding 1 (DCGAN's up-sampling step): doubles the image.
/// let config = ConvTranspose2dConfig { stride: 2, padding: 1, ..Default::default() };
/// let up = ConvTranspose2d::<f32>::new(4, 1, 4, config, &mut rng)?;
/// assert_eq!(up.weight.shape(), [4, 1, 4, 4]);
/// let x = Var::constant(Tensor::randn(&[2, 4, 4, 4], 0.0, 1.0, &mut rng));
/// assert_eq!(up.forward(&x)?.shape(), [2, 1, 8, 8]);
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct ConvTranspose2d<T: Element = f32> {
    pub weight: Var<T>,
    pub bias: Option<Var<T>>,
    #[module(skip)]
    pub options: Conv2dOptions,
    pub output_padding: usize,
}

impl<T: Element> ConvTranspose2d<T> {
    /// PyTorch's default initialisation; note PyTorch's fan_in for this
    /// weight layout is `out * k * k`.
    pub fn new<R: Rng + ?Sized>(
        inputs: usize,
        outputs: usize,
        kernel: usize,
        config: ConvTranspose2dConfig,
        rng: &mut R,
    ) -> Result<Self> {
        let shape = [inputs, outputs, kernel, kernel];
        init::reserve::<T>("a ConvTranspose2d weight", &shape)?;
        let weight = Var::parameter(init::default_weight(&shape, rng)?);
        let bias = match config.bias {
            true => Some(Var::parameter(init::default_bias(&shape, outputs, rng)?)),
            false => None,
        };
        Ok(ConvTranspose2d {
            weight,
            bias,
            options: options(config.stride, config.padding, config.dilation),
            output_padding: config.output_padding,
        })
    }
}

impl<T: Element> Forward<T> for ConvTranspose2d<T> {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        let op = [self.output_padding; 2];
        add_channel_bias(
            x.conv_transpose2d(&self.weight, self.options, op)?,
            &self.bias,
        )
    }

    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let mut attrs = conv_attrs(&self.weight, self.options);
        let op = self.output_padding as i64;
        attrs.push(("output_padding", Attr::Ints(vec![op, op])));
        export_conv(g, "ConvTranspose", x, &self.weight, &self.bias, attrs)
    }
}
