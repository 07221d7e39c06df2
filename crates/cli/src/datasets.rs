//! Picking a data set by name: built-in synthetic sets or files on disk.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use deepgen_data::{cifar, idx, synthetic, Dataset, Subset};

use crate::{Error, Result};

/// Parses `a..b` into a range.
pub fn parse_range(s: &str) -> std::result::Result<Range<usize>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected START..END, got {s:?}"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("bad range start in {s:?}"))?;
    let b: usize = b
        .trim()
        .parse()
        .map_err(|_| format!("bad range end in {s:?}"))?;
    if a >= b {
        return Err(format!("empty range {s:?}"));
    }
    Ok(a..b)
}

/// Loads `name` (digits, mnist, fashion-mnist, kmnist, cifar10). File sets
/// are read from `dir`, split `train` or test; `digits` generates `size`
/// images from `seed`.
pub fn load(
    name: &str,
    dir: Option<&Path>,
    train: bool,
    size: usize,
    seed: u64,
) -> Result<Arc<dyn Dataset>> {
    let need_dir = || dir.ok_or_else(|| Error::Usage(format!("--data-dir is needed for {name}")));
    Ok(match name {
        "digits" => Arc::new(synthetic::digits(size, seed)?),
        "mnist" | "fashion-mnist" | "kmnist" => Arc::new(idx::load_split(need_dir()?, train)?),
        "cifar10" => Arc::new(cifar::load_split(need_dir()?, train)?),
        other => {
            return Err(Error::Usage(format!(
            "unknown data set {other:?}; expected digits, mnist, fashion-mnist, kmnist or cifar10"
        )))
        }
    })
}

/// Items `range` of `data`, or all of it.
pub fn take(data: Arc<dyn Dataset>, range: Option<Range<usize>>) -> Result<Arc<dyn Dataset>> {
    match range {
        None => Ok(data),
        Some(r) => Ok(Arc::new(Subset::new(data, r)?)),
    }
}
