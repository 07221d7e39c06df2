//! deepgen-data: data sets, the loader, verified downloads (the `download`
//! feature, on by default) and image grids.
//!
//! Every data set loads into memory behind the small [`Dataset`] trait:
//! its length, the shape of one item, an optional label, and a batch
//! gather that writes many items straight into a tensor's buffer — one
//! table lookup per byte for 8-bit images, no per-pixel overhead. The
//! [`DataLoader`] shuffles from a seed, batches, scales, and prepares the
//! next batch on a background thread.

pub mod cifar;
mod dataset;
#[cfg(feature = "download")]
pub mod download;
mod error;
pub mod folder;
pub mod grid;
pub mod idx;
mod loader;
pub mod plot;
pub mod progress;
pub mod synthetic;

pub use dataset::{Dataset, InMemory, Pixels, Scale, Subset};
pub use error::{Error, Result};
pub use grid::{save_grid, GridOptions};
pub use loader::{Batch, DataLoader, LoaderConfig};
