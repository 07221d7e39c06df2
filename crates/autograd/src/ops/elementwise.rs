//! Elementwise ops: binary with broadcasting, scalar, and unary.

use deepgen_kernels as k;

use crate::{Element, Result, Tensor, Var};

impl<T: Element> Var<T> {
    fn binary(
        &self,
        name: &'static str,
        other: &Var<T>,
        forward: fn(&Tensor<T>, &Tensor<T>) -> deepgen_tensor::Result<Tensor<T>>,
        backward: impl Fn(&crate::Ctx<T>, &[usize], &[usize]) -> Result<crate::Grads<T>>
            + Send
            + Sync
            + 'static,
    ) -> Result<Var<T>> {
        let value = forward(&self.value(), &other.value())?;
        let (sa, sb) = (self.shape(), other.shape());
        Ok(Var::from_op(
            name,
            value,
            vec![self.clone(), other.clone()],
            move |c| backward(c, &sa, &sb),
        ))
    }

    /// self + other, broadcasting.
    pub fn add(&self, other: &Var<T>) -> Result<Var<T>> {
        self.binary("add", other, k::add, |c, sa, sb| {
            Ok(vec![
                c.grad_for(0, || c.grad.sum_to(sa))?,
                c.grad_for(1, || c.grad.sum_to(sb))?,
            ])
        })
    }

    /// self - other, broadcasting.
    pub fn sub(&self, other: &Var<T>) -> Result<Var<T>> {
        self.binary("sub", other, k::sub, |c, sa, sb| {
            Ok(vec![
                c.grad_for(0, || c.grad.sum_to(sa))?,
                c.grad_for(1, || c.grad.neg().sum_to(sb))?,
            ])
        })
    }

    /// self * other, broadcasting.
    pub fn mul(&self, other: &Var<T>) -> Result<Var<T>> {
        self.binary("mul", other, k::mul, |c, sa, sb| {
            let [a, b] = [&c.inputs[0], &c.inputs[1]];
            Ok(vec![
                c.grad_for(0, || c.grad.mul(b)?.sum_to(sa))?,
                c.grad_for(1, || c.grad.mul(a)?.sum_to(sb))?,
            ])
        })
    }

    /// self / other, broadcasting.
    pub fn div(&self, other: &Var<T>) -> Result<Var<T>> {
        self.binary("div", other, k::div, |c, sa, sb| {
            let b = &c.inputs[1];
            Ok(vec![
                c.grad_for(0, || c.grad.div(b)?.sum_to(sa))?,
                // d(a/b)/db = -(a/b)/b
                c.grad_for(1, || c.grad.mul(c.out)?.div(b)?.neg().sum_to(sb))?,
            ])
        })
    }

    /// self ^ other elementwise, broadcasting (self > 0 where other is not an integer).
    pub fn pow(&self, other: &Var<T>) -> Result<Var<T>> {
        self.binary("pow", other, k::pow, |c, sa, sb| {
            let [a, b] = [&c.inputs[0], &c.inputs[1]];
            Ok(vec![
                c.grad_for(0, || {
                    c.grad
                        .mul(b)?
                        .mul(&a.pow(&b.add_scalar(-T::one()))?)?
                        .sum_to(sa)
                })?,
                c.grad_for(1, || c.grad.mul(c.out)?.mul(&a.log())?.sum_to(sb))?,
            ])
        })
    }

    /// Elementwise maximum; on ties the gradient is split evenly (as PyTorch).
    pub fn maximum(&self, other: &Var<T>) -> Result<Var<T>> {
        self.binary("maximum", other, k::maximum, |c, sa, sb| {
            let share = Var::constant(k::max_share(&c.inputs[0].value(), &c.inputs[1].value())?);
            Ok(vec![
                c.grad_for(0, || c.grad.mul(&share)?.sum_to(sa))?,
                c.grad_for(1, || c.grad.mul(&share.one_minus())?.sum_to(sb))?,
            ])
        })
    }

    /// Elementwise minimum; on ties the gradient is split evenly (as PyTorch).
    pub fn minimum(&self, other: &Var<T>) -> Result<Var<T>> {
        self.binary("minimum", other, k::minimum, |c, sa, sb| {
            let share = Var::constant(k::max_share(&c.inputs[1].value(), &c.inputs[0].value())?);
            Ok(vec![
                c.grad_for(0, || c.grad.mul(&share)?.sum_to(sa))?,
                c.grad_for(1, || c.grad.mul(&share.one_minus())?.sum_to(sb))?,
            ])
        })
    }

    fn unary(
        &self,
        name: &'static str,
        value: Tensor<T>,
        backward: impl Fn(&crate::Ctx<T>) -> Result<Var<T>> + Send + Sync + 'static,
    ) -> Var<T> {
        Var::from_op(name, value, vec![self.clone()], move |c| {
            Ok(vec![Some(backward(c)?)])
        })
    }

    /// self + s
    pub fn add_scalar(&self, s: T) -> Var<T> {
        self.unary("add_scalar", k::add_scalar(&self.value(), s), |c| {
            Ok(c.grad.clone())
        })
    }

    /// self * s
    pub fn mul_scalar(&self, s: T) -> Var<T> {
        self.unary("mul_scalar", k::mul_scalar(&self.value(), s), move |c| {
            Ok(c.grad.mul_scalar(s))
        })
    }

    /// 1 - self
    pub fn one_minus(&self) -> Var<T> {
        self.neg().add_scalar(T::one())
    }

    /// self ^ p for a scalar exponent.
    pub fn powf(&self, p: T) -> Var<T> {
        self.unary("powf", k::powf(&self.value(), p), move |c| {
            c.grad.mul(&c.inputs[0].powf(p - T::one()).mul_scalar(p))
        })
    }

    pub fn neg(&self) -> Var<T> {
        self.unary("neg", k::neg(&self.value()), |c| Ok(c.grad.neg()))
    }

    /// |self|; the gradient at 0 is 0 (as PyTorch).
    pub fn abs(&self) -> Var<T> {
        self.unary("abs", k::abs(&self.value()), |c| {
            c.grad.mul(&Var::constant(k::sign(&c.inputs[0].value())))
        })
    }

    pub fn exp(&self) -> Var<T> {
        self.unary("exp", k::exp(&self.value()), |c| c.grad.mul(c.out))
    }

    pub fn log(&self) -> Var<T> {
        self.unary("log", k::log(&self.value()), |c| c.grad.div(&c.inputs[0]))
    }

    pub fn sqrt(&self) -> Var<T> {
        self.unary("sqrt", k::sqrt(&self.value()), |c| {
            c.grad.div(&c.out.mul_scalar(T::of(2.0)))
        })
    }

    pub fn square(&self) -> Var<T> {
        self.unary("square", k::square(&self.value()), |c| {
            c.grad.mul(&c.inputs[0].mul_scalar(T::of(2.0)))
        })
    }

    pub fn relu(&self) -> Var<T> {
        self.unary("relu", k::relu(&self.value()), |c| {
            c.grad.masked_by_sign(&c.inputs[0], T::zero())
        })
    }

    /// x for x > 0, slope * x otherwise.
    pub fn leaky_relu(&self, slope: T) -> Var<T> {
        self.unary(
            "leaky_relu",
            k::leaky_relu(&self.value(), slope),
            move |c| c.grad.masked_by_sign(&c.inputs[0], slope),
        )
    }

    /// `self` where `x > 0`, `below * self` elsewhere (same shapes): the
    /// backward of relu (`below` 0) and leaky_relu in one pass, without a
    /// mask tensor. Linear in `self`, so its own backward is itself; the
    /// mask is constant almost everywhere, so `x` gets no gradient.
    pub fn masked_by_sign(&self, x: &Var<T>, below: T) -> Result<Var<T>> {
        let value = k::zip_with("masked_by_sign", &self.value(), &x.value(), move |g, v| {
            if v > T::zero() {
                g
            } else {
                below * g
            }
        })?;
        Ok(Var::from_op(
            "masked_by_sign",
            value,
            vec![self.clone(), x.clone()],
            move |c| {
                Ok(vec![
                    c.grad_for(0, || c.grad.masked_by_sign(&c.inputs[1], below))?,
                    None,
                ])
            },
        ))
    }

    pub fn sigmoid(&self) -> Var<T> {
        self.unary("sigmoid", k::sigmoid(&self.value()), |c| {
            // d sigmoid / dx = y (1 - y)
            c.grad.mul(&c.out.mul(&c.out.one_minus())?)
        })
    }

    pub fn tanh(&self) -> Var<T> {
        self.unary("tanh", k::tanh(&self.value()), |c| {
            c.grad.mul(&c.out.square().one_minus())
        })
    }

    /// ln(1 + e^x), stable for large |x|.
    pub fn softplus(&self) -> Var<T> {
        self.unary("softplus", k::softplus(&self.value()), |c| {
            c.grad.mul(&c.inputs[0].sigmoid())
        })
    }

    /// ln sigmoid(x), stable for large |x|.
    pub fn log_sigmoid(&self) -> Var<T> {
        self.unary("log_sigmoid", k::log_sigmoid(&self.value()), |c| {
            c.grad.mul(&c.inputs[0].neg().sigmoid())
        })
    }
}
