//! deepgen-data: data sets, the loader and verified downloads (the
//! `download` feature, on by default). Pictures, charts and progress bars
//! belong to the training runtime (`deepgen-train`), so this crate needs
//! neither layers nor plotting.
//!
//! Every data set loads into memory behind the small [`Dataset`] trait:
//! its length, the shape of one item, an optional label, and a batch
//! gather that writes many items straight into a tensor's buffer — one
//! table lookup per byte for 8-bit images, no per-pixel overhead. The
//! [`DataLoader`] shuffles from a seed, batches, scales, and prepares the
//! next batch on a background thread.

#[cfg(feature = "cifar")]
pub mod cifar;
mod dataset;
#[cfg(feature = "download")]
pub mod download;
mod error;
#[cfg(feature = "images")]
pub mod folder;
pub mod idx;
mod loader;
pub mod synthetic;
pub mod text;

pub use dataset::{Binarized, Dataset, InMemory, Pixels, Scale, Subset};
pub use error::{Error, Result};
pub use loader::{Batch, DataLoader, LoaderConfig, Shard, Share};

/// The loader, the data set trait and the built-in sets:
/// `use deepgen_data::prelude::*;`.
pub mod prelude {
    pub use crate::{
        idx, synthetic, Batch, DataLoader, Dataset, InMemory, LoaderConfig, Scale, Subset,
    };
}
