use std::fmt;

use crate::{DType, Element, Tensor};

/// Items shown per axis before eliding the middle.
const EDGE: usize = 3;

impl<T: Element> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dtype = match T::DTYPE {
            DType::F32 => "f32",
            DType::F64 => "f64",
        };
        write!(f, "Tensor{:?} {dtype} ", self.shape())?;
        let data = self.to_vec();
        write_axis(f, &data, self.shape())
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn write_axis<T: Element>(f: &mut fmt::Formatter<'_>, data: &[T], shape: &[usize]) -> fmt::Result {
    let Some((&n, rest)) = shape.split_first() else {
        return write!(f, "{:.4}", data[0]);
    };
    let inner: usize = rest.iter().product();
    write!(f, "[")?;
    for i in 0..n {
        if n > 2 * EDGE && i == EDGE {
            write!(f, ", ...")?;
        }
        if n > 2 * EDGE && (EDGE..n - EDGE).contains(&i) {
            continue;
        }
        if i > 0 {
            write!(f, ", ")?;
        }
        write_axis(f, &data[i * inner..(i + 1) * inner], rest)?;
    }
    write!(f, "]")
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn display_is_compact() {
        let t = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        assert_eq!(
            t.to_string(),
            "Tensor[2, 2] f32 [[1.0000, 2.0000], [3.0000, 4.0000]]"
        );
        let long = Tensor::<f64>::zeros(&[10]).to_string();
        assert!(long.contains("..."), "{long}");
    }
}
